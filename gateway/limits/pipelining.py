"""Script calls coalesced into pipelines: the limiter's Redis traffic, one write for many requests.

    ScriptPipeline(redis)
    await call(script, keys, args)   one script execution with its own answer; the calls made while
                                     the previous pipeline is out go together in the next one
    send(script, keys, args, failed) the same without waiting for the answer (the charges after an
                                     answer); `failed(exc)` is called if it could not run
    await drain()                    until everything queued has run (at shutdown, before Redis closes)

Each call is its own EVALSHA in the pipeline (not a transaction): Redis runs every script whole and
alone, so each request still gets its own atomic check-and-charge and its own verdict, and its own
round trip on the wire; only the client's cost (the pool, the command machinery) is shared. One
pipeline is out at a time, and Redis runs a pipeline's commands in order, so everything runs in
the order it was called (a slot released before the next admission of the same client is released
when that admission runs). A pipeline that fails (Redis down, a timeout: redis-py's own retries
and socket_timeout apply as to any command) fails every call in it; a script Redis does not hold
(NOSCRIPT: restarted, flushed) is loaded and those calls sent again.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from redis.exceptions import NoScriptError


class _Call:
    __slots__ = ("script", "keys", "args", "future", "failed")

    def __init__(self, script: Any, keys: list[str], args: list[Any], future: asyncio.Future | None,
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

    def call(self, script: Any, keys: list[str], args: list[Any]) -> asyncio.Future:
        """The script's answer (awaitable), or the exception that kept it from running."""
        future = asyncio.get_running_loop().create_future()
        self._enqueue(_Call(script, keys, args, future, None))
        return future

    def send(self, script: Any, keys: list[str], args: list[Any], failed: Callable[[BaseException], None]) -> None:
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
            missing = [call for call, answer in zip(batch, answers) if isinstance(answer, NoScriptError)]
            if missing:  # Redis lost its scripts: load them, run those calls again (still in order)
                for script in {id(call.script): call.script for call in missing}.values():
                    await self._redis.script_load(script.script)
                again = iter(await self._pipeline(missing))
                answers = [next(again) if isinstance(answer, NoScriptError) else answer for answer in answers]
        except Exception as exc:  # redis-py raises many types; each call's owner decides
            for call in batch:
                call.fail(exc)
            return
        except asyncio.CancelledError:  # the loop is closing: nobody waits for these any longer
            for call in batch:
                call.cancel()
            raise
        for call, answer in zip(batch, answers):
            call.answer(answer)

    async def _pipeline(self, batch: list[_Call]) -> list[Any]:
        pipe = self._redis.pipeline(transaction=False)
        for call in batch:
            pipe.execute_command("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)
        return await pipe.execute(raise_on_error=False)
