"""An unexpected exception anywhere answers an OpenAI-shaped 500 with the request id, and is logged under it."""

from __future__ import annotations

import logging

import aiohttp
import pytest

import gateway.app
import gateway.ops.metrics
import gateway.serving.proxy
from tests.support import bearer, make_config, running_gateway, seed_key

pytestmark = pytest.mark.integration


class Boom(RuntimeError):
    pass


def _boom(*args, **kwargs):
    raise Boom("injected failure")


def internal(request_id: str) -> dict:
    return {
        "error": {
            "message": "The gateway failed to answer this request. Please try again; if it persists, "
            f"report the request id. (request id: {request_id})",
            "type": "api_error",
            "param": None,
            "code": "INTERNAL_ERROR",
        }
    }


@pytest.fixture
async def gateway_and_key(pool, redis_url, postgres_url, fake_upstream):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    async with running_gateway(make_config(postgres_url, redis_url, fake_upstream.url)) as gw:
        yield gw, seeded.key


async def _call(method: str, url: str, **kwargs) -> tuple[int, str, dict, str]:
    async with aiohttp.ClientSession() as http, http.request(method, url, **kwargs) as r:
        return r.status, r.headers.get("content-type", ""), await r.json(content_type=None), r.headers["x-request-id"]


def _logged(caplog, request_id: str) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records
        if getattr(r, "fields", {}).get("request_id") == request_id and r.exc_info and isinstance(r.exc_info[1], Boom)
    ]


@pytest.mark.parametrize(
    ("target", "method", "path", "with_key"),
    [
        ((gateway.serving.proxy, "decide"), "POST", "/v1/chat/completions", True),  # the hot path
        ((gateway.serving.proxy, "usable_models"), "GET", "/v1/models", True),  # the models list
        ((gateway.ops.metrics, "render"), "GET", "/metrics", False),  # a Starlette route
        ((gateway.app, "model_id_from_models_path"), "GET", "/nowhere", False),  # the dispatch itself
    ],
)
async def test_an_injected_failure_answers_500_internal_error_with_the_request_id(
    gateway_and_key, monkeypatch, caplog, target, method, path, with_key
):
    gw, key = gateway_and_key
    monkeypatch.setattr(*target, _boom)
    headers = bearer(key) if with_key else {}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    status, content_type, answer, request_id = await _call(method, gw.url + path, json=body, headers=headers)
    assert (status, content_type, answer) == (500, "application/json", internal(request_id))
    assert len(_logged(caplog, request_id)) == 1


async def test_the_clients_request_id_names_the_failure(gateway_and_key, monkeypatch, caplog):
    gw, key = gateway_and_key
    monkeypatch.setattr(gateway.ops.metrics, "render", _boom)
    status, _, answer, request_id = await _call("GET", gw.url + "/metrics", headers={"x-request-id": "trace-42"})
    assert (status, answer, request_id) == (500, internal("trace-42"), "trace-42")
    assert len(_logged(caplog, "trace-42")) == 1
