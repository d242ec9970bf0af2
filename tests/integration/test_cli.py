"""The `maas-gateway` command as operators run it: a subprocess with the environment."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from gateway.dev.services import free_port
from tests.support import MASTER_KEY, bearer, seed_key, wait_until_serving

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "gateway.cli"]


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *CLI, *args, env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode(), err.decode()  # type: ignore[return-value]


async def test_migrate_is_idempotent(postgres_url):
    for _ in range(2):
        code, out, err = await run_cli("migrate", env={"DATABASE_URL": postgres_url})
        assert code == 0, err
    assert out.strip() == "schema is up to date"


@pytest.mark.parametrize(
    ("config", "env", "message"),
    [
        ("litellm:\n  timeout_ms: fast\n", {}, "litellm.timeout_ms: expected an integer, got 'fast'"),
        ("litellm:\n  timeuot_ms: 5\n", {}, "litellm.timeuot_ms: unknown key"),
        ("", {"LITELLM_TIMEOUT": "soon"}, "LITELLM_TIMEOUT: expected an integer, got 'soon'"),
        ("database:\n  url: postgresql://u:secret@h/db\n", {}, "database.url: secrets are not read from the file; set DATABASE_URL"),
        ("", {"LITELLM_API_KEY": "", "LITELLM_AUTH": "service_key"},
         "LITELLM_API_KEY: required when litellm.auth is service_key (the gateway calls LiteLLM with it)"),
    ],
)
async def test_bad_configuration_stops_serve_with_the_key_path(tmp_path: Path, config, env, message):
    path = tmp_path / "config.yaml"
    path.write_text(config)
    code, _, err = await run_cli("serve", "--config", str(path), env=env)
    assert code == 2
    assert message in err
    assert "secret" not in err.replace("secrets are not read", "")


async def test_serve_answers_and_stops_cleanly_on_sigterm(pool, postgres_url, redis_url, fake_upstream):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    port = free_port()
    env = {"DATABASE_URL": postgres_url, "REDIS_URL": redis_url, "LITELLM_URL": fake_upstream.url,
           "LITELLM_API_KEY": MASTER_KEY, "LITELLM_SYNC_USERS": "false"}
    process = await asyncio.create_subprocess_exec(
        *CLI, "serve", "--port", str(port), env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            await wait_until_serving(http, url, timeout=30)
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
            async with http.post(url + "/v1/chat/completions", json=body, headers=bearer(seeded.key)) as r:
                assert r.status == 200
                # uvicorn's one date; no server header, neither uvicorn's nor the upstream's (aiohttp's)
                assert (len(r.headers.getall("date")), r.headers.getall("server", [])) == (1, [])
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 30)
    # uvicorn re-raises the signal once shut down, the Unix convention for "ended by SIGTERM"
    assert process.returncode in (0, -signal.SIGTERM), err.decode()[-2000:]
    assert "Application shutdown complete." in err.decode()
    assert seeded.key not in err.decode()  # the access log shows the prefix only
    assert seeded.key[:7] in err.decode()


def test_every_command_has_clear_help(capsys):
    from gateway.cli import main

    assert main(["--help"]) == 0
    listed = capsys.readouterr().out
    commands = ["dev", "keys", "migrate", "models", "serve", "subscriptions", "sync", "usage", "users"]
    assert [line.split()[0] for line in listed.split("Commands:\n")[1].splitlines()] == commands
    assert "..." not in listed.split("Commands:")[1]  # no summary cut short
    leaves = ["serve", "migrate", "dev", "users create", "users get", "users set-limits", "users activate",
              "users deactivate", "models add", "models list", "subscriptions create", "subscriptions set-limits",
              "subscriptions set-status", "keys create", "keys set-limits", "keys list", "keys revoke", "usage", "sync"]
    for leaf in leaves:
        assert main([*leaf.split(), "--help"]) == 0
        text = capsys.readouterr().out
        assert text.startswith(f"Usage: maas-gateway {leaf} ") and "..." not in text.split("Options:")[0], leaf
    assert main(["keys", "set-limits", "--help"]) == 0
    assert "--rpm-limit INTEGER|DEFAULT" in capsys.readouterr().out
