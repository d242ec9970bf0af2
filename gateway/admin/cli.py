"""`maas-gateway` subcommands (click) mirroring the admin API; they work on Postgres directly
through the same Accounts class (DATABASE_URL, LITELLM_URL, LITELLM_API_KEY, REDIS_URL
from the environment, via load_config), and read their options into the admin API's
body models (gateway/admin/schema.py), so a bad value gets the API's answer.

    users create --email E [--id I] [--username U] [--max-budget B] [--tpm-limit T] [--rpm-limit R]
    users get ID | users activate ID | users deactivate ID
    models add ID | models list
    subscriptions create --user U --model M [--status S] [--generate-api-key] [--api-key-name N]
    subscriptions set-status ID STATUS
    keys create --user U --models a,b [--name N] [--expires-at ISO]
    keys list [--user U] | keys revoke ID
    users|keys|subscriptions set-limits ID --rpm-limit N|default ...   (default: back to limits.defaults)
    usage [--user U] [--key K] [--model M] [--from DAY] [--to DAY] [--limit N] [--cursor C]
    sync                                   one reconciler pass now (every pending/error user)

On a LiteMaaS database (database.schema litemaas) only get and list run; writes answer
MANAGED_BY_LITEMAAS, as the admin API does.
Human-readable output by default, `--json` for scripts. Errors print the same code and
message the admin API answers, on stderr (as JSON with --json); exit status 1. A wrong
option is click's usage error, exit status 2, as is a configuration error.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
from typing import Any, AsyncIterator, Awaitable, Callable

import asyncpg
import click
import orjson

from gateway.store import litemaas
from gateway.accounts import quotas
from gateway.accounts.service import Accounts
from gateway.admin import schema
from gateway.config import Config, ConfigError, load_config
from gateway.errors import GatewayError
from gateway.accounts.usage_report import DEFAULT_LIMIT, page_limit
from gateway.accounts.litellm import LiteLLMManagement

Call = Callable[[Accounts], Awaitable[Any]]  # what a command does, its options read and checked

CONFIG_OPTION = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                             help="path to config.yaml (default: embedded defaults)")

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
            from gateway.store import redis_client
            from gateway.store.invalidation import Invalidator
            from gateway.store.keys import KeyStore

            redis = redis_client.connect(config.redis.url)
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


# -- options -----------------------------------------------------------------


class _Default:
    """A limit's value `default` on the command line: null, back to limits.defaults in config.yaml."""


DEFAULT = _Default()


class Limit(click.ParamType):
    """A number, or `default`."""

    def __init__(self, kind: click.ParamType) -> None:
        self.kind = kind
        self.name = f"{kind.name}|default"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return DEFAULT if value == "default" else self.kind.convert(value, param, ctx)


def limit_options(body: type[schema.Body], names: tuple[str, ...]) -> Callable[[Callable], Callable]:
    """--rpm-limit and the like, described as the body model describes them; `default` where a PATCH takes null."""
    settable = issubclass(body, schema.Patch)

    def decorate(function: Callable) -> Callable:
        for name in reversed(names):
            kind = click.STRING if name in ("reset_at", "budget_duration") else click.FLOAT if name.endswith(("budget", "per_token")) else click.INT
            words = (body.model_fields[name].description or "").split(" Null:")[0]
            function = click.option("--" + name.replace("_", "-"), name, type=Limit(kind) if settable else kind,
                                    help=words + (" `default`: back to limits.defaults." if settable else ""))(function)
        return function

    return decorate


def _given(params: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The options given (click passes None for the others); `default` is null."""
    return {n: None if params[n] is DEFAULT else params[n] for n in names if params.get(n) is not None}


def _present(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _models(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


# -- running -------------------------------------------------------------------


def _run(make: Callable[[], Call], writes: bool, config_path: str | None, as_json: bool) -> int:
    try:
        config = load_config(config_path)
        if writes and config.database.schema == "litemaas":
            raise litemaas.read_only_error()
        call = make()  # options into the API's body models: a bad value fails before any connection
        return asyncio.run(_apply(call, config, as_json))
    except GatewayError as exc:
        show_error(exc, as_json)
        return 1


async def _apply(call: Call, config: Config, as_json: bool) -> int:
    try:
        async with open_accounts(config) as accounts:
            show(await call(accounts), as_json)
    except GatewayError as exc:
        show_error(exc, as_json)
        return 1
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(f"maas-gateway: the database cannot be reached: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def leaf(group: click.Group | None, name: str, *, writes: bool = True) -> Callable[[Callable[..., Call]], click.Command]:
    """A subcommand: `make(**options)` reads the options into a Call; --config and --json come with it."""

    def decorate(make: Callable[..., Call]) -> click.Command:
        @functools.wraps(make)  # its options (click keeps them on the function) and its docstring, the help
        def command(config_path: str | None, as_json: bool, **options: Any) -> int:
            return _run(lambda: make(**options), writes, config_path, as_json)

        command = click.option("--json", "as_json", is_flag=True, help="machine-readable output")(command)
        return (group.command if group else click.command)(name)(CONFIG_OPTION(command))

    return decorate


# -- commands --------------------------------------------------------------------

users = click.Group("users", help="Manage users (kept in step with LiteLLM).")
models = click.Group("models", help="Manage models.")
subscriptions = click.Group("subscriptions", help="Manage subscriptions (a user's access to a model).")
keys = click.Group("keys", help="Manage API keys.")
_ID = click.argument("id")
_STATUS = click.Choice(schema.STATUSES)


@leaf(users, "create")
@click.option("--email", required=True, help="email address, unique (case-insensitive)")
@click.option("--id", "user_id", help="user id (default: a new UUID)")
@click.option("--username", help="display name (default: the email)")
@limit_options(schema.UserCreate, quotas.USER_LIMITS)
def users_create(email: str, user_id: str | None, username: str | None, **limits: Any) -> Call:
    """Create a user and ensure it in LiteLLM."""
    body = schema.UserCreate.parse(_present(email=email, id=user_id, username=username, **_given(limits, quotas.USER_LIMITS)))
    return lambda a: a.create_user(**body)


@leaf(users, "get", writes=False)
@_ID
def users_get(id: str) -> Call:
    """Show a user, with its LiteLLM sync status."""
    return lambda a: a.get_user(id)


@leaf(users, "set-limits")
@_ID
@limit_options(schema.UserUpdate, quotas.USER_LIMITS)
def users_set_limits(id: str, **limits: Any) -> Call:
    """Change a user's limits (all its keys together)."""
    body = schema.UserUpdate.parse(_needs_one(limits, quotas.USER_LIMITS))
    return lambda a: a.update_user(id, **body)


@leaf(users, "activate")
@_ID
def users_activate(id: str) -> Call:
    """Activate a user."""
    return lambda a: a.set_user_active(id, True)


@leaf(users, "deactivate")
@_ID
def users_deactivate(id: str) -> Call:
    """Deactivate a user: every key of theirs is refused at once."""
    return lambda a: a.set_user_active(id, False)


@leaf(models, "add")
@_ID
@limit_options(schema.ModelCreate, quotas.MODEL_PRICES)
def models_add(id: str, **prices: Any) -> Call:
    """Add a model (its LiteLLM name, e.g. gpt-4o or openai/gpt-4o)."""
    body = schema.ModelCreate.parse({"id": id, **_given(prices, quotas.MODEL_PRICES)})
    return lambda a: a.create_model(**body)


@leaf(models, "list", writes=False)
def models_list() -> Call:
    """List models."""
    return lambda a: a.list_models()


@leaf(subscriptions, "create")
@click.option("--user", required=True, help="an existing user's id")
@click.option("--model", required=True, help="an existing model's id")
@click.option("--status", type=_STATUS, default="active", show_default=True)
@click.option("--generate-api-key", is_flag=True, help="also create a key for this model")
@click.option("--api-key-name", help="name of the generated key")
@limit_options(schema.SubscriptionCreate, quotas.SUBSCRIPTION_LIMITS)
def subscriptions_create(user: str, model: str, status: str, generate_api_key: bool, api_key_name: str | None,
                         **limits: Any) -> Call:
    """Subscribe a user to a model."""
    body = schema.SubscriptionCreate.parse(_present(
        user_id=user, model_id=model, status=status, generate_api_key=generate_api_key, api_key_name=api_key_name,
        **_given(limits, quotas.SUBSCRIPTION_LIMITS)))
    return lambda a: a.create_subscription(**body)


@leaf(subscriptions, "set-limits")
@_ID
@limit_options(schema.SubscriptionUpdate, quotas.SUBSCRIPTION_LIMITS)
def subscriptions_set_limits(id: str, **limits: Any) -> Call:
    """Change a subscription's quotas."""
    body = schema.SubscriptionUpdate.parse(_needs_one(limits, quotas.SUBSCRIPTION_LIMITS))
    return lambda a: a.update_subscription(id, **body)


@leaf(subscriptions, "set-status")
@_ID
@click.argument("status", type=_STATUS)
def subscriptions_set_status(id: str, status: str) -> Call:
    """Change a subscription's status; anything but active refuses the model at once."""
    return lambda a: a.set_subscription_status(id, status)


@leaf(keys, "create")
@click.option("--user", required=True, help="an existing, active user's id")
@click.option("--models", "names", required=True, help="comma-separated: a,b or openai/*")
@click.option("--name", help="a name for the key")
@click.option("--expires-at", help="ISO 8601 date-time (UTC when no offset is given)")
@limit_options(schema.KeyCreate, quotas.KEY_LIMITS)
def keys_create(user: str, names: str, name: str | None, expires_at: str | None, **limits: Any) -> Call:
    """Create an API key (shown once)."""
    body = schema.KeyCreate.parse(_present(user_id=user, models=_models(names), name=name, expires_at=expires_at,
                                           **_given(limits, quotas.KEY_LIMITS)))
    return lambda a: a.create_key(**body)


@leaf(keys, "set-limits")
@_ID
@limit_options(schema.KeyUpdate, quotas.KEY_LIMITS)
def keys_set_limits(id: str, **limits: Any) -> Call:
    """Change a key's rate limits."""
    body = schema.KeyUpdate.parse(_needs_one(limits, quotas.KEY_LIMITS))
    return lambda a: a.update_key(id, **body)


@leaf(keys, "list", writes=False)
@click.option("--user", help="only this user's keys")
def keys_list(user: str | None) -> Call:
    """List API keys (never the key itself)."""
    return lambda a: a.list_keys(user)


@leaf(keys, "revoke")
@_ID
def keys_revoke(id: str) -> Call:
    """Revoke an API key (refused at once on every instance)."""
    return lambda a: a.revoke_key(id)


@leaf(None, "usage", writes=False)
@click.option("--user", help="user id")
@click.option("--key", help="key id")
@click.option("--model")
@click.option("--from", "from_", help="first UTC day, YYYY-MM-DD")
@click.option("--to", help="last UTC day, YYYY-MM-DD")
@click.option("--limit", help=f"rows per page (default {DEFAULT_LIMIT})")
@click.option("--cursor", help="the next page, as the previous one said")
def usage(user: str | None, key: str | None, model: str | None, from_: str | None, to: str | None, limit: str | None,
          cursor: str | None) -> Call:
    """Requests, tokens and spend per key, user, model and day.

    One row per key, user, model and UTC day, oldest first; a page at a time."""
    rows = page_limit(limit)
    return lambda a: a.usage(user_id=user, key_id=key, model=model, from_=from_, to=to, limit=rows, cursor=cursor)


@leaf(None, "sync")
def sync() -> Call:
    """Ensure every pending/error user in LiteLLM now.

    One reconciler pass: users LiteLLM may lack, due outbox intents, orphans."""
    return _sync


async def _sync(a: Accounts) -> Any:
    result = await a.sync_pending()
    if not result["enabled"]:
        raise ConfigError("user sync is off (litellm.sync_users: false / LITELLM_SYNC_USERS=false): nothing to do")
    return result


def _needs_one(params: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    values = _given(params, names)
    if not values:
        raise click.UsageError(f"name at least one of: {', '.join('--' + n.replace('_', '-') for n in names)}")
    return values


ADMIN_COMMANDS: tuple[click.Command, ...] = (users, models, subscriptions, keys, usage, sync)
