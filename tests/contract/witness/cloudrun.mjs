// @google-cloud/run's v2 ServicesClient and RevisionsClient, over google-gax's REST fallback, against the
// sandbox's Cloud Run Admin API. Each scenario prints what the client made of the answers.
import run from '@google-cloud/run';

import {env, googleOptions, main, refusal} from './common.mjs';

const services = new run.v2.ServicesClient(googleOptions('WITNESS_CLOUD_RUN'));
const revisions = new run.v2.RevisionsClient(googleOptions('WITNESS_CLOUD_RUN'));
const parent = `projects/${env('WITNESS_PROJECT')}/locations/${env('WITNESS_REGION')}`;
const serviceName = service => `${parent}/services/${service}`;
const shortName = name => name.split('/').pop();
// operation.promise() resolves to the decoded protobuf message; read it as the unary calls return theirs.
const Service = run.protos.google.cloud.run.v2.Service;
const plain = service => Service.toObject(service, {longs: String, enums: String, defaults: true});

function summary(service) {
  return {
    name: service.name,
    generation: service.generation,
    observedGeneration: service.observedGeneration,
    etag: service.etag,
    reconciling: service.reconciling,
    ready: service.terminalCondition?.state,
    latestReadyRevision: shortName(service.latestReadyRevision),
    templateRevision: service.template?.revision,
    traffic: service.traffic.map(({type, revision, percent, tag}) => ({type, revision, percent, tag})),
    trafficStatuses: service.trafficStatuses.map(({type, revision, percent, tag}) => ({type, revision, percent, tag})),
    labels: service.labels,
  };
}

function split(stable, candidate) {
  const REVISION = 'TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION';
  return [
    {type: REVISION, revision: stable, percent: 90},
    {type: REVISION, revision: candidate, percent: 10, tag: 'canary'},
  ];
}

await main({
  // GetService, ListServices (every page, then one page of two with its token), ListRevisions.
  async read({service}) {
    const [got] = await services.getService({name: serviceName(service)});
    const [listed] = await services.listServices({parent});
    const [page, next] = await services.listServices({parent, pageSize: 2}, {autoPaginate: false});
    const [revisionList] = await revisions.listRevisions({parent: serviceName(service)});
    return {
      service: summary(got),
      listed: listed.map(s => shortName(s.name)),
      firstPage: page.map(s => shortName(s.name)),
      nextPageToken: next?.pageToken ?? null,
      revisions: revisionList.map(r => ({
        name: shortName(r.name),
        service: shortName(r.service),
        createTime: r.createTime,
        ready: r.conditions.find(c => c.type === 'Ready')?.state,
      })),
    };
  },

  // A canary's first step: only the traffic changes (updateMask "traffic"), then operation.promise().
  async shift_traffic({service, stable, candidate}) {
    const [before] = await services.getService({name: serviceName(service)});
    const [operation] = await services.updateService({
      service: {name: before.name, etag: before.etag, traffic: split(stable, candidate)},
      updateMask: {paths: ['traffic']},
    });
    const started = {name: operation.name, done: operation.done};
    const [result] = await operation.promise();
    const [after] = await services.getService({name: serviceName(service)});
    return {before: summary(before), operation: started, result: summary(plain(result)), after: summary(after)};
  },

  // A write that carries the etag of a read another write has since overtaken.
  async stale_etag({service, first, second}) {
    const [read] = await services.getService({name: serviceName(service)});
    const [operation] = await services.updateService({
      service: {name: read.name, etag: read.etag, labels: {witness: first}},
      updateMask: {paths: ['labels']},
    });
    await operation.promise();
    return refusal(() => services.updateService({
      service: {name: read.name, etag: read.etag, labels: {witness: second}},
      updateMask: {paths: ['labels']},
    }));
  },

  // gcloud names each revision in the template; writing the read service back unchanged but for a label
  // names that existing revision again.
  async rewrite_named_revision({service, label}) {
    const [read] = await services.getService({name: serviceName(service)});
    read.labels = {...read.labels, witness: label};
    const outcome = await refusal(() => services.updateService({service: read}));
    return {templateRevision: read.template.revision, ...outcome};
  },

  // The same read-modify-write with the revision name cleared, so Cloud Run names the next revision.
  async rewrite_unnamed({service, label}) {
    const [read] = await services.getService({name: serviceName(service)});
    read.labels = {...read.labels, witness: label};
    read.template.revision = '';
    const [operation] = await services.updateService({service: read});
    const [result] = await operation.promise();
    return {before: summary(read), result: summary(plain(result))};
  },

  // A service id Cloud Run refuses, with the field it names in a google.rpc.BadRequest detail.
  async invalid_service_id({serviceId, image}) {
    return refusal(() => services.createService({
      parent,
      serviceId,
      service: {template: {containers: [{image}]}},
    }));
  },
});
