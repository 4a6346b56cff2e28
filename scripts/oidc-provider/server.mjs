// A real OpenID Connect provider for shipgate's tests and local SSO trials (oidc-provider).
// Issues RS256 JWT access tokens through the client-credentials grant:
//   client shipgate-ci     secret ci-secret     groups [shipgate-deployers]   ttl 300s
//   client shipgate-short  secret short-secret  groups [shipgate-deployers]   ttl 1s
//   client shipgate-nobody secret nobody-secret groups []                     ttl 300s
// Usage: PORT=9400 node server.mjs   (prints "ready <issuer>")
// OIDC_NODE_MODULES names the node_modules directory that holds oidc-provider (.ci/run installs
// it under ~/.cache/shipgate-oidc).
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';

const modules = process.env.OIDC_NODE_MODULES || join(process.cwd(), 'node_modules');
const { default: Provider } = await import(
  pathToFileURL(join(modules, 'oidc-provider', 'lib', 'index.js')).href
);

const port = Number(process.env.PORT || 9400);
const issuer = `http://127.0.0.1:${port}`;
const groups = {
  'shipgate-ci': ['shipgate-deployers'],
  'shipgate-short': ['shipgate-deployers'],
  'shipgate-nobody': [],
};
const ttl = { 'shipgate-short': 1 };

const provider = new Provider(issuer, {
  clients: Object.keys(groups).map((id) => ({
    client_id: id,
    client_secret: id.replace('shipgate-', '') + '-secret',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
  })),
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:shipgate',
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource, client) => ({
        scope: 'shipgate',
        audience: resource,
        accessTokenFormat: 'jwt',
        accessTokenTTL: ttl[client.clientId] ?? 300,
      }),
    },
  },
  extraTokenClaims: (ctx, token) => ({ groups: groups[token.clientId] ?? [] }),
});
provider.listen(port, () => console.log(`ready ${issuer}`));
