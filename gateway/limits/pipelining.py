"""Script calls coalesced into pipelines: the limiter's Redis traffic, one write for many requests.

    ScriptPipeline(redis)
    await call(script, keys, args)   one script execution with its own answer; the calls made while
                                     the previous pipeline is out go together in the next one
    send(script, keys, args, failed) the same without waiting for the answer (the charges after an
                                     answer); `failed(exc)` is called if it could not run
    await drain()                    until everything queued has run (at shutdown, before Redis closes)

Each call is its own script command in the pipeline (not a transaction): Redis runs every script
whole and alone, so each request still gets its own atomic check-and-charge and its own verdict, and
its own round trip on the wire; only the client's cost (the pool, the command machinery) is shared.
One pipeline is out at a time, and Redis runs a pipeline's commands in order, so everything runs in
the order it was called (a slot released before the next admission of the same client is released
when that admission runs). A pipeline's first call of each script is an EVAL (the script's text,
which Redis caches), the others EVALSHA: a Redis that lost its scripts (restarted, flushed) never
answers NOSCRIPT, which a second pipeline would have to repair out of order. A pipeline that fails
(Redis down, a timeout: redis-py's own retries and socket_timeout apply as to any command) fails
every call in it, and those queued behind it (they would wait on the same Redis); a script's error
reply fails only its call.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, Callable

from redis.exceptions import ResponseError, TimeoutError as RedisTimeoutError


class _Call:
    __slots__ = ("script", "keys", "args", "future", "failed")

    def __init__(self, script: Any, keys: list[str], args: list[str], future: asyncio.Future | None,
                 failed: Callable[[BaseException], None] | None) -> None:
        self.script, self.keys, self.args, self.future, self.failed = script, keys, args, future, failed

    def answer(self, value: Any) -> None:
        if isinstance(value, BaseException):
            self.fail(value)
        elif self.future is not None and not self.future.done():
            self.future.set_result(value)

    def cancel(self) -> None:
        if self.future is not None:
            self.future.cancel()

    def fail(self, exc: BaseException) -> None:
        if self.future is not None:
            if not self.future.done():
                self.future.set_exception(exc)
        elif self.failed is not None:
            self.failed(exc)


class ScriptPipeline:
    """Script calls (redis-py Script objects: their `sha` and `script`) sent in pipelines, one at a time."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis
        self._queue: list[_Call] = []
        self._sender: asyncio.Task | None = None

    def call(self, script: Any, keys: list[str], args: list[str]) -> asyncio.Future:
        """The script's answer (awaitable), or the exception that kept it from running."""
        future = asyncio.get_running_loop().create_future()
        self._enqueue(_Call(script, keys, args, future, None))
        return future

    def send(self, script: Any, keys: list[str], args: list[str], failed: Callable[[BaseException], None]) -> None:
        self._enqueue(_Call(script, keys, args, None, failed))

    async def drain(self) -> None:
        while self._sender is not None:
            await asyncio.shield(self._sender)

    def _enqueue(self, call: _Call) -> None:
        self._queue.append(call)
        if self._sender is None:  # starts in the next loop iteration: this one's calls go together
            self._sender = asyncio.get_running_loop().create_task(self._run(), name="limiter-pipeline")

    async def _run(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                await self._execute(batch)
        finally:
            self._sender = None

    async def _execute(self, batch: list[_Call]) -> None:
        try:
            answers = await self._pipeline(batch)
        except Exception as exc:  # redis-py raises many types; each call's owner decides
            behind, self._queue = self._queue, []  # queued meanwhile: not sent to the Redis that just failed
            for call in (*batch, *behind):
                call.fail(exc)
            return
        except asyncio.CancelledError:  # the loop is closing: nobody waits for these any longer
            for call in batch:
                call.cancel()
            raise
        for call, answer in zip(batch, answers):
            call.answer(answer)

    async def _pipeline(self, batch: list[_Call]) -> list[Any]:
        """One write of the batch's script calls on a pooled connection, then each answer (an error reply as
        its exception); redis-py's retry policy as its own pipelines apply it."""
        pool = self._redis.connection_pool
        conn = await pool.get_connection()
        try:
            return await conn.retry.call_with_retry(lambda: self._roundtrip(conn, batch),
                                                    lambda error: conn.disconnect())
        finally:
            await pool.release(conn)

    @staticmethod
    async def _roundtrip(conn: Any, batch: list[_Call]) -> list[Any]:
        sent: set[str] = set()
        commands = []
        for call in batch:
            if call.script.sha in sent:
                commands.append(_script_command("EVALSHA", call.script.sha, call.keys, call.args))
            else:  # the first of this script in the pipeline: its text, for a Redis that lost it
                sent.add(call.script.sha)
                commands.append(_script_command("EVAL", call.script.script, call.keys, call.args))
        await conn.send_packed_command(b"".join(commands), check_health=False)
        answers: list[Any] = []
        try:
            async with asyncio.timeout(conn.socket_timeout):  # socket_timeout for the batch, not per answer
                for _ in batch:
                    try:
                        answers.append(await conn.read_response(timeout=math.inf))
                    except ResponseError as exc:  # this script's error: the others' answers follow
                        answers.append(exc)
        except TimeoutError:  # as redis-py's own reads: its retry policy and our callers know this one
            raise RedisTimeoutError("Timeout reading from Redis") from None
        return answers


def _script_command(name: str, script: str, keys: list[str], args: list[str]) -> bytes:
    """EVAL script (or EVALSHA sha) numkeys keys... args... as RESP: an array of bulk strings,
    `*<count>\\r\\n` then `$<bytes>\\r\\n<bytes>\\r\\n` each."""
    parts = [name, script, str(len(keys)), *keys, *args]
    text = "".join([f"${len(part)}\r\n{part}\r\n" for part in parts])
    if text.isascii():  # lengths in characters are lengths in bytes
        return f"*{len(parts)}\r\n{text}".encode()
    encoded = [part.encode() for part in parts]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in encoded)
