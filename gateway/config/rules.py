"""What the types cannot say: rules that relate two keys, and values with a grammar.

check(config) raises ConfigError naming the key, after every section has been validated.
A bound on one number is not here: it is on the key's type (sections.py), and in the schema.
"""

from __future__ import annotations

import re

from gateway.config.messages import ConfigError, describe
from gateway.config.sections import Config
from policies.forwarded import parse_networks

# Response headers an operator may not pass from LiteLLM: its rate-limit headers describe its own
# limits (in service_key mode, the one shared key's), never the user's; `date` and `server` are
# the gateway's; hop-by-hop headers describe one connection.
_GATEWAY_HEADERS = frozenset({"date", "server", "connection", "keep-alive", "proxy-authenticate", "proxy-connection",
                              "te", "trailer", "transfer-encoding", "upgrade", "set-cookie"})


def check(config: Config) -> None:
    if not config.litellm.url.startswith(("http://", "https://")):
        raise ConfigError(f"litellm.url: expected an http(s) URL, got {describe(config.litellm.url)}")
    if not config.server.drain_delay_seconds <= config.server.drain_seconds:
        raise ConfigError("server.drain_delay_seconds: must be within [0, server.drain_seconds]")
    if config.database.schema == "litemaas" and config.litellm.sync_users:
        raise ConfigError("litellm.sync_users: LiteMaaS syncs its own users to LiteLLM; with database.schema "
                          "litemaas it must be false (its default there)")
    if config.database.pool_max < max(config.database.pool_min, 1):
        raise ConfigError("database.pool_max: must be at least database.pool_min and at least 1")
    for i, name in enumerate(config.response_headers.allow):
        problem = _header_problem(name)
        if name.lower() == config.server.request_id_header.lower():
            problem = "the request id header is the gateway's own (server.request_id_header)"
        if problem:
            raise ConfigError(f"response_headers.allow[{i}]: {problem}, got {describe(name)}")
    name = config.litellm.key_header_name
    if name is not None and not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name):
        raise ConfigError(f"litellm.key_header_name: expected a header name, got {describe(name)}")
    for i, route in enumerate(config.routes):
        if not route.path.startswith("/") or "//" in route.path or "/." in route.path:
            raise ConfigError(f"routes[{i}].path: expected an absolute path without '//' or dot segments")
    server = config.server
    for i, cidr in enumerate(server.trusted_proxies):
        try:
            parse_networks([cidr])
        except ValueError:
            raise ConfigError(f"server.trusted_proxies[{i}]: expected an address or CIDR, got {describe(cidr)}") from None
    if server.admin_port is not None and server.admin_port in (0, server.port):
        raise ConfigError("server.admin_port: must differ from server.port (and not be 0)")


def _header_problem(name: str) -> str | None:
    lowered = name.lower()
    if not name or not all(33 <= ord(c) < 127 and c not in '()<>@,;:\\"/[]?={}' for c in name):
        return "expected a header name"
    if "ratelimit" in lowered:
        return "LiteLLM's rate-limit headers never reach clients (the gateway writes x-ratelimit-* itself)"
    if lowered in _GATEWAY_HEADERS:
        return "this header is the gateway's own or hop-by-hop, never passed from LiteLLM"
    return None
