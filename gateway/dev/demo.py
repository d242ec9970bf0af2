"""`maas-gateway dev` (what `make run` runs): a working gateway on this machine in one command.

Starts what the environment does not provide: a throwaway Postgres when DATABASE_URL
is unset, the real LiteLLM proxy with the mock models of deploy/litellm/config.yaml
when LITELLM_URL is unset (REDIS_URL unset: in-process cache only). Applies the
schema, makes a demo user, subscriptions and key, prints how to call it, and
serves in service_key mode with user sync off (the demo LiteLLM has no database).
When OIDC_ISSUER is unset it also starts the local OIDC provider (scripts/oidc) with the
demo user (demo / demo, an admin) and serves the console at /console.
Ctrl-C stops the gateway and everything this command started.
`--litemaas`: the same on a LiteMaaS-shaped database (gateway/dev/litemaas.py).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
from pathlib import Path

from gateway.dev import services as devservices

DEMO_EMAIL = "demo@example.com"
DEMO_MODELS = ("gpt-4o-mini", "text-embedding-3-small")
ALL_DEMO_MODELS = ("gpt-4o-mini", "gpt-4o", "llama-3-8b", "text-embedding-3-small")
LITELLM_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "litellm" / "config.yaml"


DEMO_LOGIN = {"sub": "demo", "username": "demo", "password": "demo", "email": DEMO_EMAIL, "name": "Demo User",
              "groups": ["maas-admins"]}


async def seed_demo(database_url: str, config) -> str:
    """The demo user, models, subscriptions and a fresh key; returns the key."""
    import asyncpg

    from gateway.store import db
    from gateway.accounts.service import Accounts

    await db.migrate_url(database_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        accounts = Accounts(pool, config, None, None)
        user_id = await pool.fetchval("SELECT id FROM users WHERE lower(email) = $1", DEMO_EMAIL)
        if user_id is None:
            user_id = (await accounts.create_user(email=DEMO_EMAIL, username="demo"))["id"]
        known = {m["id"] for m in await accounts.list_models()}
        for model in ALL_DEMO_MODELS:
            if model not in known:
                await accounts.create_model(id=model)
        subscribed = {r["model_id"] for r in await pool.fetch("SELECT model_id FROM subscriptions WHERE user_id = $1", user_id)}
        for model in DEMO_MODELS:
            if model not in subscribed:
                await accounts.create_subscription(user_id=user_id, model_id=model)
        if config.console.oidc_issuer:  # the console signs the demo user in as this row
            await pool.execute("UPDATE users SET oauth_provider = $1, oauth_id = $2 WHERE id = $3",
                               config.console.oidc_issuer.rstrip("/"), DEMO_LOGIN["sub"], user_id)
        created = await accounts.create_key(user_id=user_id, models=list(DEMO_MODELS), name="make run demo")
        return created["key"]
    finally:
        await pool.close()


def _console_banner(url: str, config) -> str:
    if not (config.console.enabled and config.console.oidc_issuer):
        return " Console: off (set OIDC_ISSUER, or run `npm ci --prefix scripts/oidc` for the local provider).\n"
    if config.console.oidc_issuer != os.environ.get("OIDC_ISSUER"):
        return f" Console: {url}/console/   sign in as demo / demo (local OIDC provider, an admin)\n"
    return f" Console: {url}/console/   (OIDC_ISSUER {config.console.oidc_issuer})\n"


def _start_oidc(workdir: Path, url: str, environ: dict) -> devservices.Service | None:
    """The local provider with the demo user, and the console's settings pointing at it."""
    if not (devservices.OIDC_PROVIDER_DIR / "node_modules").is_dir() or not shutil.which("node"):
        return None
    client = {"client_id": "maas-console", "client_secret": secrets.token_urlsafe(24),
              "redirect_uris": [f"{url}/console/callback"], "post_logout_redirect_uris": [f"{url}/console/"]}
    print("starting the local OIDC provider ...", flush=True)
    service = devservices.start_oidc_provider(workdir / "oidc", [client], [DEMO_LOGIN])
    environ.update(OIDC_ISSUER=service.url, OIDC_CLIENT_ID=client["client_id"],
                   OIDC_CLIENT_SECRET=client["client_secret"], OIDC_ADMIN_GROUP="maas-admins")
    environ.setdefault("SESSION_SECRET", secrets.token_urlsafe(32))
    return service


def _banner(url: str, key: str, console: str) -> str:
    return f"""
================================================================================
 maas-gateway is serving at {url}
 Demo API key (may use {', '.join(DEMO_MODELS)}; shown once):

   export OPENAI_API_KEY={key}

 curl:
   curl -s {url}/v1/chat/completions \\
     -H "Authorization: Bearer $OPENAI_API_KEY" -H "Content-Type: application/json" \\
     -d '{{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": "Hello"}}]}}'

 Python (pip install openai):
   from openai import OpenAI
   client = OpenAI(base_url="{url}/v1", api_key="{key}")
   reply = client.chat.completions.create(
       model="gpt-4o-mini", messages=[{{"role": "user", "content": "Hello"}}])
   print(reply.choices[0].message.content)

 A model the key may not use (gpt-4o) answers 403 MODEL_ACCESS_DENIED.
{console} Metrics: {url}/metrics   Health: {url}/health/integration   Ctrl-C stops everything.
================================================================================
"""


def run_dev(config_path: str | None, port: int, litemaas: bool) -> int:
    import uvicorn

    from gateway.serving import listeners
    from gateway.app import create_app
    from gateway.config import check_serving, load_config
    from gateway.ops.logs import configure

    workdir = Path(tempfile.mkdtemp(prefix="maas-gateway-dev-"))
    os.chmod(workdir, 0o755)
    started: list[devservices.Service] = []
    environ = dict(os.environ)
    try:
        if not environ.get("DATABASE_URL"):
            print("starting a throwaway Postgres ...", flush=True)
            started.append(devservices.start_postgres(workdir / "postgres"))
            environ["DATABASE_URL"] = started[-1].url
        if not environ.get("LITELLM_URL"):
            master_key = environ.get("LITELLM_API_KEY") or "sk-dev-" + secrets.token_urlsafe(24)
            print("starting LiteLLM with the mock models (about 15 s) ...", flush=True)
            started.append(devservices.start_litellm(LITELLM_CONFIG, workdir / "litellm", master_key=master_key))
            environ["LITELLM_URL"] = started[-1].url
            environ["LITELLM_API_KEY"] = master_key
        environ.setdefault("LITELLM_AUTH", "service_key")
        environ.setdefault("LITELLM_SYNC_USERS", "false")
        if litemaas:
            environ["GATEWAY_DATABASE_SCHEMA"] = "litemaas"
        config = load_config(config_path, environ)
        url = f"http://{config.server.host}:{port}"
        if not environ.get("OIDC_ISSUER") and config.console.enabled:
            provider = _start_oidc(workdir, url, environ)
            if provider is not None:
                started.append(provider)
                config = load_config(config_path, environ)
        check_serving(config)
        configure(config.logging.level)
        if litemaas:
            from gateway.dev.litemaas import seed_litemaas_demo

            key = asyncio.run(seed_litemaas_demo(environ["DATABASE_URL"], ALL_DEMO_MODELS, DEMO_MODELS))
        else:
            key = asyncio.run(seed_demo(environ["DATABASE_URL"], config))
        print(_banner(url, key, _console_banner(url, config)), flush=True)
        uvicorn.run(
            create_app(config), host=config.server.host, port=port, loop="uvloop", http=listeners.protocol(config.server),
            lifespan="on", access_log=False, log_config=None, proxy_headers=False, server_header=False,
            timeout_keep_alive=config.server.keep_alive_timeout_seconds,  # type: ignore[arg-type]
        )
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        for service in reversed(started):
            service.stop()
        shutil.rmtree(workdir, ignore_errors=True)
