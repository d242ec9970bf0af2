"""`maas-gateway` subcommands mirroring the admin API; they work on Postgres directly
through the same Accounts class (DATABASE_URL, LITELLM_URL, LITELLM_API_KEY, REDIS_URL
from the environment, via load_config).

    users create --email E [--id I] [--username U] [--max-budget B] [--tpm-limit T] [--rpm-limit R]
    users get ID | users activate ID | users deactivate ID
    models add ID | models list
    subscriptions create --user U --model M [--status S] [--generate-api-key] [--api-key-name N]
    subscriptions set-status ID STATUS
    keys create --user U --models a,b [--name N] [--expires-at ISO]
    keys list [--user U] | keys revoke ID
    sync                                   one reconciler pass now (every pending/error user)

On a LiteMaaS database (database.schema litemaas) only get and list run; writes answer
MANAGED_BY_LITEMAAS, as the admin API does.
Human-readable output by default, `--json` for scripts. Errors print the same code and
message the admin API answers, on stderr (as JSON with --json); exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import Any, AsyncIterator, Awaitable, Callable

import asyncpg
import orjson

from gateway.store import litemaas
from gateway.accounts import quotas
from gateway.accounts.service import Accounts
from gateway.config import Config, ConfigError, load_config
from gateway.errors import GatewayError
from gateway.accounts.usage_report import DEFAULT_LIMIT, page_limit
from gateway.accounts.litellm import LiteLLMManagement
from policies.records import SUBSCRIPTION_STATUSES

Action = Callable[[Accounts, argparse.Namespace], Awaitable[Any]]

KEY_COLUMNS = ("id", "user_id", "name", "key_prefix", "models", "status", "expires_at", "created_at")
MODEL_COLUMNS = ("id", "is_active", "created_at")
USAGE_COLUMNS = ("day", "user_id", "key_id", "model_id", "requests", "prompt_tokens", "completion_tokens", "spend")


@contextlib.asynccontextmanager
async def open_accounts(config: Config) -> AsyncIterator[Accounts]:
    """Accounts on its own small pool, with LiteLLM (sync on) and Redis invalidation (REDIS_URL set)."""
    if not config.database.url:
        raise ConfigError("DATABASE_URL is not set: the admin commands work on the database directly")
    async with contextlib.AsyncExitStack() as stack:
        pool = await asyncpg.create_pool(config.database.url, min_size=1, max_size=2)
        stack.push_async_callback(pool.close)
        management = None
        if config.litellm.sync_users:
            management = await stack.enter_async_context(LiteLLMManagement(config))
        invalidator = None
        if config.redis.url:
            import redis.asyncio as aioredis

            from gateway.store.invalidation import Invalidator
            from gateway.store.keys import KeyStore

            redis = aioredis.from_url(config.redis.url, socket_timeout=0.5, socket_connect_timeout=0.5)
            stack.push_async_callback(redis.aclose)
            invalidator = Invalidator(KeyStore(pool, redis, config.cache), None, redis)
        yield Accounts(pool, config, management, invalidator)


# -- output ------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "-"
    return str(value)


def table(rows: list[dict], columns: tuple[str, ...]) -> str:
    cells = [list(columns)] + [[_text(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def record(data: dict, indent: str = "") -> str:
    width = max((len(k) for k in data), default=0)
    lines = []
    for name, value in data.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{name}:")
            lines.append(record(value, indent + "  "))
        else:
            lines.append(f"{indent}{name.ljust(width)}  {_text(value)}")
    return "\n".join(lines)


def show(result: Any, as_json: bool) -> None:
    if as_json:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return
    if isinstance(result, dict) and "next_cursor" in result:  # a page (usage)
        print(table(result["data"], USAGE_COLUMNS) if result["data"] else "(none)")
        if result["next_cursor"]:
            print(f"\nmore: --cursor {result['next_cursor']}")
        return
    if isinstance(result, list):
        columns = KEY_COLUMNS if result and "key_prefix" in result[0] else MODEL_COLUMNS
        print(table(result, columns) if result else "(none)")
        return
    print(record(result))
    created = result.get("key") or (result.get("api_key") or {}).get("key")
    if created:
        print("\nThe key is shown this once; store it now.")


def show_error(error: GatewayError, as_json: bool) -> None:
    if as_json:
        print(orjson.dumps(error.payload()).decode(), file=sys.stderr)
    else:
        print(f"maas-gateway: {error.code}: {error.message}", file=sys.stderr)


# -- actions -----------------------------------------------------------------


def _models(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


def _limit(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """A limit's value on the command line: a number, or `default` (null: limits.defaults in config.yaml)."""
    def parse(text: str) -> Any:
        return None if text == "default" else kind(text)
    parse.__name__ = kind.__name__
    return parse


def _limit_options(parser: argparse.ArgumentParser, names: tuple[str, ...], settable: bool) -> None:
    """--rpm-limit and the like; only the options given reach the call (argparse.SUPPRESS)."""
    for name in names:
        kind = str if name in ("reset_at", "budget_duration") else float if name.endswith(("budget", "per_token")) else int
        parser.add_argument("--" + name.replace("_", "-"), dest=name, default=argparse.SUPPRESS,
                            type=_limit(kind) if settable else kind,
                            help="`default`: back to limits.defaults" if settable else None)


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


async def _users_create(a: Accounts, args: argparse.Namespace) -> Any:
    return await a.create_user(email=args.email, id=args.id, username=args.username,
                               **_given(args, quotas.USER_LIMITS))


async def _subscriptions_create(a: Accounts, args: argparse.Namespace) -> Any:
    return await a.create_subscription(user_id=args.user, model_id=args.model, status=args.status,
                                       generate_api_key=args.generate_api_key, api_key_name=args.api_key_name,
                                       **_given(args, quotas.SUBSCRIPTION_LIMITS))


async def _keys_create(a: Accounts, args: argparse.Namespace) -> Any:
    return await a.create_key(user_id=args.user, models=_models(args.models), name=args.name, expires_at=args.expires_at,
                              **_given(args, quotas.KEY_LIMITS))


async def _usage(a: Accounts, args: argparse.Namespace) -> Any:
    return await a.usage(user_id=args.user, key_id=args.key, model=args.model, from_=args.from_, to=args.to,
                         limit=page_limit(args.limit), cursor=args.cursor)


def _set_limits(method: str, names: tuple[str, ...]) -> Action:
    async def action(a: Accounts, args: argparse.Namespace) -> Any:
        values = _given(args, names)
        if not values:
            raise ConfigError(f"name at least one of: {', '.join('--' + n.replace('_', '-') for n in names)}")
        return await getattr(a, method)(args.id, **values)
    return action


async def _sync(a: Accounts, args: argparse.Namespace) -> Any:
    result = await a.sync_pending()
    if not result["enabled"]:
        raise ConfigError("user sync is off (litellm.sync_users: false / LITELLM_SYNC_USERS=false): nothing to do")
    return result


def _run(action: Action, writes: bool) -> Callable[[argparse.Namespace], int]:
    async def main(args: argparse.Namespace) -> int:
        try:
            config = load_config(args.config)
            if writes and config.database.schema == "litemaas":
                raise litemaas.read_only_error()
            async with open_accounts(config) as accounts:
                show(await action(accounts, args), args.json)
        except GatewayError as exc:
            show_error(exc, args.json)
            return 1
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            print(f"maas-gateway: the database cannot be reached: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        return 0

    return lambda args: asyncio.run(main(args))


def register(commands: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="path to config.yaml (default: embedded defaults)")
    common.add_argument("--json", action="store_true", help="machine-readable output")

    def group(name: str, help: str) -> Any:
        return commands.add_parser(name, help=help).add_subparsers(dest="action", required=True)

    def leaf(parent: Any, name: str, help: str, action: Action, writes: bool = True) -> argparse.ArgumentParser:
        parser = parent.add_parser(name, help=help, parents=[common])
        parser.set_defaults(handler=_run(action, writes))
        return parser

    users = group("users", "manage users (kept in step with LiteLLM)")
    p = leaf(users, "create", "create a user and ensure it in LiteLLM", _users_create)
    p.add_argument("--email", required=True)
    p.add_argument("--id", help="user id (default: a new UUID)")
    p.add_argument("--username")
    _limit_options(p, quotas.USER_LIMITS, settable=False)
    leaf(users, "get", "show a user", lambda a, args: a.get_user(args.id), writes=False).add_argument("id")
    p = leaf(users, "set-limits", "change a user's limits", _set_limits("update_user", quotas.USER_LIMITS))
    p.add_argument("id")
    _limit_options(p, quotas.USER_LIMITS, settable=True)
    leaf(users, "activate", "activate a user", lambda a, args: a.set_user_active(args.id, True)).add_argument("id")
    leaf(users, "deactivate", "deactivate a user (their keys are refused at once)",
         lambda a, args: a.set_user_active(args.id, False)).add_argument("id")

    models = group("models", "manage models")
    p = leaf(models, "add", "add a model (its LiteLLM name)",
             lambda a, args: a.create_model(id=args.id, **_given(args, quotas.MODEL_PRICES)))
    p.add_argument("id")
    _limit_options(p, quotas.MODEL_PRICES, settable=False)
    leaf(models, "list", "list models", lambda a, args: a.list_models(), writes=False)

    subscriptions = group("subscriptions", "manage subscriptions")
    p = leaf(subscriptions, "create", "subscribe a user to a model", _subscriptions_create)
    p.add_argument("--user", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--status", default="active", choices=sorted(SUBSCRIPTION_STATUSES))
    p.add_argument("--generate-api-key", action="store_true", help="also create a key for this model")
    p.add_argument("--api-key-name")
    _limit_options(p, quotas.SUBSCRIPTION_LIMITS, settable=False)
    p = leaf(subscriptions, "set-limits", "change a subscription's quotas",
             _set_limits("update_subscription", quotas.SUBSCRIPTION_LIMITS))
    p.add_argument("id")
    _limit_options(p, quotas.SUBSCRIPTION_LIMITS, settable=True)
    p = leaf(subscriptions, "set-status", "change a subscription's status",
             lambda a, args: a.set_subscription_status(args.id, args.status))
    p.add_argument("id")
    p.add_argument("status", choices=sorted(SUBSCRIPTION_STATUSES))

    keys = group("keys", "manage API keys")
    p = leaf(keys, "create", "create an API key (shown once)", _keys_create)
    p.add_argument("--user", required=True)
    p.add_argument("--models", required=True, help="comma-separated: a,b or openai/*")
    p.add_argument("--name")
    p.add_argument("--expires-at", help="ISO 8601 date-time")
    _limit_options(p, quotas.KEY_LIMITS, settable=False)
    p = leaf(keys, "set-limits", "change a key's rate limits", _set_limits("update_key", quotas.KEY_LIMITS))
    p.add_argument("id")
    _limit_options(p, quotas.KEY_LIMITS, settable=True)
    leaf(keys, "list", "list API keys (never the key itself)",
         lambda a, args: a.list_keys(args.user), writes=False).add_argument("--user")
    leaf(keys, "revoke", "revoke an API key", lambda a, args: a.revoke_key(args.id)).add_argument("id")

    p = leaf(commands, "usage", "requests, tokens and spend per key, user, model and UTC day", _usage, writes=False)
    p.add_argument("--user")
    p.add_argument("--key", help="key id")
    p.add_argument("--model")
    p.add_argument("--from", dest="from_", help="first UTC day, YYYY-MM-DD")
    p.add_argument("--to", help="last UTC day, YYYY-MM-DD")
    p.add_argument("--limit", help=f"rows per page (default {DEFAULT_LIMIT})")
    p.add_argument("--cursor", help="the next page, as the previous one said")

    leaf(commands, "sync", "ensure every pending/error user in LiteLLM now", _sync)
