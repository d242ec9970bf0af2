"""`serve`'s workers freeze their start-up heap (gateway/app.py lifespan): the collector's full
passes then skip the ~78,000 objects start-up made, which live as long as the process (shorter
pauses under many long streams: docs/performance.md, "Collector pauses"). An app embedded in
another process (tests, other servers) leaves that process's collector alone."""

from __future__ import annotations

import asyncio
import gc

import pytest

from gateway.app import create_app
from tests.support import make_config

pytestmark = pytest.mark.integration


async def lifespan_frozen_counts(app) -> tuple[int, int]:
    """(objects frozen while serving, after shutdown), running the app's lifespan as uvicorn does."""
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put))
    assert (await asyncio.wait_for(outbox.get(), 30))["type"] == "lifespan.startup.complete"
    serving = gc.get_freeze_count()
    await inbox.put({"type": "lifespan.shutdown"})
    assert (await asyncio.wait_for(outbox.get(), 30))["type"] == "lifespan.shutdown.complete"
    await task
    return serving, gc.get_freeze_count()


@pytest.mark.parametrize("own_process", [True, False], ids=["serve", "embedded"])
async def test_a_serving_process_freezes_its_start_up_heap_and_an_embedded_app_does_not(
        own_process, postgres_url, redis_url, fake_upstream):
    assert gc.get_freeze_count() == 0
    config = make_config(postgres_url, redis_url, fake_upstream.url, litellm={"sync_users": False})
    serving, after = await lifespan_frozen_counts(create_app(config, own_process=own_process))
    assert (serving > 10_000) if own_process else (serving == 0)
    assert after == 0  # handed back at shutdown


def test_serve_builds_its_workers_apps_as_their_own_process(tmp_path, monkeypatch):
    """`maas-gateway serve`'s uvicorn factory (one call per worker) is what sets own_process."""
    from gateway.cli import app_factory
    from gateway.config import CONFIG_ENV

    config = tmp_path / "config.yaml"
    config.write_text("litellm:\n  sync_users: false\n")
    monkeypatch.setenv(CONFIG_ENV, str(config))
    assert app_factory().own_process is True
