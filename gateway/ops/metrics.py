"""Prometheus metrics: names, labels and buckets in one place.

The hot path does not touch prometheus_client: it notes increments and observations in
TALLY (plain dicts and lists, no lock), which is folded into the metrics below before
every scrape of this process and every FOLD_SECONDS (gateway/app.py), so that with several
workers each worker's files are at most that far behind. Measured: prometheus_client's
lock-per-value increments cost ~20-40 us per proxied request (docs/performance.md).

Label values are bounded: `route` is a route-table path, `model` is a known model
or "other", `code` an error code from gateway/errors.py. No key material, ever.
With several workers, PROMETHEUS_MULTIPROC_DIR is set by `maas-gateway serve`
and /metrics aggregates every worker (prometheus_client multiprocess mode).
"""

from __future__ import annotations

import os
from bisect import bisect_left
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

OTHER = "other"  # the label value for a model name the gateway does not know

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

REQUESTS = Counter(
    "maas_gateway_requests_total",
    "Proxied requests by route, model, HTTP status and gateway error code ('' when the gateway did not refuse).",
    ["route", "model", "status", "code"],
)
REQUEST_DURATION = Histogram(
    "maas_gateway_request_duration_seconds",
    "Time from request received to response complete, by route.",
    ["route"],
    buckets=_LATENCY_BUCKETS,
)
UPSTREAM_DURATION = Histogram(
    "maas_gateway_upstream_duration_seconds",
    "Time LiteLLM took to answer with response headers, by route.",
    ["route"],
    buckets=_LATENCY_BUCKETS,
)
STREAM_TTFB = Histogram(
    "maas_gateway_stream_time_to_first_byte_seconds",
    "For streamed responses: time from forwarding the request to LiteLLM to passing its first body chunk on.",
    ["route"],
    buckets=_LATENCY_BUCKETS,
)
AUTH_DECISIONS = Counter(
    "maas_gateway_auth_decisions_total",
    "Access decisions by result (allow, deny, shadow_deny, error) and reason (an error code, or 'ok').",
    ["result", "reason"],
)
MODEL_ACCESS_DENIALS = Counter(
    "maas_gateway_model_access_denials_total",
    "Requests refused (or, in shadow mode, that would have been) because the key may not use the model.",
    ["model"],
)
KEY_CACHE_LOOKUPS = Counter(
    "maas_gateway_key_cache_lookups_total",
    "API key lookups by the tier that answered (l1, redis, postgres) and result (hit, negative, stale; "
    "unreadable: a Redis record of another version's shape, read from Postgres instead).",
    ["tier", "result"],
)
KEY_CACHE_ENTRIES = Gauge(
    "maas_gateway_key_cache_entries",
    "API key records held in the in-process cache.",
    multiprocess_mode="livesum",
)
BREAKER_STATE = Gauge(
    "maas_gateway_circuit_breaker_state",
    "Circuit breaker state per upstream target: 0 closed, 1 open, 2 half-open.",
    ["target"],
    multiprocess_mode="max",
)
BREAKER_TRANSITIONS = Counter(
    "maas_gateway_circuit_breaker_transitions_total",
    "Circuit breaker state changes per upstream target.",
    ["target", "from_state", "to_state"],
)
USER_SYNCS = Counter(
    "maas_gateway_litellm_user_sync_total",
    "Attempts to ensure a user exists in LiteLLM, by result (success, failure).",
    ["result"],
)
KEY_CREATIONS = Counter(
    "maas_gateway_api_key_creations_total",
    "API key creations by result (success, failure).",
    ["result"],
)
TOKENS = Counter(
    "maas_gateway_tokens_total",
    "Tokens reported in LiteLLM's `usage`, by model and type (prompt, completion).",
    ["model", "type"],
)
LIMIT_REFUSALS = Counter(
    "maas_gateway_limit_refusals_total",
    "Requests a limit refused (result=refused) or would have refused in shadow mode (result=shadow), "
    "by scope (key, user, subscription) and limit (rpm_limit, tpm_limit, max_parallel_requests, "
    "quota_requests, quota_tokens, max_budget).",
    ["scope", "limit", "result"],
)
LIMITER_FALLBACKS = Counter(
    "maas_gateway_limiter_fallbacks_total",
    "Limit checks counted in-process (limit / limits.expected_instances) because Redis failed.",
)
USAGE_ROWS_DROPPED = Counter(
    "maas_gateway_usage_rows_dropped_total",
    "Usage rows dropped because Postgres could not be written for long (usage.max_pending_rows).",
)
TOP_OFFENDER = Gauge(
    "maas_gateway_top_offender_refusals",
    "The most refusals of any one API key (kind=key: MODEL_ACCESS_DENIED, SUBSCRIPTION_INACTIVE) or client "
    "address (kind=address: unknown or malformed keys) in the current UTC hour, across instances "
    "(GET /admin/v1/offenders names them).",
    ["kind"],
    multiprocess_mode="max",
)
DEPENDENCY_UP = Gauge(
    "maas_gateway_dependency_up",
    "1 when the health probe's last check of a dependency (litellm, postgres, redis) succeeded, else 0.",
    ["dependency"],
    multiprocess_mode="min",
)
DEPENDENCY_LATENCY = Gauge(
    "maas_gateway_dependency_probe_latency_seconds",
    "How long the health probe's last check of a dependency took.",
    ["dependency"],
    multiprocess_mode="max",
)
LAST_USER_SYNC = Gauge(
    "maas_gateway_litellm_last_user_sync_timestamp_seconds",
    "Unix time of the most recent successful user sync with LiteLLM (from the database, any instance).",
    multiprocess_mode="max",
)
CONFIG_RELOADS = Counter(
    "maas_gateway_config_reloads_total",
    "Configuration reloads by result (applied, unchanged, failed).",
    ["result"],
)
ENFORCEMENT_MODE = Gauge(
    "maas_gateway_enforcement_mode",
    "1 for the enforcement mode in effect (enforce, shadow, off), 0 for the others.",
    ["mode"],
    multiprocess_mode="mostrecent",
)


FOLD_SECONDS = 1.0


class Tally:
    """Pending counter increments and histogram observations, keyed by (metric, label values).

    Each key's pending numbers sit in a list that stays (a cell) once made; a fold adds them
    to the metric and zeroes them. inc() and observe() find the cell with one dict lookup;
    a call site with fixed label values holds its counter's cell() and adds to it in place
    (`cell[0] += 1`), which costs no call and no hashing (docs/performance.md, "Fourth round").
    """

    def __init__(self) -> None:
        self._counts: dict[tuple, list] = {}  # [pending amount]
        self._histograms: dict[tuple, list] = {}  # per bucket: the count, then the sum

    def cell(self, metric: Any, labels: tuple[str, ...]) -> list:
        """The pending amount of one counter child, as a one-item list to add to in place."""
        key = (metric, labels)
        cell = self._counts.get(key)
        if cell is None:
            cell = self._counts[key] = [0]
        return cell

    def inc(self, metric: Any, labels: tuple[str, ...], amount: float = 1) -> None:
        try:  # subscripts, not .get(): no method call for the usual case, a key seen before
            self._counts[(metric, labels)][0] += amount
        except KeyError:
            self._counts[(metric, labels)] = [amount]

    def observe(self, metric: Any, labels: tuple[str, ...], value: float) -> None:
        key = (metric, labels)
        try:
            pending = self._histograms[key]
        except KeyError:
            pending = self._histograms[key] = [0] * len(metric._upper_bounds) + [0.0]
        pending[bisect_left(metric._upper_bounds, value)] += 1  # the first bound >= value, as observe() finds
        pending[-1] += value

    def fold(self) -> None:
        """Add everything pending to the Prometheus metrics."""
        for (metric, labels), cell in self._counts.items():
            amount = cell[0]
            if amount:
                cell[0] = 0
                metric.labels(*labels).inc(amount)
        for (metric, labels), pending in self._histograms.items():
            if not any(pending):
                continue
            counts = pending[:]
            pending[:] = [0] * (len(pending) - 1) + [0.0]
            child = metric.labels(*labels)
            # prometheus_client has no public call for "n observations": its own parts, as observe() uses them
            for bucket, count in zip(child._buckets, counts):
                if count:
                    bucket.inc(count)
            child._sum.inc(counts[-1])


TALLY = Tally()


def fold() -> None:
    TALLY.fold()


def render() -> tuple[bytes, str]:
    """The exposition text for /metrics: every worker's numbers in multiprocess mode."""
    fold()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(DEFAULT_REGISTRY), CONTENT_TYPE_LATEST
