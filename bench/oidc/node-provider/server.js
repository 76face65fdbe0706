// The reference Node.js OpenID provider (oidc-provider, in-memory adapter)
// for Ward's token benchmark: one confidential client "svc" with the
// client_credentials grant, access tokens as JWTs signed with ALG (ES256 or
// RS256) through the resource-indicators feature (accessTokenFormat 'jwt').
// Listens on 127.0.0.1:PORT. WORKERS > 1 forks that many processes
// sharing the port (node:cluster), each with its own key copy.
import cluster from 'node:cluster';
import crypto from 'node:crypto';
import fs from 'node:fs';
import Provider from 'oidc-provider';

const alg = process.env.ALG || 'ES256';
const port = Number(process.env.PORT || 3000);
const workers = Number(process.env.WORKERS || 1);
const secret = process.env.CLIENT_SECRET || 'bench-secret-bench-secret-bench-secret';
const resource = 'urn:ward:bench';

if (alg !== 'ES256' && alg !== 'RS256') {
  throw new Error(`ALG must be ES256 or RS256, not ${alg}`);
}

if (cluster.isPrimary && workers > 1) {
  // One key for all workers, so every token verifies against one JWKS.
  process.env.JWK = JSON.stringify(makeKey());
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('exit', (w, code) => { console.error(`worker ${w.process.pid} exited ${code}`); process.exit(1); });
} else {
  start(process.env.JWK ? JSON.parse(process.env.JWK) : makeKey());
}

function makeKey() {
  const { privateKey } = alg === 'ES256'
    ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: `bench-${alg.toLowerCase()}`, alg, use: 'sig' };
}

function start(jwk) {
  const provider = new Provider(`http://127.0.0.1:${port}`, {
    clients: [{
      client_id: 'svc',
      client_secret: secret,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: alg,
    }],
    jwks: { keys: [jwk] },
    scopes: ['vitals.read'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => resource,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'vitals.read',
          audience: resource,
          accessTokenTTL: 15 * 60,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg } },
        }),
      },
    },
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  provider.listen(port, '127.0.0.1', () => {
    if (process.env.READY_FILE && (cluster.isPrimary || cluster.worker.id === 1)) fs.writeFileSync(process.env.READY_FILE, 'ok');
  });
}
