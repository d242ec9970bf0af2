// A local OpenID Connect provider for the console's browser tests and `maas-gateway dev`:
// panva's oidc-provider (certified OpenID Connect implementation) with a sign-in form that
// checks a username and password against the users of the settings file.
//
//   node provider.mjs SETTINGS.json
//
// SETTINGS.json: {"port": 0,
//   "clients": [{"client_id", "client_secret", "redirect_uris": [...], "post_logout_redirect_uris": [...]}],
//   "users": [{"sub", "username", "password", "email", "name", "groups": [...]}],
//   "end_session": true}
// Everything lives in memory; nothing is fetched from the network.
//
// It listens on 127.0.0.1 first (port 0: a free port the kernel picks, so no other process can
// take it between a choice and the bind), then builds the provider for the issuer
// http://127.0.0.1:PORT and says so on stdout: "... ready at ISSUER". Each step is logged with
// the milliseconds since node started, so a slow start shows where it was.
//
// Sign-out (RP-initiated logout, /session/end): a request that carries a valid id_token_hint ends
// the provider's session at once and goes back to the client's post_logout_redirect_uri, as
// Keycloak does; one without it gets the confirmation page. "end_session": false leaves the
// end_session_endpoint out of the discovery document, like OpenShift's OAuth server.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import Provider from 'oidc-provider';

const step = (what) => console.log(`${Math.round(performance.now())} ms: ${what}`);
step('modules loaded');
const settings = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(settings.port || 0, '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;
step(`listening at ${issuer}`);
const users = new Map(settings.users.map((u) => [u.username, u]));
const bySub = new Map(settings.users.map((u) => [u.sub, u]));
const SCOPES = ['openid', 'email', 'profile', 'groups'];

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

// The page /session/end shows; `form` is oidc-provider's (its xsrf token), the buttons submit it.
// With a valid id_token_hint the client is known and the user asked it to sign out: "yes" is
// submitted at once (no JavaScript: the user presses it).
async function logoutSource(ctx, form) {
  const hinted = Boolean(ctx.oidc.entities.IdTokenHint);
  ctx.body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign out: local OIDC provider</title>
${hinted ? '<script>addEventListener("DOMContentLoaded", () => document.getElementById("op.yes").click())</script>' : ''}
</head><body><h1>Local OIDC provider</h1><p>Sign out of the provider too?</p>${form}
<button id="op.yes" type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
<button type="submit" form="op.logoutForm">No, stay signed in</button></body></html>`;
}

const signingKey = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
step('signing key made');

const provider = new Provider(issuer, {
  clients: settings.clients.map((c) => ({ ...c, grant_types: ['authorization_code'], response_types: ['code'] })),
  jwks: { keys: [{ ...signingKey, kid: 'dev-1', use: 'sig', alg: 'RS256' }] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  scopes: SCOPES,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  conformIdTokenClaims: false, // the ID token carries the scopes' claims: the console reads only it
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: { enabled: settings.end_session !== false, logoutSource },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, sub) {
    const user = bySub.get(sub);
    if (!user) return undefined;
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          email: user.email,
          email_verified: true,
          name: user.name,
          preferred_username: user.username,
          groups: user.groups || [],
        };
      },
    };
  },
  // First-party clients: the user is not asked to consent, the requested scopes are granted.
  async loadExistingGrant(ctx) {
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope(SCOPES.join(' '));
    await grant.save();
    return grant;
  },
});


function loginPage(uid, error, username) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign in: local OIDC provider</title>
<style>body{font-family:sans-serif;max-width:22rem;margin:4rem auto}label,input,button{display:block;width:100%;margin:.4rem 0}
input{padding:.4rem}button{padding:.5rem}.error{color:#a30000}</style></head><body>
<h1>Local OIDC provider</h1><p>Sign in to continue to the maas-gateway console.</p>
${error ? `<p class="error" role="alert">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<label for="username">Username</label><input id="username" name="username" autocomplete="username" value="${escape(username || '')}" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button></form></body></html>`;
}

function readForm(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      body += chunk;
      if (body.length > 10000) reject(new Error('form too large'));
    });
    req.on('end', () => resolve(new URLSearchParams(body)));
    req.on('error', reject);
  });
}

function sameSecret(a, b) {
  const x = Buffer.from(String(a));
  const y = Buffer.from(String(b));
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const send = (status, html) => {
    res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(html);
  };
  if (details.prompt.name !== 'login') {
    // Consent is granted by loadExistingGrant; any other prompt ends the interaction as is.
    await provider.interactionFinished(req, res, {}, { mergeWithLastSubmission: true });
    return;
  }
  if (req.method === 'GET') {
    send(200, loginPage(details.uid));
    return;
  }
  const form = await readForm(req);
  const user = users.get(form.get('username') || '');
  if (!user || !sameSecret(user.password, form.get('password') || '')) {
    send(200, loginPage(details.uid, 'Invalid username or password.', form.get('username')));
    return;
  }
  await provider.interactionFinished(req, res, { login: { accountId: user.sub } }, { mergeWithLastSubmission: false });
}

const callback = provider.callback();
server.on('request', (req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((err) => {
      res.writeHead(400, { 'content-type': 'text/plain' });
      res.end(`interaction failed: ${err.message}`);
    });
    return;
  }
  callback(req, res);
});
step(`oidc provider ready at ${issuer}`);
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
