"""deploy/prometheus: the alerting rules, their promtool unit tests, the compose Prometheus config."""

from __future__ import annotations

import re

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from gateway.ops import metrics
from tests.deploy.tools import DEPLOY, check, tool

pytestmark = pytest.mark.unit

PROMETHEUS = DEPLOY / "prometheus"
ALERTS = PROMETHEUS / "alerts.yaml"

SEED_ALERTS = {
    "MaasGatewayApiKeyCreationFailureRateHigh": ("maas_gateway_api_key_creations_total", "0.05"),
    "MaasGatewayLiteLLMUserSyncFailureRateHigh": ("maas_gateway_litellm_user_sync_total", "0.02"),
    "MaasGatewayModelAccessDenialRateHigh": ("maas_gateway_model_access_denials_total", "0.01"),
    "MaasGatewayCircuitBreakerOpen": ("maas_gateway_circuit_breaker_state", "1"),
    "MaasGatewayQuotaExhaustionSustained": ("maas_gateway_limit_refusals_total", "0.01"),
    "MaasGatewayApiKeyMisuse": ("maas_gateway_top_offender_refusals", "100"),
}


def exposed_series() -> set[str]:
    """Every series name gateway/ops/metrics.py can expose."""
    names = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            base = value._name
            kind = value._type
            if kind == "counter":
                names.update({f"{base}_total", f"{base}_created"})
            elif kind == "histogram":
                names.update({f"{base}_bucket", f"{base}_sum", f"{base}_count", f"{base}_created"})
            else:
                names.add(base)
    return names


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def test_promtool_check_rules() -> None:
    out = check([tool("promtool"), "check", "rules", str(ALERTS)])
    assert "SUCCESS: 6 rules found" in out


def test_promtool_test_rules() -> None:
    out = check([tool("promtool"), "test", "rules", "alerts_test.yaml"], cwd=PROMETHEUS)
    assert "SUCCESS" in out


def test_promtool_check_config_of_the_compose_prometheus() -> None:
    check([tool("promtool"), "check", "config", str(PROMETHEUS / "prometheus.yml")])


def test_the_seed_alerts_and_their_thresholds() -> None:
    found = {rule["alert"]: rule for rule in rules()}
    assert set(found) == set(SEED_ALERTS)
    for alert, (metric, threshold) in SEED_ALERTS.items():
        expr = found[alert]["expr"]
        assert metric in expr
        assert re.search(rf"(>|==)\s*{re.escape(threshold)}\s*$", expr.strip()), expr
        assert {"summary", "description", "runbook"} <= set(found[alert]["annotations"])
        assert found[alert]["labels"]["severity"] in ("warning", "critical")
    breaker = found["MaasGatewayCircuitBreakerOpen"]
    assert breaker["for"] == "0m" and breaker["labels"]["severity"] == "critical", "fires at once"


def test_every_metric_an_alert_reads_is_one_the_gateway_exposes() -> None:
    exposed = exposed_series()
    for rule in rules():
        used = set(re.findall(r"\b(maas_gateway_[a-z0-9_]+)", rule["expr"]))
        assert used and used <= exposed, (rule["alert"], used - exposed)


def test_every_alert_has_a_promtool_test_that_fires_it() -> None:
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yaml").read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    quiet = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if not case.get("exp_alerts")
    }
    assert fired == set(SEED_ALERTS) and quiet == set(SEED_ALERTS)
