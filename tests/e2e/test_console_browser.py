"""The console in a real browser (Debian's chromium driven by Playwright), signed in through
a real OpenID Connect provider (panva's oidc-provider, scripts/oidc), against the gateway
served by uvicorn and the real LiteLLM. Screenshots of each page are taken on every run; with
UPDATE_SCREENSHOTS=1 they replace the ones in docs/console/ (else they go to a temporary folder).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import AsyncIterator
from urllib.parse import parse_qsl, urlsplit

import openai
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from gateway.dev import services as devservices
from gateway.config import parse_config
from tests.support import MASTER_KEY, running_gateway

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SHOTS = (Path(__file__).resolve().parents[2] / "docs" / "console" if os.environ.get("UPDATE_SCREENSHOTS") == "1"
         else Path(tempfile.gettempdir()) / "maas-console-screenshots")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ADMIN_GROUP = "maas-admins"
RUN = secrets.token_hex(3)  # the session's database is shared: emails unique to this run
ALICE = {"sub": f"alice-{RUN}", "username": "alice", "password": "alice-pw", "email": f"alice-{RUN}@example.com",
         "name": "Alice", "groups": [ADMIN_GROUP]}
BOB = {"sub": f"bob-{RUN}", "username": "bob", "password": "bob-pw", "email": f"bob-{RUN}@example.com",
       "name": "Bob", "groups": []}
FRIENDLY_DENIED = "Your API key does not have access to this model. Please check your subscription."


@pytest.fixture(scope="module")
async def console(litellm, pool, postgres_url, redis_url) -> AsyncIterator[dict]:
    port = devservices.free_port()
    url = f"http://127.0.0.1:{port}"
    client = {"client_id": "maas-console", "client_secret": secrets.token_urlsafe(24),
              "redirect_uris": [f"{url}/console/callback"], "post_logout_redirect_uris": [f"{url}/console/"]}
    workdir = Path(tempfile.mkdtemp(prefix="maas-oidc-"))
    provider = devservices.start_oidc_provider(workdir, [client], [ALICE, BOB])
    environ = {
        "DATABASE_URL": postgres_url, "REDIS_URL": redis_url, "LITELLM_URL": litellm.url, "LITELLM_API_KEY": MASTER_KEY,
        "OIDC_ISSUER": provider.url, "OIDC_CLIENT_ID": client["client_id"],
        "OIDC_CLIENT_SECRET": client["client_secret"], "OIDC_ADMIN_GROUP": ADMIN_GROUP,
        "SESSION_SECRET": secrets.token_urlsafe(32),
    }
    config = parse_config({"litellm": {"sync_users": False}, "health": {"interval_seconds": 0.5}}, environ)
    for model in ("gpt-4o-mini", "gpt-4o", "llama-3-8b"):
        await pool.execute("INSERT INTO models (id, name) VALUES ($1, $1) ON CONFLICT DO NOTHING", model)
    try:
        async with running_gateway(config, port=port) as gw:
            yield {"url": url, "issuer": provider.url, "gateway": gw}
    finally:
        provider.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def sign_in(browser: Browser, console: dict, user: dict, screenshots: bool = False) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(viewport={"width": 1100, "height": 700})
    page = await context.new_page()
    await page.goto(console["url"] + "/console/")
    if screenshots:
        await shot(page, "1-welcome")
    await page.get_by_role("link", name="Sign in").click()
    await page.wait_for_url(console["issuer"] + "/interaction/**")
    await page.fill("#username", user["username"])
    await page.fill("#password", user["password"])
    if screenshots:
        await shot(page, "2-provider-sign-in")
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(console["url"] + "/console/")
    assert await page.locator("h1").inner_text() == "My keys"
    return context, page


async def csrf_of(page: Page) -> str:
    return await page.locator("form.signout input[name=csrf]").input_value()


async def poll(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await condition():
            return True
        await asyncio.sleep(0.02)  # polling a condition with a deadline
    return await condition()


async def test_the_console_end_to_end(console, browser, pool):
    # A wrong password stays at the provider.
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(console["url"] + "/console/login")
    await page.fill("#username", "alice")
    await page.fill("#password", "wrong")
    await page.get_by_role("button", name="Sign in").click()
    assert await page.get_by_role("alert").inner_text() == "Invalid username or password."
    assert await pool.fetchval("SELECT count(*) FROM users WHERE oauth_id = $1", ALICE["sub"]) == 0
    await context.close()

    # Sign-in creates the user, matched by (issuer, sub).
    alice, page = await sign_in(browser, console, ALICE, screenshots=True)
    user = await pool.fetchrow("SELECT * FROM users WHERE oauth_provider = $1 AND oauth_id = $2",
                               console["issuer"], ALICE["sub"])
    assert (user["email"], user["username"], user["is_active"]) == (ALICE["email"], "alice", True)
    assert user["last_login_at"] is not None
    assert await page.locator("p", has_text="You have no API keys yet.").count() == 1

    # The session cookie: signed, HttpOnly, SameSite=Lax, for /console only; every page has a CSP.
    [cookie] = [c for c in await alice.cookies() if c["name"] == "maas_console"]
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Lax", "/console")
    response = await page.goto(console["url"] + "/console/")
    csp = (await response.all_headers())["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    # Forms post only to the console; sign-out's redirect goes on to the provider (its end_session_endpoint).
    assert f"form-action 'self' {console['issuer']};" in csp

    # Subscribe to gpt-4o-mini and llama-3-8b.
    await page.get_by_role("link", name="My subscriptions", exact=True).click()
    for model in ("gpt-4o-mini", "llama-3-8b"):
        await page.select_option("#model_id", model)
        await page.get_by_role("button", name="Subscribe").click()
        await page.wait_for_selector(f"tr.subscription[data-model='{model}']")
    rows = await pool.fetch("SELECT model_id, status FROM subscriptions WHERE user_id = $1 ORDER BY model_id", user["id"])
    assert [tuple(r) for r in rows] == [("gpt-4o-mini", "active"), ("llama-3-8b", "active")]
    await shot(page, "3-subscriptions")

    # Create a key for gpt-4o-mini: shown once, with snippets for this gateway.
    await page.get_by_role("link", name="My keys", exact=True).click()
    await page.get_by_role("link", name="Create key").click()
    await page.fill("#name", "notebook")
    await page.check("input[name=models][value='gpt-4o-mini']")
    await shot(page, "4-create-key")
    await page.get_by_role("button", name="Create key").click()
    key = await page.locator("#new-key").inner_text()
    assert key.startswith("sk-") and len(key) > 20
    assert f'base_url="{console["url"]}/v1", api_key="{key}"' in await page.locator("#python-snippet").inner_text()
    assert f"curl -s {console['url']}/v1/chat/completions" in await page.locator("#curl-snippet").inner_text()
    await shot(page, "5-key-created")
    key_id = await pool.fetchval("SELECT id FROM api_keys WHERE user_id = $1 AND name = 'notebook'", user["id"])

    # The key works from the openai SDK for its model, and is refused for another.
    async with openai.AsyncOpenAI(base_url=console["url"] + "/v1", api_key=key, max_retries=0) as sdk:
        reply = await sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == "Hello from the mock gpt-4o-mini."
        with pytest.raises(openai.PermissionDeniedError) as denied:
            await sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        assert denied.value.status_code == 403
        assert denied.value.body == {"message": FRIENDLY_DENIED + " (model: gpt-4o)", "type": "permission_denied_error",
                                     "param": "model", "code": "MODEL_ACCESS_DENIED"}

        # A second key on both models; llama-3-8b's subscription is then cancelled: My keys says why
        # that model is refused now, in the proxy's words.
        await page.get_by_role("link", name="My keys", exact=True).click()
        await page.get_by_role("link", name="Create key").click()
        await page.fill("#name", "both")
        await page.check("input[name=models][value='gpt-4o-mini']")
        await page.check("input[name=models][value='llama-3-8b']")
        await page.get_by_role("button", name="Create key").click()
        await page.get_by_role("link", name="My subscriptions", exact=True).click()
        await page.locator("tr.subscription[data-model='llama-3-8b'] button", has_text="Cancel").click()
        await page.wait_for_selector("tr.subscription[data-model='llama-3-8b'] .state-cancelled")
        await page.get_by_role("link", name="My keys", exact=True).click()
        await page.wait_for_url(console["url"] + "/console/")  # all_inner_texts() does not wait for the page
        both = page.locator("section.key", has_text="both")
        await both.locator("tr[data-model='llama-3-8b']").wait_for()  # the page has loaded: all_inner_texts() does not wait
        assert await both.locator("tr[data-model='gpt-4o-mini'] td").all_inner_texts() == [
            "gpt-4o-mini", "active", "allowed"]
        assert await both.locator("tr[data-model='llama-3-8b'] td").all_inner_texts() == [
            "llama-3-8b", "cancelled",
            "refused: Your subscription to this model is not active. Please check your subscription."]
        # Usage this month and last use: the notebook key's one answered call (the refused one is not counted).
        await console["gateway"].state.usage.flush()
        await page.reload()
        notebook = page.locator(f"section.key[data-key-id='{key_id}'] .usage")
        assert await notebook.locator(".requests").inner_text() == "1"
        assert int(await notebook.locator(".prompt-tokens").inner_text()) > 0
        assert int(await notebook.locator(".completion-tokens").inner_text()) > 0
        last_used = await pool.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", key_id)
        assert await notebook.locator(".last-used").inner_text() == f"last used {last_used:%Y-%m-%d %H:%M} UTC"
        assert await both.locator(".usage .last-used").inner_text() == "never used"
        await shot(page, "6-my-keys")

        # A second user sees none of Alice's keys and cannot revoke them.
        bob, bob_page = await sign_in(browser, console, BOB)
        assert await bob_page.locator("section.key").count() == 0
        assert await bob_page.locator("p", has_text="You have no API keys yet.").count() == 1
        refused = await bob_page.request.post(
            f"{console['url']}/console/keys/{key_id}/revoke", form={"csrf": await csrf_of(bob_page)},
            max_redirects=0)
        assert refused.status == 404
        assert "No such item among yours." in await refused.text()
        # ... nor without the CSRF token (403), nor with Alice's keys page.
        forged = await bob_page.request.post(f"{console['url']}/console/keys/{key_id}/revoke", form={"csrf": "x"})
        assert forged.status == 403
        assert await pool.fetchval("SELECT revoked_at FROM api_keys WHERE id = $1", key_id) is None
        assert (await sdk.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])).choices[0].message.content

        # Alice revokes the key in the page: the SDK gets 401 within a second.
        section = page.locator(f"section.key[data-key-id='{key_id}']")
        await section.get_by_role("button", name="Revoke").click()
        revoked_at = time.monotonic()
        await page.wait_for_selector(f"section.key[data-key-id='{key_id}'] .status-revoked")

        async def refused_now() -> bool:
            try:
                await sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
            except openai.AuthenticationError as exc:
                assert exc.body == {"message": "This API key has been revoked. Create a new key to continue.",
                                    "type": "authentication_error", "param": None, "code": "API_KEY_REVOKED"}
                return True
            return False

        assert await poll(refused_now, 1.0)
        assert time.monotonic() - revoked_at < 1.0 + 0.5
        revoked = await pool.fetchval("SELECT revoked_at FROM api_keys WHERE id = $1", key_id)
        assert f"revoked {revoked:%Y-%m-%d %H:%M} UTC" in await section.locator(".dates").inner_text()
        assert await section.locator(".refusal").inner_text() == "This API key has been revoked. Create a new key to continue."
        await shot(page, "7-key-revoked")

    # The admin view (Alice is in OIDC_ADMIN_GROUP; Bob is not): Alice restricts gpt-4o, Bob's
    # subscription to it waits for her, she approves it.
    bob_id = await pool.fetchval("SELECT id FROM users WHERE oauth_id = $1", BOB["sub"])
    not_admin = await bob_page.goto(console["url"] + "/console/admin")
    assert not_admin.status == 403
    assert await bob_page.get_by_role("alert").inner_text() == "This page is for administrators."
    await page.get_by_role("link", name="Admin").click()
    gpt_4o = page.locator("tr.admin-model[data-model='gpt-4o']")
    await gpt_4o.get_by_role("button", name="Restrict").click()
    await gpt_4o.locator(".access", has_text="restricted: needs approval").wait_for()
    await bob_page.goto(console["url"] + "/console/subscriptions")
    assert await bob_page.locator("#model_id option[value='gpt-4o']").inner_text() == "gpt-4o (needs approval)"
    await bob_page.select_option("#model_id", "gpt-4o")
    await bob_page.get_by_role("button", name="Subscribe").click()
    assert await bob_page.locator("tr.subscription[data-model='gpt-4o'] td").nth(1).inner_text() == (
        "pending (waiting for an administrator)")
    await page.reload()
    row = page.locator(f"tr.pending-subscription[data-email='{BOB['email']}']")
    await shot(page, "8-admin")
    await row.get_by_role("button", name="Approve").click()
    await row.wait_for(state="detached")
    assert await pool.fetchval(
        "SELECT status FROM subscriptions WHERE user_id = $1 AND model_id = 'gpt-4o'", bob_id) == "active"
    await gpt_4o.get_by_role("button", name="Open to all").click()  # as the session's other tests expect
    await gpt_4o.locator(".access", has_text="open").wait_for()
    assert await pool.fetchval("SELECT restricted_access FROM models WHERE id = 'gpt-4o'") is False

    # Add a model; the same again is refused in the admin API's words.
    model = f"mistral-{RUN}"
    for _ in range(2):
        await page.fill("#new-model", model)
        await page.get_by_role("button", name="Add model").click()
        await page.locator(".label.model", has_text=model).wait_for()
    assert await page.get_by_role("alert").inner_text() == f"A model with id {model!r} already exists."
    assert await pool.fetchval("SELECT count(*) FROM models WHERE id = $1", model) == 1
    await page.goto(console["url"] + "/console/admin")

    # Deactivate Bob, then activate him again.
    bob_row = page.locator(f"tr.user[data-email='{BOB['email']}']")
    for button, then, active in (("Deactivate", "Activate", False), ("Activate", "Deactivate", True)):
        await bob_row.get_by_role("button", name=button, exact=True).click()
        await bob_row.get_by_role("button", name=then, exact=True).wait_for()
        assert await pool.fetchval("SELECT is_active FROM users WHERE id = $1", bob_id) is active

    # Signed in at the provider, signing in to the console again asks nothing (single sign-on) ...
    await bob_page.goto(console["url"] + "/console/login")
    await bob_page.wait_for_url(console["url"] + "/console/")
    assert await bob_page.locator("h1").inner_text() == "My keys"

    # ... but after signing out, which ends the provider's session too (RP-initiated logout, with
    # the ID token as hint: the provider signs out at once and sends the browser back), the
    # console asks to sign in again and the provider asks for the password again.
    ends: list[str] = []
    page.on("request", lambda request: ends.append(request.url) if "/session/end" in request.url else None)
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url(re.compile(re.escape(console["url"] + "/console/?state=") + ".+"))
    assert await page.get_by_role("link", name="Sign in").count() == 1
    end = urlsplit(ends[0])
    assert f"{end.scheme}://{end.netloc}{end.path}" == console["issuer"] + "/session/end"
    hint = dict(parse_qsl(end.query))
    assert (hint["client_id"], hint["post_logout_redirect_uri"]) == ("maas-console", console["url"] + "/console/")
    assert jwt_claims(hint["id_token_hint"])["sub"] == ALICE["sub"]
    assert (await page.goto(console["url"] + "/console/keys/new")).url == console["url"] + "/console/"
    await page.get_by_role("link", name="Sign in").click()
    await page.wait_for_url(console["issuer"] + "/interaction/**")
    await page.fill("#username", ALICE["username"])
    await page.fill("#password", ALICE["password"])
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(console["url"] + "/console/")
    assert await page.locator("h1").inner_text() == "My keys"
    await bob.close()
    await alice.close()


def jwt_claims(token: str) -> dict:
    """A JWT's payload, unverified (the provider verified it: this only reads whose it is)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
