"""Configuration reload without a restart: on SIGHUP, and when the file changes.

    ConfigReloader(state, path).start()
      SIGHUP              reload now (single-process `serve`; with --workers N, uvicorn's
                          supervisor takes SIGHUP and restarts the workers, which reads
                          the file too)
      file poll           every POLL_SECONDS, reload when the file's mtime (or inode:
                          an editor's or a ConfigMap's swap) changed; every worker polls

A reload parses the whole file with load_config (the environment still overrides it).
A file that does not parse keeps the running configuration and logs the error. What
is applied in place, each change logged as one line:

    enforcement.mode                  State.mode, read by every decision
    breaker.*                         Breaker.configure() of every breaker (state kept)
    litellm.timeout_ms                Upstream.set_timeout() and the management client
    logging.level, logging.access_log

Anything else that changed (ports, pool sizes, routes, URLs) needs a restart: it is
logged as such, by key path only (never a value, so no secret reaches the log).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
from pathlib import Path
from typing import Any, Iterator

from gateway.config import Config, ConfigError, load_config
from gateway.runtime.health import litellm_breakers
from gateway.ops.metrics import CONFIG_RELOADS, ENFORCEMENT_MODE
from gateway.state import GatewayState
from policies.records import Mode

log = logging.getLogger("maas_gateway.reload")

POLL_SECONDS = 1.0

# (section, field) applied in place; the rest of the Config is kept as it was loaded at start.
RELOADABLE = {
    ("enforcement", "mode"),
    ("litellm", "timeout_ms"),
    ("logging", "level"),
    ("logging", "access_log"),
    *(("breaker", f.name) for f in dataclasses.fields(Config().breaker)),
}


def set_mode_gauge(mode: Mode) -> None:
    for each in Mode:
        ENFORCEMENT_MODE.labels(mode=each.value).set(1 if each is mode else 0)


def _leaves(config: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            yield from _leaves(value, path + ".")
        else:
            yield path, value


def _show(value: Any) -> Any:
    return value.value if isinstance(value, Mode) else value


class ConfigReloader:
    def __init__(self, state: GatewayState, path: str | os.PathLike, poll_seconds: float | None = None) -> None:
        self.state = state
        self.path = Path(path)
        self.poll_seconds = POLL_SECONDS if poll_seconds is None else poll_seconds
        self._stamp = self._file_stamp()
        self._signal_installed = False
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    @property
    def sighup_enabled(self) -> bool:
        return self._signal_installed

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_ino

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
            self._signal_installed = True
        except (ValueError, RuntimeError, NotImplementedError):  # not the main thread, or no signals here
            log.info("SIGHUP reload unavailable here; the file is still watched")
        self._task = asyncio.create_task(self._poll(), name="config-reload")

    async def stop(self) -> None:
        if self._signal_installed:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._signal_installed = False
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _on_sighup(self) -> None:
        log.info("SIGHUP: reloading %s", self.path)
        asyncio.get_running_loop().create_task(self.reload(), name="config-reload-sighup")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            stamp = self._file_stamp()
            if stamp is not None and stamp != self._stamp:
                await self.reload()

    async def reload(self) -> bool:
        """Read the file and apply what may change in place; False (old config kept) when it is bad."""
        async with self._lock:
            self._stamp = self._file_stamp()
            try:
                new = await asyncio.to_thread(load_config, self.path)
            except ConfigError as exc:
                CONFIG_RELOADS.labels(result="failed").inc()
                log.error("config reload failed, keeping the running configuration: %s", exc,
                          extra={"fields": {"path": str(self.path)}})
                return False
            changed = self.apply(new)
            CONFIG_RELOADS.labels(result="applied" if changed else "unchanged").inc()
            return True

    def apply(self, new: Config) -> list[str]:
        """Apply the reloadable settings of `new`; returns the key paths changed in place."""
        state = self.state
        old = state.config
        old_leaves, new_leaves = dict(_leaves(old)), dict(_leaves(new))
        changed: list[str] = []
        restart: list[str] = []
        for path, value in new_leaves.items():
            before = old_leaves.get(path)
            if before == value:
                continue
            section, _, name = path.partition(".")
            if (section, name) in RELOADABLE:
                changed.append(path)
                log.warning("config reload: %s %s -> %s", path, _show(before), _show(value),
                            extra={"fields": {"setting": path, "old": _show(before), "new": _show(value)}})
            elif path not in ("database.url", "redis.url", "litellm.api_key", "admin.token") or value is not None:
                restart.append(path)
        if restart:
            log.warning("config reload: %s changed; applied only after a restart", ", ".join(restart),
                        extra={"fields": {"needs_restart": restart}})
        if not changed:
            log.info("config reload: nothing to change in place", extra={"fields": {"path": str(self.path)}})
            return changed
        merged = dataclasses.replace(
            old,
            enforcement=new.enforcement,
            breaker=new.breaker,
            litellm=dataclasses.replace(old.litellm, timeout_ms=new.litellm.timeout_ms),
            logging=new.logging,
        )
        state.config = merged
        state.mode = merged.enforcement.mode
        set_mode_gauge(state.mode)
        for breaker in litellm_breakers(state):
            breaker.configure(merged.breaker)
        state.model_breakers.configure(merged.breaker)
        state.upstream.set_timeout(merged.litellm.timeout_ms)
        management = state.account_services.management
        if management is not None:
            management.set_timeout(merged.litellm.timeout_ms)
        if old.logging.level != merged.logging.level:
            logging.getLogger().setLevel(merged.logging.level.upper())
        return changed
