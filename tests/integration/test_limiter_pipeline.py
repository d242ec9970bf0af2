"""The limiter's Redis calls coalesced into pipelines (gateway/limits/pipelining.py), on a real Redis:
each request still gets its own atomic verdict, calls run in the order they were made, settles
queued at shutdown are all written, a pipeline that Redis fails under sends every request of it to
the in-process counters (logged and counted), and a script Redis lost is loaded again."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import pytest
import redis.asyncio as aioredis

from gateway.config import LimitsConfig
from gateway.dev import services as devservices
from gateway.errors import RateLimitedError
from gateway.limits.limiter import Limiter, Meter
from gateway.limits.pipelining import ScriptPipeline
from gateway.ops.metrics import LIMITER_FALLBACKS
from policies.limits import Limits
from policies.records import KeyRecord, Mode
from tests.support import eventually

pytestmark = pytest.mark.integration

MODEL = "gpt-4o-mini"


def record(**limits: int) -> KeyRecord:
    return KeyRecord(key_id=str(uuid.uuid4()), user_id=f"user-{uuid.uuid4().hex[:12]}",
                     limits=Limits(**limits))


def rate_limited(detail: str) -> dict:
    return {"error": {"message": f"Too many requests. Please wait before retrying. ({detail})",
                      "type": "rate_limit_error", "param": None, "code": "RATE_LIMITED"}}


def remaining(meter: Meter, kind: str = "requests") -> str:
    return dict(meter.headers)[f"x-ratelimit-remaining-{kind}".encode()].decode()


@pytest.fixture
async def redis(redis_url):
    client = aioredis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)  # as gateway/app.py
    yield client
    await client.aclose()


@pytest.fixture
def batches(monkeypatch) -> list[int]:
    """The size of each pipeline the limiter sends."""
    sizes: list[int] = []
    send = ScriptPipeline._pipeline

    async def counted(self, batch):
        sizes.append(len(batch))
        return await send(self, batch)

    monkeypatch.setattr(ScriptPipeline, "_pipeline", counted)
    return sizes


async def admit(limiter: Limiter, key: KeyRecord, now: float) -> Meter:
    return await limiter.admit(key, MODEL, limiter.checks(key, MODEL, now), now, Mode.ENFORCE)


async def test_concurrent_admissions_share_pipelines_and_each_gets_its_own_verdict(redis, batches):
    limiter = Limiter(LimitsConfig(), redis, 600.0)
    await admit(limiter, record(rpm_limit=1), time.time())  # the script loaded (this Redis may not hold it yet)
    batches.clear()
    key = record(rpm_limit=50)
    now = time.time()
    answers = await asyncio.gather(*(admit(limiter, key, now) for _ in range(120)), return_exceptions=True)
    admitted = [a for a in answers if isinstance(a, Meter)]
    refused = [a for a in answers if not isinstance(a, Meter)]
    assert all(meter.shared for meter in admitted)  # counted in Redis, not in-process
    # each script ran alone: 50 admitted, each saw its own count (remaining 49 down to 0), 70 refused
    assert sorted(int(remaining(meter)) for meter in admitted) == list(range(50))
    assert len(refused) == 70 and all(isinstance(e, RateLimitedError) for e in refused)
    assert {(e.status, str(e.payload())) for e in refused} == {  # type: ignore[union-attr]
        (429, str(rate_limited("the requests per minute of this API key (50) is reached")))}
    assert batches == [120]  # made in one loop iteration: one pipeline
    counter = f"maas:lim:{{u:{key.user_id}}}:{limiter.checks(key, MODEL, now)[0].counter}"
    assert int(await redis.get(counter)) == 50


async def test_a_slot_released_before_the_next_admission_is_released_when_it_runs(redis):
    limiter = Limiter(LimitsConfig(), redis, 600.0)
    key = record(max_parallel_requests=1)
    for _ in range(20):  # no wait between a release and the next admission: the order of calls is kept
        meter = await admit(limiter, key, time.time())
        assert meter.shared
        limiter.finish(meter)
    await limiter.settle()
    assert await redis.zcard(f"maas:lim:{{u:{key.user_id}}}:key:{key.key_id}:par") == 0


async def test_settles_still_queued_are_all_written_before_settle_returns(redis):
    limiter = Limiter(LimitsConfig(), redis, 600.0)
    key = record(tpm_limit=1_000_000)
    meters = await asyncio.gather(*(admit(limiter, key, time.time()) for _ in range(30)))
    for meter in meters:
        meter.prompt_tokens, meter.completion_tokens = 12, 9
        limiter.finish(meter)  # queued, not sent yet
    await limiter.settle()  # what the app's shutdown awaits before closing Redis
    counters = [name async for name in redis.scan_iter(match=f"maas:lim:{{u:{key.user_id}}}:key:*:tpm:*")]
    assert sum(int(value) for value in await redis.mget(counters)) == 30 * 21  # per minute it ended in


async def test_one_scripts_error_fails_only_its_own_request(redis):
    limiter = Limiter(LimitsConfig(), redis, 600.0)
    broken, fine = record(rpm_limit=10), record(rpm_limit=10)
    now = time.time()
    await redis.lpush(f"maas:lim:{{u:{broken.user_id}}}:{limiter.checks(broken, MODEL, now)[0].counter}", "x")  # WRONGTYPE
    meters = await asyncio.gather(admit(limiter, broken, now), admit(limiter, fine, now))
    assert [meter.shared for meter in meters] == [False, True]  # the one in error counted in-process
    assert [remaining(meter) for meter in meters] == ["9", "9"]


async def test_scripts_redis_lost_are_loaded_again(redis):
    limiter = Limiter(LimitsConfig(), redis, 600.0)
    key = record(rpm_limit=10, tpm_limit=1000)
    now = time.time()
    first = await admit(limiter, key, now)
    await redis.script_flush()  # as a restart of Redis would
    first.prompt_tokens, first.completion_tokens = 12, 9
    limiter.finish(first)
    meters = await asyncio.gather(*(admit(limiter, key, now) for _ in range(3)))
    assert all(meter.shared for meter in [first, *meters]) and limiter._redis_skip_until == 0
    assert sorted(remaining(meter) for meter in meters) == ["6", "7", "8"]
    assert {remaining(meter, "tokens") for meter in meters} == {str(1000 - 21)}  # the settle ran first



async def test_a_pipeline_redis_stops_answering_counts_its_requests_and_those_behind_in_process(workdir, batches,
                                                                                                caplog):
    server = devservices.start_redis(workdir / "redis")
    client = aioredis.from_url(server.url, socket_timeout=0.5, socket_connect_timeout=0.5)  # as gateway/app.py
    direct = aioredis.from_url(server.url)
    try:
        limiter = Limiter(LimitsConfig(), client, 600.0)
        key = record(rpm_limit=5)
        assert (await admit(limiter, key, time.time())).shared  # connected, counted in Redis
        batches.clear()
        await direct.execute_command("CLIENT", "PAUSE", "60000", "WRITE")  # scripts wait: no answer comes
        before = LIMITER_FALLBACKS._value.get()
        now = time.time()
        with caplog.at_level(logging.WARNING, logger="maas_gateway.limiter"):
            first = asyncio.gather(*(admit(limiter, key, now) for _ in range(8)), return_exceptions=True)
            await eventually(lambda: batches == [8], timeout=10)
            behind = asyncio.gather(*(admit(limiter, key, now) for _ in range(4)), return_exceptions=True)
            results = [*await asyncio.wait_for(first, 60), *await asyncio.wait_for(behind, 60)]
        await direct.execute_command("CLIENT", "UNPAUSE")
    finally:
        await client.aclose()
        await direct.aclose()
        server.stop()
    assert batches == [8]  # one pipeline out when Redis stopped answering; the 4 queued behind it never sent
    admitted = [r for r in results if isinstance(r, Meter)]
    refused = [r for r in results if not isinstance(r, Meter)]
    assert len(admitted) == 5 and not any(meter.shared for meter in admitted)  # the in-process counters' limit
    assert [e.payload() for e in refused] == [  # type: ignore[union-attr]
        rate_limited("the requests per minute of this API key (5) is reached")] * 7
    assert LIMITER_FALLBACKS._value.get() - before == 12 and limiter._redis_skip_until > now
    assert [r.getMessage() for r in caplog.records] == [
        "redis unavailable, counting limits in-process (each limit / 1) for 5s: TimeoutError"]
