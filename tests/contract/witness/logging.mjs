// @google-cloud/logging's Logging.getEntries, whose LoggingServiceV2Client (google-gax's REST fallback) calls the
// sandbox's entries:list.
import logging from '@google-cloud/logging';

import {env, googleOptions, main, refusal} from './common.mjs';

const client = new logging.Logging(googleOptions('WITNESS_LOGGING'));

function plain(entry) {
  const {insertId, severity, timestamp, logName, resource} = entry.metadata;
  return {insertId, severity, timestamp: timestamp.toISOString(), logName, resource: resource?.type, data: entry.data};
}

await main({
  // Logging.getEntries one page at a time, following each nextPageToken; then the GAPIC client it wraps, which
  // fetches every page itself ("the client library will perform the page polling for you by default",
  // https://github.com/googleapis/gax-nodejs/blob/main/client-libraries.md#auto-pagination).
  async pages({filter, pageSize, orderBy}) {
    const pages = [];
    let pageToken;
    do {
      const [entries, next] = await client.getEntries({filter, orderBy, pageSize, pageToken, autoPaginate: false});
      pages.push(entries.map(plain));
      pageToken = next?.pageToken;
    } while (pageToken);
    const resourceNames = [`projects/${env('WITNESS_PROJECT')}`];
    const [all] = await client.loggingService.listLogEntries({resourceNames, filter, orderBy, pageSize});
    return {pages, all: all.map(logging.Entry.fromApiResponse_).map(plain)};
  },

  // A filter that says nothing of `timestamp` gets `AND timestamp >= "<24 hours before now>"` appended by
  // getEntries on every call, so the second page's filter is not the first's.
  async moving_filter({filter, pageSize}) {
    const [entries, next] = await client.getEntries({filter, pageSize, autoPaginate: false});
    const outcome = await refusal(() => client.getEntries({filter, pageSize, pageToken: next.pageToken,
      autoPaginate: false}));
    return {firstPage: entries.map(plain), nextPageToken: next.pageToken, ...outcome};
  },

  async refused({filter}) {
    return refusal(() => client.getEntries({filter, autoPaginate: false}));
  },
});
