"""A double of LiteLLM's management API (and a minimal inference answer), for tests.

Runs on the test's event loop (aiohttp on a free loopback port). It follows LiteLLM
1.108's request fields, answers and error bodies (design.md, "LiteLLM facts"):

    GET  /health/liveliness        200 "I'm alive!" (no auth)
    GET  /user/info?user_id=       200 {user_id, user_info, keys, teams}; missing: 404, or
                                   200 with user_info null and teams [] (missing_shape="empty_teams")
    POST /user/new                 200 NewUserResponse; 409 "User with id X already exists"
    POST /key/generate             200 {key, token_id, ...}; the key is stored by its SHA-256;
                                   `key` sets it (must start with sk-), as LiteLLM allows
    POST /key/update               200; 404 "Key not found." (key: raw key or its SHA-256)
    POST /key/delete               200 {deleted_keys}; 404 "No keys found"
    GET  /key/list                 200 {keys, total_count, current_page, total_pages}; key_alias
                                   (exact, or case-insensitive substring with substring_matching),
                                   page/size (size at most 100), return_full_object
    POST /v1/chat/completions      a canned answer, for the master key or a live virtual key

Every route but the health check wants the master key (`Authorization: Bearer` or
`x-litellm-api-key`), else 401 with LiteLLM's auth_error body. Switches, set between
requests: `down` (await set_down(True): refuses connections and drops kept-alive ones),
`slow` (seconds before each management answer), `fail_500`, `missing_shape`
("404" | "empty_teams"), `already_exists` (/user/new says so, and the user then exists),
`lose_answers` (a management call takes effect, then the connection drops before the answer:
LiteLLM stopped mid-call), `stall_after` (seconds a management call waits after taking
effect, before answering).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

MANAGEMENT_PATHS = ("/user/", "/key/")


def litellm_error(status: int, message: str, type_: str = "internal_server_error", param: str = "None") -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": param, "code": str(status)}}
    return web.json_response(body, status=status)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest() if key.startswith("sk-") else key


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any


@dataclass
class FakeLiteLLM:
    master_key: str
    slow: float = 0.0
    fail_500: bool = False
    missing_shape: str = "404"
    already_exists: bool = False
    down: bool = False
    lose_answers: bool = False
    stall_after: float = 0.0
    users: dict[str, dict] = field(default_factory=dict)
    keys: dict[str, dict] = field(default_factory=dict)  # by token: the key's SHA-256 hex
    calls: list[Call] = field(default_factory=list)
    url: str = ""
    _runner: Any = None
    _site: Any = None
    _port: int = 0

    def reset(self) -> None:
        self.slow, self.fail_500, self.missing_shape, self.already_exists = 0.0, False, "404", False
        self.lose_answers, self.stall_after = False, 0.0
        self.users.clear()
        self.keys.clear()
        self.calls.clear()

    def management_calls(self) -> list[tuple[str, str]]:
        return [(c.method, c.path) for c in self.calls if c.path.startswith(MANAGEMENT_PATHS)]

    def calls_for(self, user_id: str) -> list[Call]:
        """The management calls about one user (other tests' users may be synced meanwhile)."""
        return [
            c for c in self.calls
            if c.query.get("user_id") == user_id or (isinstance(c.body, dict) and c.body.get("user_id") == user_id)
        ]

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, handler_cancellation=True,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        await self._listen()
        self.url = f"http://127.0.0.1:{self._port}"
        return self.url

    async def _listen(self) -> None:
        self._site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await self._site.start()
        self._port = self._site._server.sockets[0].getsockname()[1]

    async def set_down(self, down: bool) -> None:
        """Down: the port refuses connections and requests on kept-alive ones are dropped."""
        if down and not self.down:
            await self._site.stop()
        elif not down and self.down:
            await self._listen()
        self.down = down

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- dispatch -----------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.down:
            assert request.transport is not None
            request.transport.close()
            raise ConnectionResetError
        if request.path == "/health/liveliness":
            return web.Response(text="I'm alive!")
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw
        self.calls.append(Call(request.method, request.path, dict(request.query), body))
        if request.path.removeprefix("/v1") == "/chat/completions":
            return self._chat(request, body)
        if not self._is_master(request):
            return litellm_error(
                401,
                "Authentication Error, Invalid proxy server token passed. "
                "Unable to find token in cache or `LiteLLM_VerificationTokenTable`",
                "auth_error",
            )
        if self.slow:
            await asyncio.sleep(self.slow)  # the double's own latency, not test synchronisation
        if self.fail_500:
            return litellm_error(500, "Internal Server Error")
        route = {
            ("GET", "/user/info"): self._user_info,
            ("POST", "/user/new"): self._user_new,
            ("POST", "/key/generate"): self._key_generate,
            ("POST", "/key/update"): self._key_update,
            ("POST", "/key/delete"): self._key_delete,
            ("GET", "/key/list"): self._key_list,
        }.get((request.method, request.path))
        if route is None:
            return web.json_response({"detail": "Not Found"}, status=404)
        response = route(request, body)
        if self.lose_answers:
            assert request.transport is not None
            request.transport.close()
            raise ConnectionResetError
        if self.stall_after:
            await asyncio.sleep(self.stall_after)  # the double's own latency, not test synchronisation
        return response

    def _is_master(self, request: web.Request) -> bool:
        presented = request.headers.get("x-litellm-api-key") or request.headers.get("Authorization", "")
        return presented.removeprefix("Bearer ").strip() == self.master_key

    # -- users --------------------------------------------------------------

    def _user_info(self, request: web.Request, body: Any) -> web.Response:
        user_id = request.query.get("user_id")
        user = self.users.get(user_id or "")
        if user is not None:
            keys = [k for k in self.keys.values() if k["user_id"] == user_id]
            return web.json_response({"user_id": user_id, "user_info": user, "keys": keys, "teams": []})
        if self.missing_shape == "empty_teams":
            return web.json_response({"user_id": user_id, "user_info": None, "keys": [], "teams": []})
        return litellm_error(404, f"User {user_id} not found")

    def _user_new(self, request: web.Request, body: Any) -> web.Response:
        problem = _validate(body, {"user_id": str, "user_email": str, "user_alias": str, "max_budget": (int, float),
                                   "tpm_limit": int, "rpm_limit": int, "auto_create_key": bool})
        if problem is not None:
            return problem
        user_id = body.get("user_id") or secrets.token_hex(8)
        if self.already_exists or user_id in self.users:
            self.users.setdefault(user_id, {"user_id": user_id})
            return litellm_error(409, f"{{'error': 'User with id {user_id} already exists'}}")
        email = body.get("user_email")
        if email and any((u.get("user_email") or "").lower() == email.lower() for u in self.users.values()):
            return litellm_error(409, f"{{'error': 'User with email {email} already exists'}}")
        user = {
            "user_id": user_id, "user_email": email, "user_alias": body.get("user_alias"),
            "max_budget": body.get("max_budget"), "tpm_limit": body.get("tpm_limit"), "rpm_limit": body.get("rpm_limit"),
            "user_role": "internal_user", "teams": [], "spend": 0.0, "models": [],
        }
        self.users[user_id] = user
        answer = {**user, "key": ""}
        if body.get("auto_create_key", True):
            answer["key"] = self._mint({"user_id": user_id, "models": []})["key"]
        return web.json_response(answer)

    # -- keys ---------------------------------------------------------------

    def _mint(self, fields: dict, key: str | None = None) -> dict:
        key = key or "sk-" + secrets.token_urlsafe(16)
        token = _hash(key)
        self.keys[token] = {"token": token, "blocked": None, "key_alias": None, "metadata": {}, **fields}
        return {**self.keys[token], "key": key, "token": key, "token_id": token, "key_name": f"sk-...{key[-4:]}"}

    def _key_generate(self, request: web.Request, body: Any) -> web.Response:
        problem = _validate(body, {"key": str, "user_id": str, "models": list, "max_budget": (int, float), "tpm_limit": int,
                                   "rpm_limit": int, "metadata": dict, "duration": str, "key_alias": str})
        if problem is not None:
            return problem
        key = body.get("key")
        if key is not None and not key.startswith("sk-"):
            return litellm_error(400, "Invalid key format. LiteLLM Virtual Key must start with 'sk-'. Received=" + key[:3],
                                 "bad_request_error", "key")
        if key is not None and _hash(key) in self.keys:
            return litellm_error(400, "Unique constraint violated on token", "bad_request_error")
        alias = body.get("key_alias")
        if alias is not None and any(k.get("key_alias") == alias for k in self.keys.values()):
            return litellm_error(400, f"Key with alias '{alias}' already exists.", "bad_request_error", "key_alias")
        fields = {k: body.get(k) for k in ("user_id", "models", "max_budget", "tpm_limit", "rpm_limit", "duration", "key_alias")}
        return web.json_response(self._mint({**fields, "metadata": body.get("metadata") or {}}, key))

    def _key_list(self, request: web.Request, body: Any) -> web.Response:
        query = request.query
        page, size = int(query.get("page", "1")), int(query.get("size", "10"))
        if page < 1 or not 1 <= size <= 100:
            return web.json_response({"detail": [{"type": "less_than_equal", "loc": ["query", "size"],
                                                  "msg": "Input should be less than or equal to 100"}]}, status=422)
        alias = query.get("key_alias")
        substring = query.get("substring_matching", "false").lower() == "true"
        found = [
            k for k in self.keys.values()
            if alias is None or (alias.lower() in (k.get("key_alias") or "").lower() if substring else k.get("key_alias") == alias)
        ]
        chosen = found[(page - 1) * size:page * size]
        full = query.get("return_full_object", "false").lower() == "true"
        return web.json_response({
            "keys": [dict(k) for k in chosen] if full else [k["token"] for k in chosen],
            "total_count": len(found), "current_page": page, "total_pages": -(-len(found) // size),
        })

    def _key_update(self, request: web.Request, body: Any) -> web.Response:
        problem = _validate(body, {"key": str, "models": list, "blocked": bool, "metadata": dict})
        if problem is not None:
            return problem
        record = self.keys.get(_hash(body.get("key") or ""))
        if record is None:
            return litellm_error(404, "Key not found.", "not_found_error", "key")
        record.update({k: v for k, v in body.items() if k != "key"})
        return web.json_response({"key": body["key"], **{k: v for k, v in body.items() if k != "key"}})

    def _key_delete(self, request: web.Request, body: Any) -> web.Response:
        problem = _validate(body, {"keys": list, "key_aliases": list})
        if problem is not None:
            return problem
        found = [k for k in body.get("keys") or [] if _hash(k) in self.keys]
        if not found:
            return litellm_error(404, "{'error': 'No keys found'}")
        for key in found:
            del self.keys[_hash(key)]
        return web.json_response({"deleted_keys": found})

    # -- inference ----------------------------------------------------------

    def _chat(self, request: web.Request, body: Any) -> web.Response:
        presented = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        model = body.get("model") if isinstance(body, dict) else None
        record = self.keys.get(_hash(presented)) if presented.startswith("sk-") else None
        allowed = presented == self.master_key or (
            record is not None and not record.get("blocked") and (not record.get("models") or model in record["models"])
        )
        if not allowed:
            return litellm_error(401, "Authentication Error, Invalid proxy server token passed.", "auth_error")
        return web.json_response({
            "id": "chatcmpl-double", "object": "chat.completion", "created": 1700000000, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })


def _validate(body: Any, fields: dict[str, Any]) -> web.Response | None:
    """FastAPI's 422 for a wrongly typed field, as LiteLLM answers it."""
    if not isinstance(body, dict):
        return web.json_response({"detail": [{"type": "model_attributes_type", "loc": ["body"],
                                              "msg": "Input should be a valid dictionary", "input": body}]}, status=422)
    for name, expected in fields.items():
        value = body.get(name)
        if value is not None and (not isinstance(value, expected) or isinstance(value, bool) and expected is int):
            return web.json_response({"detail": [{"type": "type_error", "loc": ["body", name],
                                                  "msg": f"invalid type for {name}", "input": value}]}, status=422)
    return None
