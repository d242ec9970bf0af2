"""The enforcement flag, the breaker settings and LiteLLM's timeout change without a restart:
when config.yaml changes (polled) and on SIGHUP. A bad file keeps the running config."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path
from typing import Iterator

import aiohttp
import orjson
import pytest
import yaml

from gateway.runtime import reload
from gateway.ops.accesslog import AccessLog
from gateway.config import CONFIG_ENV
from gateway.ops.metrics import AUTH_DECISIONS, CONFIG_RELOADS, MODEL_ACCESS_DENIALS, fold
from policies.records import Mode
from tests.support import bearer, eventually, make_config, running_gateway, seed_key

pytestmark = pytest.mark.integration


def chat(model: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def fields(self, logger: str) -> list[dict]:
        return [dict(getattr(r, "fields", {}), msg=r.getMessage(), level=r.levelname) for r in self.records if r.name == logger]


@contextlib.contextmanager
def captured_logs() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger("maas_gateway")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def write(path: Path, data: dict, *, keep_mtime: bool = False) -> None:
    before = path.stat() if keep_mtime else None
    path.write_text(yaml.safe_dump(data))
    if before is not None:  # only SIGHUP can tell that it changed
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def file_config(mode: str = "enforce", **sections) -> dict:
    return {"litellm": {"sync_users": False}, "enforcement": {"mode": mode}, **sections}


@pytest.fixture
def config_file(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "config.yaml"
    write(path, file_config())
    monkeypatch.setenv(CONFIG_ENV, str(path))  # as `maas-gateway serve --config` does
    monkeypatch.setattr(reload, "POLL_SECONDS", 0.1)  # 1 s in service
    return path


def count(counter, *labels: str) -> float:
    fold()  # the hot path's counts wait in metrics.TALLY until a scrape or a fold
    return counter.labels(*labels)._value.get()


async def status_of(http: aiohttp.ClientSession, url: str, key: str, model: str) -> int:
    async with http.post(url + "/v1/chat/completions", json=chat(model), headers=bearer(key)) as r:
        await r.read()
        return r.status


async def refusal_of(http: aiohttp.ClientSession, url: str, key: str, model: str) -> tuple[int, dict]:
    async with http.post(url + "/v1/chat/completions", json=chat(model), headers=bearer(key)) as r:
        return r.status, await r.json()


DENIED_GPT_4O = (403, {"error": {
    "message": "Your API key does not have access to this model. Please check your subscription. (model: gpt-4o)",
    "type": "permission_denied_error", "param": "model", "code": "MODEL_ACCESS_DENIED"}})
REVOKED = (401, {"error": {
    "message": "This API key has been revoked. Create a new key to continue.",
    "type": "authentication_error", "param": None, "code": "API_KEY_REVOKED"}})


async def test_a_changed_file_switches_enforcement_to_shadow_and_back(pool, postgres_url, redis_url, fake_upstream, http, config_file):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    async with running_gateway(make_config(postgres_url, redis_url, fake_upstream.url)) as gw:
        assert await refusal_of(http, gw.url, seeded.key, "gpt-4o") == DENIED_GPT_4O
        with captured_logs() as logs:
            write(config_file, file_config("shadow"))
            await eventually(lambda: gw.state.mode is Mode.SHADOW, timeout=5)
        shadowed = count(AUTH_DECISIONS, "shadow_deny", "MODEL_ACCESS_DENIED")
        assert await status_of(http, gw.url, seeded.key, "gpt-4o") == 200
        assert count(AUTH_DECISIONS, "shadow_deny", "MODEL_ACCESS_DENIED") == shadowed + 1
        assert gw.state.config.enforcement.mode is Mode.SHADOW
        [change] = [f for f in logs.fields("maas_gateway.reload") if "setting" in f]
        assert change == {"setting": "enforcement.mode", "old": "enforce", "new": "shadow",
                          "msg": "config reload: enforcement.mode enforce -> shadow", "level": "WARNING"}
        metrics = await (await http.get(gw.url + "/metrics")).text()
        assert 'maas_gateway_enforcement_mode{mode="shadow"} 1.0' in metrics
        assert 'maas_gateway_enforcement_mode{mode="enforce"} 0.0' in metrics

        write(config_file, file_config("enforce"))
        await eventually(lambda: gw.state.mode is Mode.ENFORCE, timeout=5)
        assert await refusal_of(http, gw.url, seeded.key, "gpt-4o") == DENIED_GPT_4O


async def test_breaker_settings_and_litellm_timeout_reload(pool, postgres_url, redis_url, fake_upstream, http, config_file):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    async with running_gateway(make_config(postgres_url, redis_url, fake_upstream.url)) as gw:
        assert await status_of(http, gw.url, seeded.key, "gpt-4o-mini") == 200
        with captured_logs() as logs:
            write(config_file, file_config(
                breaker={"consecutive_failures": 2, "reset_timeout_seconds": 7, "error_threshold_percent": 25},
                litellm={"sync_users": False, "timeout_ms": 250},
            ))
            await eventually(lambda: gw.state.breaker.config.consecutive_failures == 2, timeout=5)
        settings = {f["setting"]: (f["old"], f["new"]) for f in logs.fields("maas_gateway.reload") if "setting" in f}
        assert settings == {
            "breaker.consecutive_failures": (5, 2),
            "breaker.reset_timeout_seconds": (30.0, 7.0),
            "breaker.error_threshold_percent": (50.0, 25.0),
            "litellm.timeout_ms": (5000, 250),
        }
        fake_upstream.fault, fake_upstream.delay = "slow", 3.0
        for _ in range(2):  # litellm.timeout_ms bounds the gateway's own calls, such as the model list
            started = time.perf_counter()
            async with http.get(gw.url + "/v1/models", headers=bearer(seeded.key)) as r:
                assert r.status == 504
            assert time.perf_counter() - started < 1.0
        assert gw.state.breaker.state == "open"  # after two failures, not five
        async with http.post(gw.url + "/v1/chat/completions", json=chat("gpt-4o-mini"), headers=bearer(seeded.key)) as r:
            assert (r.status, r.headers["Retry-After"]) == (503, "7")


async def test_a_bad_file_keeps_the_running_config(pool, postgres_url, redis_url, fake_upstream, http, config_file):
    async with running_gateway(make_config(postgres_url, redis_url, fake_upstream.url)) as gw:
        reloader = gw.state.extras["reloader"]
        for text, problem in (
            ("enforcement: {mode: strict}\n", "enforcement.mode: expected one of enforce, shadow, off, got 'strict'"),
            ("enforcement: [\n", "not valid YAML"),
            ("breaker: {reset_timeout_seconds: soon}\n", "breaker.reset_timeout_seconds: expected a number"),
        ):
            failed = count(CONFIG_RELOADS, "failed")
            with captured_logs() as logs:
                config_file.write_text(text)
                await eventually(lambda: count(CONFIG_RELOADS, "failed") > failed, timeout=5)
            [error] = [f for f in logs.fields("maas_gateway.reload") if f["level"] == "ERROR"]
            assert error["msg"].startswith("config reload failed, keeping the running configuration: ")
            assert problem in error["msg"]
            assert gw.state.mode is Mode.ENFORCE and gw.state.breaker.config.reset_timeout_seconds == 30
        assert await reloader.reload() is False  # the file is still bad


async def test_sighup_reloads_the_file(pool, postgres_url, redis_url, fake_upstream, http, config_file):
    async with running_gateway(make_config(postgres_url, redis_url, fake_upstream.url)) as gw:
        assert gw.state.extras["reloader"].sighup_enabled  # else SIGHUP would end the test process
        write(config_file, file_config("off"), keep_mtime=True)  # the poll cannot notice this change
        applied = count(CONFIG_RELOADS, "applied")
        os.kill(os.getpid(), signal.SIGHUP)
        await eventually(lambda: gw.state.mode is Mode.OFF, timeout=5)
        assert count(CONFIG_RELOADS, "applied") == applied + 1


async def test_shadow_mode_lets_a_denied_request_through_and_counts_it(pool, postgres_url, redis_url, fake_upstream, http):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    await pool.execute("INSERT INTO models (id) VALUES ('gpt-4o') ON CONFLICT DO NOTHING")  # a known model: its own label
    config = make_config(postgres_url, redis_url, fake_upstream.url, enforcement={"mode": "shadow"})
    async with running_gateway(config) as gw:
        decisions = count(AUTH_DECISIONS, "shadow_deny", "MODEL_ACCESS_DENIED")
        denials = count(MODEL_ACCESS_DENIALS, "gpt-4o")
        written: list[str] = []
        gw.state.access_log = AccessLog(write=written.append)
        assert await status_of(http, gw.url, seeded.key, "gpt-4o") == 200
        assert count(AUTH_DECISIONS, "shadow_deny", "MODEL_ACCESS_DENIED") == decisions + 1
        assert count(MODEL_ACCESS_DENIALS, "gpt-4o") == denials + 1
        gw.state.access_log.flush()
        [line] = [orjson.loads(text) for text in "".join(written).splitlines()]
        assert (line["decision"], line["shadow_code"], line["status"]) == ("shadow_deny", "MODEL_ACCESS_DENIED", 200)
        assert orjson.loads(fake_upstream.seen[0].body)["model"] == "gpt-4o"
        # revoked keys are refused in every mode
        revoked = await seed_key(pool, models=["gpt-4o-mini"], key_active=False)
        assert await refusal_of(http, gw.url, revoked.key, "gpt-4o-mini") == REVOKED
