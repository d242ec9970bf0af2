"""deploy/grafana/dashboards/: the seed's three dashboards, each query valid PromQL (promtool)
over metric names a running gateway exports (histograms through _bucket/_sum/_count)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.deploy.tools import check, tool
from tests.support import bearer, make_config, running_gateway, seed_key

pytestmark = pytest.mark.integration

DASHBOARDS = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"
TITLES = {
    "authentication.json": "maas-gateway: user authentication flow",
    "litellm-integration.json": "maas-gateway: LiteLLM integration health",
    "api-key-usage.json": "maas-gateway: API key usage by model",
}
METRIC = re.compile(r"\bmaas_gateway_[a-z0-9_]+\b")
# Grafana's variables, as Prometheus would see them once Grafana has filled them in.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "6h", "$model": ".*", "$route": ".*"}


def load() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict) -> list[dict]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # a collapsed row holds its panels
    return [p for p in found if p["type"] != "row"]


def expressions(dashboard: dict) -> list[str]:
    return [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]


def variable_queries(dashboard: dict) -> list[str]:
    return [v["definition"] for v in dashboard.get("templating", {}).get("list", []) if v.get("type") == "query"]


def test_the_three_dashboards_are_there_and_well_formed() -> None:
    dashboards = load()
    assert {name: d["title"] for name, d in dashboards.items()} == TITLES
    assert len({d["uid"] for d in dashboards.values()}) == 3
    for name, dashboard in dashboards.items():
        assert dashboard.get("id") is None and dashboard["schemaVersion"] >= 36, name
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in panels(dashboard):
            where = f"{name}: {panel['title']}"
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, where
            assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, where
            assert panel["targets"] and all(METRIC.search(t["expr"]) for t in panel["targets"]), where
            assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), where


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    rules = []
    for name, dashboard in load().items():
        for i, expr in enumerate(expressions(dashboard)):
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"{name}: an unknown Grafana variable in {expr}"
            rules.append({"record": f"dashboard:{Path(name).stem.replace('-', '_')}:{i}", "expr": expr})
    path = tmp_path / "dashboards.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    check([tool("promtool"), "check", "rules", str(path)])


async def test_every_metric_the_dashboards_use_is_exported(pool, postgres_url, redis_url, fake_upstream):
    used = {
        metric
        for dashboard in load().values()
        for query in expressions(dashboard) + variable_queries(dashboard)
        for metric in METRIC.findall(query)
    }
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    limited = await seed_key(pool, models=["gpt-4o-mini"])
    await pool.execute("UPDATE api_keys SET rpm_limit = 0 WHERE id = $1", limited.key_id)
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    async with running_gateway(make_config(postgres_url, redis_url, fake_upstream.url)) as gw, aiohttp.ClientSession() as http:
        for body, headers in (
            (chat, bearer(seeded.key)),
            ({**chat, "stream": True}, bearer(seeded.key)),
            ({**chat, "model": "gpt-4o"}, bearer(seeded.key)),
            (chat, bearer("sk-nobody-0000000000")),
            (chat, bearer(limited.key)),  # refused by its limit
        ):
            async with http.post(gw.url + "/v1/chat/completions", json=body, headers=headers) as r:
                await r.read()
        async with http.get(gw.url + "/metrics") as r:
            text = await r.text()
    exported: set[str] = set()
    histograms: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            if kind == "histogram":
                histograms.add(name)
                exported |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            else:
                exported.add(name)
        elif line and not line.startswith("#"):
            exported.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    assert used, "the dashboards use no metric"
    assert used - exported == set(), f"the dashboards query metrics the gateway does not export: {sorted(used - exported)}"
    assert used & histograms == set(), "a histogram is queried by its bare name: use _bucket, _sum or _count"
    # the series the hot path feeds have samples after that traffic, not only a TYPE line
    for name in ("maas_gateway_requests_total", "maas_gateway_auth_decisions_total", "maas_gateway_tokens_total",
                 "maas_gateway_model_access_denials_total", "maas_gateway_upstream_duration_seconds_bucket",
                 "maas_gateway_stream_time_to_first_byte_seconds_bucket", "maas_gateway_circuit_breaker_state",
                 "maas_gateway_dependency_up", "maas_gateway_limit_refusals_total",
                 "maas_gateway_top_offender_refusals"):
        assert re.search(rf"^{name}{{", text, re.MULTILINE), name
