"""Metrics at /metrics and the JSON access log, after real traffic; one run of
`maas-gateway serve --workers 2` for multiprocess aggregation."""

from __future__ import annotations

import asyncio
import glob
import io
import logging
import os
import re
import signal
import sys
import tempfile
import uuid
from pathlib import Path

import aiohttp
import orjson
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from gateway.ops.accesslog import AccessLog
from gateway.dev.services import free_port
from gateway.store.keys import hash_key
from gateway.ops.logs import JsonFormatter
from gateway.ops.metrics import FOLD_SECONDS, fold
from tests.support import MASTER_KEY, bearer, eventually, make_config, running_gateway, seed_key, wait_until_serving

pytestmark = pytest.mark.integration

CHAT = "/v1/chat/completions"


USAGE = {"include_usage": True}  # LiteLLM sends a stream's usage chunk only when asked


def chat(model: str, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


def value(name: str, **labels: str) -> float:
    fold()  # the hot path's counts wait in metrics.TALLY until a scrape or a fold
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def post(http: aiohttp.ClientSession, url: str, body: dict, headers: dict) -> tuple[int, bytes, dict]:
    async with http.post(url + CHAT, json=body, headers=headers) as r:
        return r.status, await r.read(), r.headers.copy()


def model_labels(text: str) -> set[str]:
    families = text_string_to_metric_families(text)
    return {s.labels["model"] for f in families if f.name.startswith("maas_gateway_") for s in f.samples if "model" in s.labels}


async def test_metrics_after_traffic(pool, postgres_url, redis_url, fake_upstream, http):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])  # before start: gpt-4o-mini is a known model
    unknown_model = f"made-up-{uuid.uuid4().hex[:8]}"
    watched = {
        "ok": ("maas_gateway_requests_total", {"route": CHAT, "model": "gpt-4o-mini", "status": "200", "code": ""}),
        "denied": ("maas_gateway_requests_total", {"route": CHAT, "model": "other", "status": "403", "code": "MODEL_ACCESS_DENIED"}),
        "invalid": ("maas_gateway_requests_total", {"route": CHAT, "model": "", "status": "401", "code": "INVALID_API_KEY"}),
        "allow": ("maas_gateway_auth_decisions_total", {"result": "allow", "reason": "ok"}),
        "deny_model": ("maas_gateway_auth_decisions_total", {"result": "deny", "reason": "MODEL_ACCESS_DENIED"}),
        "deny_invalid": ("maas_gateway_auth_decisions_total", {"result": "deny", "reason": "INVALID_API_KEY"}),
        "deny_missing": ("maas_gateway_auth_decisions_total", {"result": "deny", "reason": "MISSING_API_KEY"}),
        "denial_other": ("maas_gateway_model_access_denials_total", {"model": "other"}),
        "prompt": ("maas_gateway_tokens_total", {"model": "gpt-4o-mini", "type": "prompt"}),
        "completion": ("maas_gateway_tokens_total", {"model": "gpt-4o-mini", "type": "completion"}),
        "ttfb": ("maas_gateway_stream_time_to_first_byte_seconds_count", {"route": CHAT}),
        "duration": ("maas_gateway_request_duration_seconds_count", {"route": CHAT}),
        "upstream": ("maas_gateway_upstream_duration_seconds_count", {"route": CHAT}),
        "l1": ("maas_gateway_key_cache_lookups_total", {"tier": "l1", "result": "hit"}),
        "from_db": ("maas_gateway_key_cache_lookups_total", {"tier": "postgres", "result": "hit"}),
    }
    async with running_gateway(make_config(postgres_url, redis_url, fake_upstream.url)) as gw:
        before = {name: value(metric, **labels) for name, (metric, labels) in watched.items()}
        async with http.get(gw.url + "/metrics") as r:  # labels other tests left (their gateways knew other models)
            models_before = model_labels(await r.text())
        key = bearer(seeded.key)
        assert (await post(http, gw.url, chat("gpt-4o-mini"), key))[0] == 200  # usage 5 + 7
        status, body, _ = await post(http, gw.url, chat("gpt-4o-mini", stream=True, stream_options=USAGE), key)  # 4 + 5
        assert status == 200 and body.endswith(b"data: [DONE]\n\n")
        assert (await post(http, gw.url, chat(unknown_model), key))[0] == 403
        assert (await post(http, gw.url, chat("gpt-4o-mini"), {"Authorization": "Bearer sk-nobody-" + uuid.uuid4().hex}))[0] == 401
        assert (await post(http, gw.url, chat("gpt-4o-mini"), {}))[0] == 401
        async with http.get(gw.url + "/metrics") as r:
            assert r.status == 200 and r.headers["content-type"].startswith("text/plain")
            text = await r.text()
        known = gw.state.known_models
    delta = {name: value(metric, **labels) - before[name] for name, (metric, labels) in watched.items()}
    assert delta == {
        "ok": 2, "denied": 1, "invalid": 1, "allow": 2, "deny_model": 1, "deny_invalid": 1, "deny_missing": 1,
        "denial_other": 1, "prompt": 9, "completion": 12, "ttfb": 1, "duration": 5, "upstream": 2,
        "l1": 2, "from_db": 1,
    }

    families = {f.name: f for f in text_string_to_metric_families(text) if f.name.startswith("maas_gateway_")}
    for family in families.values():
        assert re.fullmatch(r"maas_gateway_[a-z0-9_]+", family.name)
        if family.type == "counter":
            assert not family.name.endswith("_total")  # the parser strips it: the exposed name has it
            assert f"# TYPE {family.name}_total counter" in text
        if family.type == "histogram":
            assert family.name.endswith("_seconds")
    # No key material in any label; model labels are known models, "other", or "" (no model).
    labels = [(k, v) for f in families.values() for s in f.samples for k, v in s.labels.items()]
    for secret in (seeded.key, seeded.key[:12], hash_key(seeded.key), unknown_model):
        assert secret not in text
    assert model_labels(text) - models_before <= known | {"other", ""}
    assert {k for k, _ in labels} <= {"route", "model", "status", "code", "result", "reason", "tier", "type", "target",
                                     "from_state", "to_state", "dependency", "mode", "le", "scope", "limit", "kind"}


async def test_tokens_of_a_stream_longer_than_the_tail_the_gateway_keeps(pool, postgres_url, redis_url, fake_upstream, http):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    fake_upstream.stream_chunks = 600  # ~60 KB of events before the usage event: the kept tail is cut many times
    prompt = ("maas_gateway_tokens_total", {"model": "gpt-4o-mini", "type": "prompt"})
    completion = ("maas_gateway_tokens_total", {"model": "gpt-4o-mini", "type": "completion"})
    async with running_gateway(make_config(postgres_url, redis_url, fake_upstream.url)) as gw:
        before = [value(name, **labels) for name, labels in (prompt, completion)]
        status, body, _ = await post(http, gw.url, chat("gpt-4o-mini", stream=True, stream_options=USAGE), bearer(seeded.key))
        assert status == 200 and len(body) > 50_000 and body.endswith(b"data: [DONE]\n\n")
    after = [value(name, **labels) for name, labels in (prompt, completion)]
    assert (after[0] - before[0], after[1] - before[1]) == (4, 600)



async def test_one_json_access_line_per_request_with_the_key_only_by_prefix(pool, postgres_url, redis_url, fake_upstream, http):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("maas_gateway")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        async with running_gateway(make_config(postgres_url, redis_url, fake_upstream.url)) as gw:
            gw.state.access_log = AccessLog(write=stream.write)  # its lines next to the others; flushed at shutdown
            key = bearer(seeded.key)
            status, _, headers = await post(http, gw.url, chat("gpt-4o-mini"), {**key, "x-request-id": "req-observability-1"})
            assert (status, headers["x-request-id"]) == (200, "req-observability-1")
            assert fake_upstream.seen[0].headers["x-request-id"] == "req-observability-1"  # propagated to LiteLLM
            assert (await post(http, gw.url, chat("gpt-4o"), key))[0] == 403
            assert (await post(http, gw.url, chat("gpt-4o-mini"), {"x-api-key": seeded.key[:-1]}))[0] == 401
            fake_upstream.fault, fake_upstream.status = "status", 503
            assert (await post(http, gw.url, chat("gpt-4o-mini"), key))[0] == 503
            logging.getLogger("maas_gateway.test").warning("a careless message with %s", seeded.key)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    output = stream.getvalue()
    assert seeded.key not in output and seeded.key[:-1] not in output and seeded.key[:12] not in output
    lines = [orjson.loads(line) for line in output.splitlines()]
    access = [line for line in lines if line["logger"] == "maas_gateway.access"]
    assert len(access) == 4
    for line in access:
        assert {"ts", "level", "msg", "pid", "request_id", "route", "model", "status", "code", "duration_ms"} <= set(line)
        assert line["route"] == CHAT and line["duration_ms"] > 0
    ok, denied, unknown, failed = access
    assert (ok["request_id"], ok["decision"], ok["model"], ok["status"], ok["code"]) == (
        "req-observability-1", "allow", "gpt-4o-mini", 200, None)
    assert ok["key_prefix"] == seeded.key[:7] and ok["user_id"] == seeded.user_id and ok["upstream_ms"] > 0
    assert (denied["decision"], denied["model"], denied["status"], denied["code"]) == ("deny", "gpt-4o", 403, "MODEL_ACCESS_DENIED")
    assert (unknown["status"], unknown["code"]) == (401, "INVALID_API_KEY") and "key_prefix" not in unknown
    assert (failed["decision"], failed["status"], failed["code"]) == ("allow", 503, None)  # LiteLLM's 503, in the gateway's words
    assert (failed["upstream_status"], orjson.loads(failed["upstream_error"])["error"]["message"]) == (503, "upstream says 503")
    assert len({line["request_id"] for line in access}) == 4
    [careless] = [line for line in lines if line["logger"] == "maas_gateway.test"]
    assert careless["msg"] == f"a careless message with {seeded.key[:7]}..."


async def test_model_listing_is_logged_and_counted_like_inference(pool, postgres_url, redis_url, fake_upstream, http):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])  # before start: gpt-4o-mini is a known model
    listed = ("maas_gateway_requests_total", {"route": "/v1/models", "model": "", "status": "200", "code": ""})
    one = ("maas_gateway_requests_total", {"route": "/v1/models/{model}", "model": "gpt-4o-mini", "status": "200", "code": ""})
    missing = ("maas_gateway_requests_total", {"route": "/v1/models/{model}", "model": "other", "status": "404", "code": "MODEL_NOT_FOUND"})
    before = [value(name, **labels) for name, labels in (listed, one, missing)]
    lines: list[str] = []
    async with running_gateway(make_config(postgres_url, redis_url, fake_upstream.url)) as gw:
        gw.state.access_log = AccessLog(write=lines.append)
        for path, status in (("/v1/models", 200), ("/v1/models/gpt-4o-mini", 200), ("/v1/models/made-up-model", 404)):
            async with http.get(gw.url + path, headers=bearer(seeded.key)) as r:
                assert r.status == status, path
        gw.state.access_log.flush()
    after = [value(name, **labels) for name, labels in (listed, one, missing)]
    assert [a - b for a, b in zip(after, before)] == [1, 1, 1]
    access = [orjson.loads(line) for line in "".join(lines).splitlines()]
    assert [(line["route"], line["model"], line["status"], line["code"]) for line in access] == [
        ("/v1/models", None, 200, None),
        ("/v1/models/{model}", "gpt-4o-mini", 200, None),
        ("/v1/models/{model}", "made-up-model", 404, "MODEL_NOT_FOUND"),
    ]
    assert all(line["key_prefix"] == seeded.key[:7] and line["duration_ms"] > 0 for line in access)


async def test_serve_with_two_workers_aggregates_metrics(pool, postgres_url, redis_url, fake_upstream, http):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    port = free_port()
    metrics_dir = tempfile.mkdtemp(prefix="maas-metrics-")
    log_path = Path(metrics_dir) / "stderr.log"
    env = {**os.environ, "DATABASE_URL": postgres_url, "REDIS_URL": redis_url, "LITELLM_URL": fake_upstream.url,
           "LITELLM_API_KEY": MASTER_KEY, "LITELLM_SYNC_USERS": "false", "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    env.pop("MAAS_GATEWAY_CONFIG", None)
    script = Path(sys.executable).parent / "maas-gateway"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "gateway.cli"]
    with open(log_path, "wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *command, "serve", "--workers", "2", "--port", str(port), env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
        )
    url = f"http://127.0.0.1:{port}"
    requests = 30
    try:
        await wait_until_serving(http, url, timeout=60)
        # both workers have imported the metrics (each writes its own files)
        await eventually(lambda: len({Path(p).stem.rsplit("_", 1)[1] for p in glob.glob(f"{metrics_dir}/counter_*.db")}) >= 2,
                         timeout=30, interval=0.1)
        connector = aiohttp.TCPConnector(force_close=True)  # a new connection each time: both workers accept
        async with aiohttp.ClientSession(connector=connector) as fresh:
            results = await asyncio.gather(*(post(fresh, url, chat("gpt-4o-mini"), bearer(seeded.key)) for _ in range(requests)))
            assert [r[0] for r in results] == [200] * requests

            async def scraped() -> tuple[float, str]:
                async with fresh.get(url + "/metrics") as r:
                    text = await r.text()
                served = sum(
                    s.value for f in text_string_to_metric_families(text) if f.name == "maas_gateway_requests"
                    for s in f.samples if s.name == "maas_gateway_requests_total" and s.labels["status"] == "200"
                )
                return served, text

            # Whichever worker answers the scrape reports every worker's counts: its own at once,
            # the other's once that one has folded its tally (every metrics.FOLD_SECONDS).
            async def all_counted() -> bool:
                return (await scraped())[0] == requests

            await eventually(all_counted, timeout=2 + 2 * FOLD_SECONDS, interval=0.1)
            for _ in range(4):
                served, text = await scraped()
                assert served == requests
                assert "maas_gateway_request_duration_seconds_bucket" in text
                assert 'maas_gateway_enforcement_mode{mode="enforce"} 1.0' in text
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)
    err = log_path.read_text()
    assert process.returncode in (0, -signal.SIGTERM), err[-2000:]
    lines = [orjson.loads(line) for line in err.splitlines() if line.startswith("{")]
    started = {line["pid"] for line in lines if line["msg"] == "Application startup complete."}
    assert len(started) == 2
    access = [line for line in lines if line["logger"] == "maas_gateway.access"]
    assert len(access) == requests
    assert {line["key_prefix"] for line in access} == {seeded.key[:7]}
    assert seeded.key not in err
