"""The console on a LiteMaaS database (database.schema: litemaas), signed in through the real
OIDC provider: it shows the user's LiteMaaS keys and per-model access, offers no create /
revoke / subscribe / cancel / approve control, its write routes answer 403 in words (after
the CSRF check), and no row of LiteMaaS's tables changes, sign-in included. My keys shows each
key's usage this month from the gateway's records (maas_gateway.usage_daily) and its last use.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import shutil
import tempfile
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import pytest

from gateway.dev import services as devservices
from gateway.config import ConsoleConfig
from gateway.console.litemaas_mode import MANAGED, NO_ACCOUNT
from tests import litemaas_support as litemaas
from tests.integration.test_console_signin import csrf_from, post, sign_in, sign_in_status, usage_line
from tests.support import bearer, make_config, running_gateway

pytestmark = pytest.mark.integration

RUN = secrets.token_hex(3)
ADMIN_GROUP = "maas-admins"
LISA = {"sub": f"lisa-{RUN}", "username": "lisa", "password": "lisa-pw", "email": f"lisa-{RUN}@example.com",
        "name": "Lisa", "groups": [ADMIN_GROUP]}
MARK = {"sub": f"mark-{RUN}", "username": "mark", "password": "mark-pw", "email": f"mark-{RUN}@example.com",
        "name": "Mark", "groups": []}
CSRF_REFUSED = "The form expired or did not come from this console. Reload the page and try again."


@pytest.fixture
async def console(litemaas_url, redis_url, fake_upstream):
    port = devservices.free_port()
    client = {"client_id": "console-litemaas", "client_secret": secrets.token_urlsafe(24),
              "redirect_uris": [f"http://127.0.0.1:{port}/console/callback"]}
    workdir = Path(tempfile.mkdtemp(prefix="maas-oidc-"))
    provider = devservices.start_oidc_provider(workdir, [client], [LISA, MARK])
    config = make_config(litemaas_url, redis_url, fake_upstream.url, database={"schema": "litemaas"},
                         litellm={"auth": "passthrough"})
    console = ConsoleConfig(oidc_issuer=provider.url, oidc_client_id=client["client_id"],
                            oidc_client_secret=client["client_secret"], session_secret=secrets.token_urlsafe(32),
                            oidc_admin_group=ADMIN_GROUP)
    try:
        async with running_gateway(dataclasses.replace(config, console=console), port=port) as gw:
            yield gw
    finally:
        provider.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def alert(page: str) -> str:
    return re.search(r'role="alert">([^<]+)<', page).group(1)


def post_forms(page: str) -> int:
    return page.count('method="post"')


async def test_the_console_shows_litemaas_keys_and_changes_nothing(console, conn):
    await litemaas.add_model(conn, "gpt-4o-mini")
    await litemaas.add_model(conn, "granite", restricted=True)
    user_id = await litemaas.add_user(conn, oauth_id=LISA["sub"])
    active = await litemaas.subscribe(conn, user_id, "gpt-4o-mini")
    pending = await litemaas.subscribe(conn, user_id, "granite")
    key = await litemaas.add_key(conn, user_id, ["gpt-4o-mini", "granite"])
    before = await litemaas.rows(conn)

    session, page = await sign_in(console.url, LISA)
    async with session:
        # My keys: the LiteMaaS key, each model's access in the proxy's words, no control but sign-out.
        assert "Keys and subscriptions are managed in LiteMaaS: this console shows them." in page
        section = page[page.index(f'data-key-id="{key.id}"'):]
        assert f"<code>{key.key[:7]}…</code>" in section
        assert re.search(r'data-model="gpt-4o-mini">.*?<td>allowed</td>', section, re.S)
        assert re.search(r'data-model="granite">.*?state-pending">pending<.*?<td>refused: Your subscription to this '
                         r'model is not active. Please check your subscription.</td>', section, re.S)
        assert usage_line(page, key.key[:7]) == (
            f"Since {month_start()} (UTC): 0 requests, 0 prompt and 0 completion tokens · never used")
        assert "Create key" not in page and post_forms(page) == 1  # sign-out
        async with session.get(console.url + "/console/subscriptions") as response:
            subscriptions = await response.text()
        assert 'data-model="granite"' in subscriptions and post_forms(subscriptions) == 1
        assert "Subscribe to a model" not in subscriptions
        async with session.get(console.url + "/console/admin") as response:
            admin = await response.text()
        email = await conn.fetchval("SELECT email FROM users WHERE id = $1", user_id)  # LiteMaaS's, not updated
        assert f'class="pending-subscription" data-model="granite" data-email="{email}"' in admin
        assert post_forms(admin) == 1 and "Add a model" not in admin

        # Every write route answers 403 in words, the CSRF token checked first.
        csrf = await csrf_from(session, console.url + "/console/")
        writes = [("/console/keys", {"name": "x", "models": "gpt-4o-mini"}),
                  (f"/console/keys/{key.id}/revoke", {}),
                  ("/console/subscriptions", {"model_id": "gpt-4o-mini"}),
                  (f"/console/subscriptions/{active}/cancel", {}),
                  (f"/console/admin/subscriptions/{pending}/approve", {}),
                  (f"/console/admin/subscriptions/{pending}/deny", {}),
                  (f"/console/admin/users/{user_id}/deactivate", {}),
                  ("/console/admin/models", {"model_id": "llama"}),
                  ("/console/admin/models/access", {"model_id": "granite", "restricted": "0"})]
        for path, form in writes:
            status, refused = await post(session, console.url + path, {**form, "csrf": csrf})
            assert (path, status, alert(refused)) == (path, 403, MANAGED)
            status, forged = await post(session, console.url + path, {**form, "csrf": "forged"})
            assert (path, status, alert(forged)) == (path, 403, CSRF_REFUSED)
        async with session.get(console.url + "/console/keys/new") as response:
            assert (response.status, alert(await response.text())) == (403, MANAGED)

    # Someone LiteMaaS does not know is refused, and no user row is made.
    session, refusal = await sign_in_status(console.url, MARK)
    async with session:
        assert refusal == (403, NO_ACCOUNT)
    assert await litemaas.rows(conn) == before


def month_start() -> date:
    return datetime.now(timezone.utc).date().replace(day=1)


async def test_my_keys_shows_litemaas_usage_this_month(console, conn, fake_upstream):
    await litemaas.add_model(conn, "gpt-4o-mini")
    user_id = await litemaas.add_user(conn, oauth_id=LISA["sub"])
    await litemaas.subscribe(conn, user_id, "gpt-4o-mini")
    used = await litemaas.add_key(conn, user_id, ["gpt-4o-mini"])
    idle = await litemaas.add_key(conn, user_id, ["gpt-4o-mini"])
    fake_upstream.virtual_keys.add(used.key)
    # Two answered calls (the fake upstream reports 5 prompt and 7 completion tokens each) and one
    # refused (a model the key does not hold), which is not usage.
    session, _ = await sign_in(console.url, LISA)
    async with session:
        for model, status in (("gpt-4o-mini", 200), ("gpt-4o-mini", 200), ("granite", 403)):
            async with session.post(console.url + "/v1/chat/completions", headers=bearer(used.key),
                                    json={"model": model, "messages": [{"role": "user", "content": "hi"}]}) as r:
                assert r.status == status, await r.text()
        await console.state.usage.flush()
        # A row of last month, in the gateway's own schema, that this period leaves out.
        month = month_start()
        await conn.execute(
            "INSERT INTO maas_gateway.usage_daily (day, key_id, user_id, model_id, requests, prompt_tokens, "
            "completion_tokens) VALUES ($1, $2, $3, 'gpt-4o-mini', 50, 500, 5000)",
            month - timedelta(days=1), str(used.id), str(user_id))
        last_used = await conn.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", used.id)
        assert last_used is not None
        async with session.get(console.url + "/console/") as response:
            page = await response.text()
        assert usage_line(page, used.key[:7]) == (f"Since {month} (UTC): 2 requests, 10 prompt and 14 completion "
                                                  f"tokens · last used {last_used:%Y-%m-%d %H:%M} UTC")
        assert usage_line(page, idle.key[:7]) == (
            f"Since {month} (UTC): 0 requests, 0 prompt and 0 completion tokens · never used")
