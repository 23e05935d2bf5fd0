// @google-cloud/secret-manager's v1 client, over google-gax's REST fallback, against the sandbox's Secret Manager.
import secretManager from '@google-cloud/secret-manager';

import {env, googleOptions, main, refusal} from './common.mjs';

const client = new secretManager.v1.SecretManagerServiceClient(googleOptions('WITNESS_SECRET_MANAGER'));

// CRC32C (Castagnoli, reflected polynomial 0x82F63B78): the checksum SecretPayload.data_crc32c carries
// ("The CRC32C checksum of the secret data", https://cloud.google.com/secret-manager/docs/reference/rest/v1/SecretPayload).
const TABLE = Array.from({length: 256}, (_, byte) => {
  let crc = byte;
  for (let bit = 0; bit < 8; bit++) {
    crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return crc >>> 0;
});

function crc32c(bytes) {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc = TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  }
  return (crc ^ 0xffffffff) >>> 0;
}

await main({
  // The documented way to read a secret's newest value: versions/latest, checked against its CRC32C.
  async access_latest({secret}) {
    const name = `projects/${env('WITNESS_PROJECT')}/secrets/${secret}/versions/latest`;
    const [version] = await client.accessSecretVersion({name});
    const data = Buffer.from(version.payload.data);
    return {
      name: version.name,
      data: data.toString('base64'),
      dataCrc32c: String(version.payload.dataCrc32c),
      computedCrc32c: String(crc32c(data)),
    };
  },

  async access_refused({secret}) {
    const name = `projects/${env('WITNESS_PROJECT')}/secrets/${secret}/versions/latest`;
    return refusal(() => client.accessSecretVersion({name}));
  },
});
