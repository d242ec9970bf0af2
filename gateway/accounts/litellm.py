"""LiteLLM's management API as the admin flows use it: users and virtual keys.

    user_exists(id)       GET  /user/info?user_id=   404, or 200 with no teams and no
                                                     user_info (older LiteLLM): missing
    create_user(...)      POST /user/new             "already exists" (409, or 400 saying so) is success,
                                                     unless it is another user's email
    generate_key(...)     POST /key/generate         -> the new virtual key (passthrough mode)
    update_key(hash, ..)  POST /key/update           `key` may be the SHA-256 hex: LiteLLM's token id
    delete_keys(hashes)   POST /key/delete           404 "No keys found" is success
    list_key_hashes(pfx)  GET  /key/list             every page; tokens of the keys whose alias starts with pfx

Every call authenticates with the master key (LITELLM_API_KEY) and goes through its
own breaker ("litellm-management"), so a failing management API never opens the
inference path's breaker. Failures become gateway errors here, at the boundary:
unreachable / 5xx -> UpstreamUnavailableError, too slow -> UpstreamTimeoutError, any
other refusal -> AdminError 502 LITELLM_ERROR. Messages name the status, never
LiteLLM's text (its auth errors echo key material) and never a key.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

from gateway.serving.breaker import Breaker, UpstreamFailure
from gateway.config import Config
from gateway.errors import AdminError, UpstreamTimeoutError, UpstreamUnavailableError


class LiteLLMManagement:
    def __init__(self, config: Config, breaker: Breaker | None = None) -> None:
        self._config = config.litellm
        self.breaker = breaker or Breaker("litellm-management", config.breaker)
        self.base_url = self._config.url.rstrip("/")
        self._timeout = self._config.timeout_ms / 1000
        self._headers = {"content-type": "application/json"}
        if self._config.api_key:
            self._headers["authorization"] = f"Bearer {self._config.api_key}"
        self._session: aiohttp.ClientSession | None = None

    def set_timeout(self, timeout_ms: int) -> None:
        """Config reload: the wait for each management call."""
        self._timeout = timeout_ms / 1000

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._config.connect_timeout_ms / 1000),
                cookie_jar=aiohttp.DummyCookieJar(),
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> "LiteLLMManagement":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- users --------------------------------------------------------------

    async def user_exists(self, user_id: str) -> bool:
        status, body = await self._call("GET", "/user/info", params={"user_id": user_id})
        if status == 404:
            return False
        if status != 200:
            raise _refused("GET", "/user/info", status)
        # Older LiteLLM answers 200 for a user it does not have: no teams, no user row.
        return not (isinstance(body, dict) and not body.get("teams") and not body.get("user_info"))

    async def create_user(
        self, *, user_id: str, email: str, alias: str, max_budget: float, tpm_limit: int, rpm_limit: int
    ) -> None:
        payload = {
            "user_id": user_id,
            "user_email": email,
            "user_alias": alias,
            "max_budget": max_budget,
            "tpm_limit": tpm_limit,
            "rpm_limit": rpm_limit,
            "auto_create_key": False,  # LiteLLM would otherwise mint a key nobody holds
        }
        status, body = await self._call("POST", "/user/new", json=payload)
        if status == 200:
            return
        if _already_exists(status, body):
            if "with email" in _error_message(body).lower():  # another LiteLLM user holds this email
                raise AdminError(502, "LITELLM_ERROR", "LiteLLM already has a different user with this email address.")
            return
        raise _refused("POST", "/user/new", status)

    # -- virtual keys (passthrough mode) ------------------------------------

    async def generate_key(self, payload: dict[str, Any]) -> str:
        status, body = await self._call("POST", "/key/generate", json=payload)
        if status != 200:
            raise _refused("POST", "/key/generate", status)
        key = body.get("key") if isinstance(body, dict) else None
        if not isinstance(key, str) or not key:
            raise AdminError(502, "LITELLM_ERROR", "LiteLLM answered /key/generate without a key.")
        return key

    async def update_key(self, key_hash: str, **fields: Any) -> None:
        status, _ = await self._call("POST", "/key/update", json={"key": key_hash, **fields})
        if status != 200:
            raise _refused("POST", "/key/update", status)

    async def delete_keys(self, key_hashes: list[str]) -> None:
        status, _ = await self._call("POST", "/key/delete", json={"keys": key_hashes})
        if status not in (200, 404):  # 404: none of them exists any more, which is what we want
            raise _refused("POST", "/key/delete", status)

    async def list_key_hashes(self, alias_prefix: str) -> list[str]:
        hashes: list[str] = []
        page = 1
        while True:
            params = {"key_alias": alias_prefix, "substring_matching": "true", "return_full_object": "true",
                      "page": str(page), "size": "100"}
            status, body = await self._call("GET", "/key/list", params=params)
            if status != 200 or not isinstance(body, dict):
                raise _refused("GET", "/key/list", status)
            for key in body.get("keys") or []:
                if isinstance(key, dict) and str(key.get("key_alias") or "").startswith(alias_prefix) and key.get("token"):
                    hashes.append(key["token"])
            if page >= int(body.get("total_pages") or 0):
                return hashes
            page += 1

    # -- transport ----------------------------------------------------------

    async def _call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        try:
            return await self.breaker.call(self._send, method, path, kwargs)
        except UpstreamFailure as failure:
            if failure.reason == "timeout":
                raise UpstreamTimeoutError(detail=f"LiteLLM {path} did not answer in time", retry_after=1) from failure
            raise UpstreamUnavailableError(detail=failure.reason, retry_after=1) from failure

    async def _send(self, method: str, path: str, kwargs: dict[str, Any]) -> tuple[int, Any]:
        if self._session is None:
            raise RuntimeError("LiteLLMManagement.start() was not awaited")
        data = orjson.dumps(kwargs["json"]) if "json" in kwargs else None
        try:
            async with asyncio.timeout(self._timeout):
                async with self._session.request(
                    method, self.base_url + path, params=kwargs.get("params"), data=data, headers=self._headers
                ) as response:
                    raw = await response.read()
                    status = response.status
        except TimeoutError as exc:
            raise UpstreamFailure("timeout") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamFailure(f"LiteLLM {path} unreachable") from exc
        if status >= 500:
            raise UpstreamFailure(f"LiteLLM {path} answered {status}")
        try:
            return status, orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            return status, None


def _error_message(body: Any) -> str:
    if isinstance(body, dict):
        error = body.get("error", body.get("detail"))
        if isinstance(error, dict):
            return str(error.get("message", error.get("error", "")))
        return str(error or "")
    return ""


def _already_exists(status: int, body: Any) -> bool:
    return status == 409 or (status == 400 and "already exists" in _error_message(body).lower())


def _refused(method: str, path: str, status: int) -> AdminError:
    return AdminError(502, "LITELLM_ERROR", f"LiteLLM refused {method} {path} with status {status}.")
