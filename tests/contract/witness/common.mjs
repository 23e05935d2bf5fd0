// What every witness script shares: where the sandbox is, how a Google client reaches it with the access
// tokens of the sandbox's metadata server, and how a scenario's outcome (or a refusal) becomes the JSON the
// Python test reads.
import {Compute} from 'google-auth-library';

export function env(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`the witness needs ${name} in its environment`);
  }
  return value;
}

function input() {
  return JSON.parse(process.env.WITNESS_INPUT ?? '{}');
}

// The constructor options gax documents for another endpoint ("options.port", "options.apiEndpoint",
// "options.fallback: use HTTP fallback mode": https://github.com/googleapis/gax-nodejs/blob/main/client-libraries.md),
// the fallback stub's `protocol` (ClientStubOptions.protocol, google-gax), and google-auth-library's Compute
// client, the credentials of code running on Google Cloud: it asks the metadata server (gcp-metadata finds it
// through GCE_METADATA_HOST) for the service account's access token, as the bot does, since the sandbox's APIs
// refuse a call without one. google-gax 5 turns any truthy `fallback` into its REST transport
// (`this.fallback = options.fallback ? true : false`).
export function googleOptions(endpointVariable) {
  const url = new URL(env(endpointVariable));
  return {
    apiEndpoint: url.hostname,
    port: Number(url.port),
    protocol: url.protocol.replace(':', ''),
    fallback: true,
    authClient: new Compute(),
    projectId: env('WITNESS_PROJECT'),
  };
}

function parsed(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

// A refused call as google-gax hands it to its caller. gax 5's REST transport fetches through the auth
// client's gaxios, which throws a GaxiosError for a 4xx before gax can decode it: `code` is then the HTTP
// status and `message` Google's JSON error body, as https://github.com/googleapis/gax-nodejs/issues/1803
// and https://github.com/googleapis/google-cloud-node/pull/9346 (fixed in gax 6, which needs Node 22)
// describe. A GoogleError (gax's own decoding) carries the gRPC code and the decoded details instead.
function googleRefusal(error) {
  return {
    refused: true,
    kind: error.constructor?.name,
    code: error.code,
    httpStatus: error.status ?? null,
    body: parsed(error.message),
    message: error.message,
    statusDetails: JSON.parse(JSON.stringify(error.statusDetails ?? [])),
    reason: error.reason ?? null,
  };
}

export async function refusal(call) {
  try {
    await call();
  } catch (error) {
    return googleRefusal(error);
  }
  return {refused: false};
}

// Runs the scenario named by argv[2] and prints its outcome as one line of JSON on stdout.
export async function main(scenarios) {
  const name = process.argv[2];
  const scenario = scenarios[name];
  if (!scenario) {
    throw new Error(`unknown scenario ${name}; known: ${Object.keys(scenarios).join(', ')}`);
  }
  const outcome = await scenario(input());
  process.stdout.write(JSON.stringify(outcome) + '\n');
}
