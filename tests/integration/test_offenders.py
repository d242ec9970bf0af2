"""Misuse monitoring across instances: refusals counted on two gateways are listed together by
GET /admin/v1/offenders (gateway/ops/offenders.py), and the top offender's count is a metric."""

from __future__ import annotations

import uuid

import aiohttp
import pytest
from prometheus_client import REGISTRY

from tests.admin_support import admin_gateway, call
from tests.support import bearer, seed_key

pytestmark = pytest.mark.integration


async def chat(http: aiohttp.ClientSession, url: str, key: str, model: str) -> int:
    async with http.post(url + "/v1/chat/completions", headers=bearer(key),
                         json={"model": model, "messages": [{"role": "user", "content": "hi"}]}) as r:
        await r.read()
        return r.status


async def test_refusals_on_two_instances_are_listed_together(pool, postgres_url, redis_url, fake_upstream, admin):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    async with admin_gateway(postgres_url, redis_url, fake_upstream.url, litellm={"sync_users": False}) as one, \
            admin_gateway(postgres_url, redis_url, fake_upstream.url, litellm={"sync_users": False}) as two:
        async with aiohttp.ClientSession() as http:
            for gw, times in ((one, 3), (two, 2)):
                for _ in range(times):
                    assert await chat(http, gw.url, seeded.key, "gpt-4o") == 403  # not the key's model
            for _ in range(4):
                assert await chat(http, two.url, "sk-unknown-" + uuid.uuid4().hex, "gpt-4o-mini") == 401
        await two.state.offenders.flush()  # else within offenders.FLUSH_SECONDS
        status, page = await call(admin, "GET", one.url + "/admin/v1/offenders?hours=1&limit=100")
        assert status == 200 and page["next_cursor"] is None
        assert {"kind": "key", "id": seeded.key_id, "refused": 5} in page["data"]
        [address] = [e for e in page["data"] if e["kind"] == "address" and e["id"] == "127.0.0.1"]
        assert address["refused"] >= 4  # every test's unknown keys come from 127.0.0.1
        assert page["data"] == sorted(page["data"], key=lambda e: -e["refused"])
        assert REGISTRY.get_sample_value("maas_gateway_top_offender_refusals", {"kind": "key"}) >= 5
        status, body = await call(admin, "GET", one.url + "/admin/v1/offenders?hours=0")
        assert (status, body["error"]["message"]) == (422, "hours: expected an integer from 1 to 48, got '0'.")
