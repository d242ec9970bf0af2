"""Cache invalidation across instances: Postgres NOTIFY and Redis pub/sub.

Both feed KeyStore.invalidate(). Postgres triggers (migrations/001_schema.sql)
announce every write, whoever makes it; our admin flows also publish on Redis so
instances hear it even while their Postgres listener reconnects. A listener that
lost its connection forgets the whole L1 once it is back, since it may have missed
events. Each event is applied twice, the second time half a second later, so a
cache fill that raced with the change cannot leave a stale Redis entry behind.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
import orjson

from gateway.store import db
from gateway.store.keys import REDIS_CHANNEL, KeyStore

log = logging.getLogger("maas_gateway.invalidation")

RECONNECT_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)
SECOND_PASS_SECONDS = 0.5


class Invalidator:
    def __init__(self, store: KeyStore, database_url: str | None, redis: Any | None) -> None:
        self._store = store
        self._database_url = database_url
        self._redis = redis
        self._tasks: list[asyncio.Task] = []
        self._pending: set[asyncio.Future] = set()  # events being applied, and their second passes
        self._timers: set[asyncio.TimerHandle] = set()
        self.postgres_listening = asyncio.Event()
        self.redis_listening = asyncio.Event()

    def start(self) -> None:
        if self._database_url:
            self._tasks.append(asyncio.create_task(self._postgres_loop(), name="invalidation-postgres"))
        if self._redis is not None:
            self._tasks.append(asyncio.create_task(self._redis_loop(), name="invalidation-redis"))

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        for task in [*self._tasks, *self._pending]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._pending, return_exceptions=True)

    async def publish(self, event: dict) -> None:
        """Apply an event here at once and tell the other instances through Redis."""
        await self._apply(event)
        if self._redis is not None:
            try:
                await self._redis.publish(REDIS_CHANNEL, orjson.dumps(event))
            except Exception as exc:  # Redis down: Postgres NOTIFY still reaches everyone
                log.warning("could not publish invalidation on redis: %s", type(exc).__name__)

    async def _apply(self, event: dict) -> None:
        await self._store.invalidate(event)
        timer: asyncio.TimerHandle

        def second_pass() -> None:
            self._timers.discard(timer)
            self._spawn(self._store.invalidate(event))

        timer = asyncio.get_running_loop().call_later(SECOND_PASS_SECONDS, second_pass)
        self._timers.add(timer)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _on_message(self, payload: bytes | str) -> None:
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            log.warning("ignoring malformed invalidation payload")
            return
        if isinstance(event, dict):
            self._spawn(self._apply(event))

    async def _postgres_loop(self) -> None:
        attempt = 0
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._database_url)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _conn: lost.set())
                await conn.add_listener(db.INVALIDATION_CHANNEL, lambda _c, _pid, _ch, payload: self._on_message(payload))
                if attempt:
                    self._store.forget_all()  # events may have been missed while away
                attempt = 0
                self.postgres_listening.set()
                await lost.wait()
                log.warning("postgres invalidation listener lost its connection")
            except (*db.DB_ERRORS, asyncpg.exceptions.ConnectionDoesNotExistError):
                pass
            finally:
                self.postgres_listening.clear()
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            self._store.forget_all()
            await asyncio.sleep(RECONNECT_SECONDS[min(attempt, len(RECONNECT_SECONDS) - 1)])
            attempt += 1

    async def _redis_loop(self) -> None:
        attempt = 0
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(REDIS_CHANNEL)
                if attempt:
                    self._store.forget_all()
                attempt = 0
                self.redis_listening.set()
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._on_message(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # redis-py: ConnectionError, TimeoutError, ...
                log.warning("redis invalidation listener: %s", type(exc).__name__)
            finally:
                self.redis_listening.clear()
                try:
                    await pubsub.aclose()
                except Exception:
                    pass
            await asyncio.sleep(RECONNECT_SECONDS[min(attempt, len(RECONNECT_SECONDS) - 1)])
            attempt += 1
