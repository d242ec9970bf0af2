"""Console sign-in through the real OIDC provider (scripts/oidc), without a browser: the user
is upserted by (issuer, sub) and ensured in LiteLLM (the management double); a LiteLLM
failure does not block the sign-in, the page says the account is being set up, and the
reconciler heals it. My keys shows each key's usage this month and when it was last used.
An admin restricts a model: its subscriptions stay pending (the key refused) until approved, or are denied.
Sign-out ends the provider's session too when it has an end_session_endpoint, else only the console's.
Plus the console's refusals: CSRF, disabled, email already taken.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import re
import secrets
import shutil
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import AsyncIterator
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest

from gateway.dev import services as devservices
from gateway.config import ConsoleConfig, parse_config
from gateway.console import SESSION_COOKIE, console_app
from tests.admin_support import admin_config, double, litellm_double_server  # noqa: F401 - fixtures
from tests.support import bearer, running_gateway

pytestmark = pytest.mark.integration

RUN = secrets.token_hex(3)
SETUP = "Account setup in progress. Please try again in a moment."
ADMIN_GROUP = "maas-admins"
USERS = [{"sub": f"{name}-{RUN}", "username": name, "password": f"{name}-pw", "email": f"{name}-{RUN}@example.com",
          "name": name.title(), "groups": [ADMIN_GROUP] if name == "heidi" else []}
         for name in ("carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "kate", "liam")]
CAROL, DAVE, ERIN, FRANK, GRACE, HEIDI, IVAN, JUDY, KATE, LIAM = USERS


@pytest.fixture(scope="module")
async def provider_and_port() -> AsyncIterator[tuple[devservices.Service, int, dict]]:
    port = devservices.free_port()
    client = {"client_id": "console-it", "client_secret": secrets.token_urlsafe(24),
              "redirect_uris": [f"http://127.0.0.1:{port}/console/callback"],
              "post_logout_redirect_uris": [f"http://127.0.0.1:{port}/console/"]}
    workdir = Path(tempfile.mkdtemp(prefix="maas-oidc-"))
    provider = devservices.start_oidc_provider(workdir, [client], USERS)
    yield provider, port, client
    provider.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
async def gateway(provider_and_port, double, postgres_url, redis_url):
    provider, port, client = provider_and_port
    config = admin_config(postgres_url, redis_url, double.url)
    console = ConsoleConfig(oidc_issuer=provider.url, oidc_client_id=client["client_id"],
                            oidc_client_secret=client["client_secret"], session_secret=secrets.token_urlsafe(32),
                            oidc_admin_group=ADMIN_GROUP)
    async with running_gateway(dataclasses.replace(config, console=console), port=port) as gw:
        yield gw


async def sign_in(gw_url: str, user: dict) -> tuple[aiohttp.ClientSession, str]:
    """Follow the redirects to the provider's form, post the password, follow back: (session, page)."""
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # cookies for 127.0.0.1
    async with session.get(gw_url + "/console/login") as response:
        form = await response.text()
        action = re.search(r'action="([^"]+)"', form).group(1)
        async with session.post(str(response.url.join(aiohttp.client.URL(action))),
                                data={"username": user["username"], "password": user["password"]}) as back:
            assert str(back.url) == gw_url + "/console/"
            return session, await back.text()


async def test_sign_in_creates_the_user_and_syncs_it(gateway, pool, double):
    session, page = await sign_in(gateway.url, CAROL)
    async with session:
        user = await pool.fetchrow("SELECT * FROM users WHERE oauth_id = $1", CAROL["sub"])
        assert (user["oauth_provider"], user["email"], user["username"]) == (
            gateway.app.config.console.oidc_issuer, CAROL["email"], "carol")
        assert user["sync_status"] == "synced" and user["last_login_at"] is not None
        assert [c.path for c in double.calls_for(user["id"])] == ["/user/info", "/user/new"]
        assert "<h1>My keys</h1>" in page and SETUP not in page
        first_login = user["last_login_at"]
    # Signing in again finds the same row (by issuer and sub) and updates it; LiteLLM is not asked again.
    session, _ = await sign_in(gateway.url, CAROL)
    async with session:
        rows = await pool.fetch("SELECT id, last_login_at FROM users WHERE oauth_id = $1", CAROL["sub"])
        assert [r["id"] for r in rows] == [user["id"]] and rows[0]["last_login_at"] > first_login
        assert len(double.calls_for(user["id"])) == 2


async def test_litellm_down_does_not_block_sign_in_and_the_reconciler_heals(gateway, pool, double):
    await double.set_down(True)
    session, page = await sign_in(gateway.url, DAVE)
    async with session:
        user = await pool.fetchrow("SELECT * FROM users WHERE oauth_id = $1", DAVE["sub"])
        assert user["sync_status"] == "error"
        assert SETUP in page
        # Creating a key now is refused in the seed's words, and nothing is created.
        async with session.get(gateway.url + "/console/subscriptions") as response:
            csrf = re.search(r'name="csrf" value="([^"]+)"', await response.text()).group(1)
        async with session.post(gateway.url + "/console/subscriptions",
                                data={"csrf": csrf, "model_id": await _a_model(pool)}) as response:
            assert response.status == 503
            assert SETUP in await response.text()
        assert await pool.fetchval("SELECT count(*) FROM subscriptions WHERE user_id = $1", user["id"]) == 0
        await double.set_down(False)
        await pool.execute("UPDATE users SET next_sync_at = now() WHERE id = $1", user["id"])
        deadline = time.monotonic() + 10
        while await pool.fetchval("SELECT sync_status FROM users WHERE id = $1", user["id"]) != "synced":
            assert time.monotonic() < deadline, "the reconciler did not sync the user"
            await asyncio.sleep(0.05)  # polling the row with a deadline
        async with session.get(gateway.url + "/console/") as response:
            assert SETUP not in await response.text()


async def _a_model(pool) -> str:
    await pool.execute("INSERT INTO models (id, name) VALUES ('gpt-4o-mini', 'gpt-4o-mini') ON CONFLICT DO NOTHING")
    return "gpt-4o-mini"


async def test_an_email_held_by_another_user_refuses_sign_in(gateway, pool):
    await gateway.state.account_services.accounts.create_user(email=ERIN["email"])  # made by an operator, no identity
    session, page = await sign_in_status(gateway.url, ERIN)
    async with session:
        assert page == (409, "Another account already uses this email address. Ask an administrator to link it.")
    assert await pool.fetchval("SELECT count(*) FROM users WHERE oauth_id = $1", ERIN["sub"]) == 0


async def sign_in_status(gw_url: str, user: dict) -> tuple[aiohttp.ClientSession, tuple[int, str]]:
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session.get(gw_url + "/console/login") as response:
        action = re.search(r'action="([^"]+)"', await response.text()).group(1)
        async with session.post(str(response.url.join(aiohttp.client.URL(action))),
                                data={"username": user["username"], "password": user["password"]}) as back:
            alert = re.search(r'role="alert">([^<]+)<', await back.text()).group(1)
            return session, (back.status, alert)


async def test_abandoned_sign_ins_keep_the_session_cookie_small_and_the_next_one_completes(gateway):
    """Browsers drop a cookie over 4 KB: each sign-in begun and left before the provider answers must
    not add to it (Authlib keeps every unfinished one in the session for an hour)."""
    session, _ = await sign_in(gateway.url, CAROL)
    async with session:
        sizes = []
        for _ in range(6):  # begun, never finished: the provider's redirect is not followed
            async with session.get(gateway.url + "/console/login", allow_redirects=False) as response:
                assert response.status == 302
            jar = session.cookie_jar.filter_cookies(aiohttp.client.URL(gateway.url + "/console/"))
            sizes.append(len(jar[SESSION_COOKIE].value))
        assert max(sizes) - min(sizes) < 40, sizes  # one unfinished sign-in at a time (its random state aside)
        async with session.get(gateway.url + "/console/login") as response:  # the provider still knows Carol
            assert str(response.url) == gateway.url + "/console/" and "<h1>My keys</h1>" in await response.text()


async def test_forms_without_the_csrf_token_are_refused(gateway, pool):
    session, _ = await sign_in(gateway.url, FRANK)
    async with session:
        for data in ({}, {"csrf": "forged"}):
            async with session.post(gateway.url + "/console/logout", data=data) as response:
                assert response.status == 403
                assert "The form expired or did not come from this console." in await response.text()
        async with session.get(gateway.url + "/console/") as response:  # still signed in
            assert "<h1>My keys</h1>" in await response.text()


async def test_pages_need_a_session(gateway):
    async with aiohttp.ClientSession() as session:
        async with session.get(gateway.url + "/console/keys/new", allow_redirects=False) as response:
            assert (response.status, response.headers["location"]) == (303, "/console/")
        async with session.get(gateway.url + "/console/") as response:
            assert response.status == 200
            assert response.headers["content-security-policy"].startswith("default-src 'none'")
            assert '<a class="button" href="http://127.0.0.1:%d/console/login">Sign in</a>' % gateway.server.config.port \
                in await response.text()


def jwt_claims(token: str) -> dict:
    """A JWT's payload, unverified (the provider verifies the hint: this only reads what it says)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def signed_out(page: str) -> bool:
    return 'class="button" href=' in page and ">Sign in</a>" in page and "<h1>My keys</h1>" not in page


async def test_sign_out_ends_the_provider_session_too(gateway, provider_and_port):
    provider, port, client = provider_and_port
    session, _ = await sign_in(gateway.url, KATE)
    async with session:
        csrf = await csrf_from(session, gateway.url + "/console/")
        async with session.post(gateway.url + "/console/logout", data={"csrf": csrf}, allow_redirects=False) as r:
            assert r.status == 303
            location = r.headers["location"]
        # RP-initiated logout at the provider's end_session_endpoint, naming the user's ID token,
        # the client, and where to come back to.
        end = urlsplit(location)
        assert f"{end.scheme}://{end.netloc}{end.path}" == provider.url + "/session/end"
        params = dict(parse_qsl(end.query))
        assert sorted(params) == ["client_id", "id_token_hint", "post_logout_redirect_uri", "state"]
        assert (params["client_id"], params["post_logout_redirect_uri"]) == (client["client_id"],
                                                                             gateway.url + "/console/")
        hint = jwt_claims(params["id_token_hint"])
        assert (hint["iss"], hint["sub"], hint["aud"]) == (provider.url, KATE["sub"], client["client_id"])
        # The console's own session has ended already.
        async with session.get(gateway.url + "/console/") as response:
            assert signed_out(await response.text())
        # The provider signs out at once (its page submits "yes" itself: a browser's part, done here
        # by hand) and sends the browser back to the console.
        async with session.get(location) as response:
            page = await response.text()
            assert 'document.getElementById("op.yes").click()' in page
            action = re.search(r'<form id="op.logoutForm" method="post" action="([^"]+)"', page).group(1)
            xsrf = re.search(r'name="xsrf" value="([^"]+)"', page).group(1)
        async with session.post(str(response.url.join(aiohttp.client.URL(action))),
                                data={"xsrf": xsrf, "logout": "yes"}) as response:
            assert str(response.url) == f"{gateway.url}/console/?state={params['state']}"
            assert signed_out(await response.text())
        # Signing in again asks for the password: the provider's session is gone.
        async with session.get(gateway.url + "/console/login") as response:
            assert str(response.url).startswith(provider.url + "/interaction/")
            assert 'id="password"' in await response.text()


async def test_without_an_end_session_endpoint_sign_out_is_local(double, postgres_url, redis_url):
    """OpenShift's OAuth server has no end_session_endpoint: only the console's session ends."""
    port = devservices.free_port()
    client = {"client_id": "console-local-sign-out", "client_secret": secrets.token_urlsafe(24),
              "redirect_uris": [f"http://127.0.0.1:{port}/console/callback"]}
    workdir = Path(tempfile.mkdtemp(prefix="maas-oidc-"))
    provider = devservices.start_oidc_provider(workdir, [client], [LIAM], end_session=False)
    try:
        config = admin_config(postgres_url, redis_url, double.url)
        console = ConsoleConfig(oidc_issuer=provider.url, oidc_client_id=client["client_id"],
                                oidc_client_secret=client["client_secret"], session_secret=secrets.token_urlsafe(32))
        async with running_gateway(dataclasses.replace(config, console=console), port=port) as gw:
            session, _ = await sign_in(gw.url, LIAM)
            async with session:
                csrf = await csrf_from(session, gw.url + "/console/")
                async with session.post(gw.url + "/console/logout", data={"csrf": csrf},
                                        allow_redirects=False) as response:
                    assert (response.status, response.headers["location"]) == (303, gw.url + "/console/")
                async with session.get(gw.url + "/console/") as response:
                    assert signed_out(await response.text())
                # The provider's session is left as it was: signing in again asks nothing.
                async with session.get(gw.url + "/console/login") as response:
                    assert str(response.url) == gw.url + "/console/"
                    assert "<h1>My keys</h1>" in await response.text()
    finally:
        provider.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.parametrize("environ", [
    {"CONSOLE_ENABLED": "false"},  # disabled, though configured
    {"OIDC_ISSUER": ""},  # not configured
], ids=["disabled", "unconfigured"])
def test_the_console_can_be_off(environ):
    full = {"OIDC_ISSUER": "http://127.0.0.1:1", "OIDC_CLIENT_ID": "c", "OIDC_CLIENT_SECRET": "s",
            "SESSION_SECRET": "x" * 32}
    assert console_app(parse_config({}, full), None) is not None
    assert console_app(parse_config({}, {**full, **environ}), None) is None


@pytest.mark.parametrize(("console", "secure"), [
    ({}, False),  # a local console over http
    ({"public_url": "https://gateway.example.com"}, True),  # served over https: Secure by default
    ({"public_url": "https://gateway.example.com", "https_only": False}, False),
    ({"https_only": True}, True),  # TLS ends at a proxy, no public_url
], ids=["http", "https-public-url", "explicitly-off", "explicitly-on"])
async def test_the_session_cookie_is_secure_when_the_console_is_served_over_https(
        console, secure, provider_and_port, double, postgres_url, redis_url):
    """The cookie sign-in sets (its state, on the way to the provider) as a browser receives it."""
    provider, _, client = provider_and_port
    config = admin_config(postgres_url, redis_url, double.url)
    settings = ConsoleConfig(oidc_issuer=provider.url, oidc_client_id=client["client_id"],
                             oidc_client_secret=client["client_secret"], session_secret=secrets.token_urlsafe(32), **console)
    async with running_gateway(dataclasses.replace(config, console=settings)) as gw, aiohttp.ClientSession() as http:
        async with http.get(gw.url + "/console/login", allow_redirects=False) as response:
            assert response.status == 302
            cookie = next(v for v in response.headers.getall("set-cookie") if v.startswith(SESSION_COOKIE + "="))
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert ("secure" in attributes) is secure, cookie
    assert {"httponly", "path", "samesite"} <= attributes


async def csrf_from(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as response:
        return re.search(r'name="csrf" value="([^"]+)"', await response.text()).group(1)


def usage_line(page: str, prefix: str) -> str:
    """The usage line of the key section with this prefix, its tags removed."""
    section = page[page.index(f'data-key-prefix="{prefix}"'):]
    line = re.search(r'<p class="usage">(.*?)</p>', section, re.S).group(1)
    return " ".join(re.sub(r"<[^>]+>", "", line).split())


async def test_my_keys_shows_usage_this_month_and_last_use(gateway, pool):
    session, page = await sign_in(gateway.url, GRACE)
    async with session:
        model = await _a_model(pool)
        csrf = await csrf_from(session, gateway.url + "/console/subscriptions")
        async with session.post(gateway.url + "/console/subscriptions", data={"csrf": csrf, "model_id": model}) as r:
            assert r.status == 200
        keys = []
        for name in ("used", "idle"):
            async with session.post(gateway.url + "/console/keys",
                                    data={"csrf": csrf, "name": name, "models": model}) as response:
                keys.append(re.search(r'<code id="new-key">([^<]+)</code>', await response.text()).group(1))
        used, idle = keys
        month = datetime.now(timezone.utc).date().replace(day=1)
        async with session.get(gateway.url + "/console/") as response:
            page = await response.text()
        assert usage_line(page, used[:7]) == (
            f"Since {month.isoformat()} (UTC): 0 requests, 0 prompt and 0 completion tokens · never used")
        # Three calls through the gateway (the upstream reports 1 prompt and 1 completion token each),
        # and a row from last month that this period leaves out.
        for _ in range(3):
            async with session.post(gateway.url + "/v1/chat/completions", headers=bearer(used),
                                    json={"model": model, "messages": [{"role": "user", "content": "hi"}]}) as r:
                assert r.status == 200, await r.text()
        await gateway.state.usage.flush()
        key_id, user_id = await pool.fetchrow("SELECT id, user_id FROM api_keys WHERE key_prefix = $1", used[:7])
        await pool.execute(
            "INSERT INTO usage_daily (day, key_id, user_id, model_id, requests, prompt_tokens, completion_tokens) "
            "VALUES ($1, $2, $3, $4, 50, 500, 5000)", month - timedelta(days=1), key_id, user_id, model)
        last_used = await pool.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", key_id)
        async with session.get(gateway.url + "/console/") as response:
            page = await response.text()
        assert usage_line(page, used[:7]) == (f"Since {month.isoformat()} (UTC): 3 requests, 3 prompt and "
                                              f"3 completion tokens · last used {last_used:%Y-%m-%d %H:%M} UTC")
        assert usage_line(page, idle[:7]) == (
            f"Since {month.isoformat()} (UTC): 0 requests, 0 prompt and 0 completion tokens · never used")


def inactive(model: str) -> dict:
    return {"error": {"message": f"Your subscription to this model is not active. Please check your subscription. "
                                 f"(model: {model})",
                      "type": "permission_denied_error", "param": "model", "code": "SUBSCRIPTION_INACTIVE"}}


async def post(session: aiohttp.ClientSession, url: str, data: dict) -> tuple[int, str]:
    async with session.post(url, data=data) as response:
        return response.status, await response.text()


async def test_a_restricted_model_waits_for_an_admin(gateway, pool):
    model = f"restricted-{RUN}"
    await gateway.state.account_services.accounts.create_model(id=model)
    admin, _ = await sign_in(gateway.url, HEIDI)
    user, _ = await sign_in(gateway.url, IVAN)
    async with admin, user:
        admin_csrf = await csrf_from(admin, gateway.url + "/console/admin")
        csrf = await csrf_from(user, gateway.url + "/console/subscriptions")
        # Open to all at first: Ivan subscribes (active), makes a key, and cancels.
        assert (await post(user, gateway.url + "/console/subscriptions", {"csrf": csrf, "model_id": model}))[0] == 200
        status, created = await post(user, gateway.url + "/console/keys", {"csrf": csrf, "name": "r", "models": model})
        key = re.search(r'<code id="new-key">([^<]+)</code>', created).group(1)
        ivan = await pool.fetchval("SELECT id FROM users WHERE oauth_id = $1", IVAN["sub"])
        subscription = await pool.fetchval(
            "SELECT id FROM subscriptions WHERE user_id = $1 AND model_id = $2", ivan, model)
        await post(user, f"{gateway.url}/console/subscriptions/{subscription}/cancel", {"csrf": csrf})

        # The admin restricts the model (a non-admin, or a form without the token, cannot).
        form = {"csrf": admin_csrf, "model_id": model, "restricted": "1"}
        status, page = await post(user, gateway.url + "/console/admin/models/access", {**form, "csrf": csrf})
        assert status == 403 and 'role="alert">This page is for administrators.<' in page
        status, page = await post(admin, gateway.url + "/console/admin/models/access", {**form, "csrf": "x"})
        assert status == 403 and "The form expired or did not come from this console." in page
        assert await pool.fetchval("SELECT restricted_access FROM models WHERE id = $1", model) is False
        status, page = await post(admin, gateway.url + "/console/admin/models/access", form)
        assert status == 200 and await pool.fetchval("SELECT restricted_access FROM models WHERE id = $1", model)
        row = page[page.index(f'data-model="{model}"'):]
        assert "restricted: needs approval" in row[:row.index("</tr>")]

        # Subscribing again makes it pending; the key is refused until the admin approves.
        status, page = await post(user, gateway.url + "/console/subscriptions", {"csrf": csrf, "model_id": model})
        assert status == 200 and "(waiting for an administrator)" in page
        assert await pool.fetchval("SELECT status FROM subscriptions WHERE id = $1", subscription) == "pending"
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}

        async def answer() -> tuple[int, dict]:
            async with user.post(gateway.url + "/v1/chat/completions", headers=bearer(key), json=body) as response:
                return response.status, await response.json()

        assert await answer() == (403, inactive(model))
        async with admin.get(gateway.url + "/console/admin") as response:
            assert f'class="pending-subscription" data-model="{model}" data-email="{IVAN["email"]}"' \
                in await response.text()
        status, _ = await post(admin, f"{gateway.url}/console/admin/subscriptions/{subscription}/approve",
                               {"csrf": admin_csrf})
        assert status == 200
        assert await pool.fetchval("SELECT status FROM subscriptions WHERE id = $1", subscription) == "active"
        deadline = time.monotonic() + 5
        while (status := (await answer())[0]) != 200:  # the approval reaches the key cache
            assert (status, time.monotonic() < deadline) == (403, True)
            await asyncio.sleep(0.05)  # polling the gateway's answer with a deadline


async def test_an_admin_denies_a_pending_subscription(gateway, pool):
    model = f"denied-{RUN}"
    accounts = gateway.state.account_services.accounts
    await accounts.create_model(id=model)
    await accounts.set_model_restricted(model, True)
    admin, _ = await sign_in(gateway.url, HEIDI)
    user, _ = await sign_in(gateway.url, JUDY)
    async with admin, user:
        csrf = await csrf_from(user, gateway.url + "/console/subscriptions")
        assert (await post(user, gateway.url + "/console/subscriptions", {"csrf": csrf, "model_id": model}))[0] == 200
        judy = await pool.fetchval("SELECT id FROM users WHERE oauth_id = $1", JUDY["sub"])
        subscription = await pool.fetchval(
            "SELECT id FROM subscriptions WHERE user_id = $1 AND model_id = $2", judy, model)
        assert await pool.fetchval("SELECT status FROM subscriptions WHERE id = $1", subscription) == "pending"
        async with admin.get(gateway.url + "/console/admin") as response:
            assert f'class="pending-subscription" data-model="{model}"' in await response.text()
        # Judy cannot decide her own subscription: the admin actions are for admins.
        status, page = await post(user, f"{gateway.url}/console/admin/subscriptions/{subscription}/approve",
                                  {"csrf": csrf})
        assert status == 403 and "This page is for administrators." in page
        admin_csrf = await csrf_from(admin, gateway.url + "/console/admin")
        status, page = await post(admin, f"{gateway.url}/console/admin/subscriptions/{subscription}/deny",
                                  {"csrf": admin_csrf})
        assert status == 200 and f'class="pending-subscription" data-model="{model}"' not in page  # decided
        assert await pool.fetchval("SELECT status FROM subscriptions WHERE id = $1", subscription) == "denied"
        async with user.get(gateway.url + "/console/subscriptions") as response:
            mine = await response.text()
        row = mine[mine.index(f'data-model="{model}"'):]
        assert '<span class="state state-denied">denied</span>' in row[:row.index("</tr>")]
