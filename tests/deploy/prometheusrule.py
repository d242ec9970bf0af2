"""deploy/kubernetes/base/prometheusrule.yaml is generated from deploy/prometheus/alerts.yaml.

The Prometheus Operator takes rule groups wrapped in a PrometheusRule; the compose demo's
Prometheus takes the plain rule file. One source, alerts.yaml; after editing it run

    .venv/bin/python -m tests.deploy.prometheusrule

and tests/deploy/test_kubernetes.py checks that the two never drift apart.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy/prometheus/alerts.yaml"
PROMETHEUS_RULE = ROOT / "deploy/kubernetes/base/prometheusrule.yaml"

HEADER = """\
# GENERATED from deploy/prometheus/alerts.yaml by `python -m tests.deploy.prometheusrule`:
# edit alerts.yaml, not this file (tests/deploy checks that the rule groups are identical).
# The Prometheus Operator (and OpenShift user-workload monitoring) loads these rules.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: maas-gateway
spec:
"""


def render(alerts_text: str) -> str:
    """The PrometheusRule: alerts.yaml from its `groups:` line on, indented under `spec:`."""
    lines = alerts_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("groups:"))
    body = "".join(f"  {line}\n" if line.strip() else "\n" for line in lines[start:])
    return HEADER + body


def main() -> int:
    PROMETHEUS_RULE.write_text(render(ALERTS.read_text()))
    print(f"wrote {PROMETHEUS_RULE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
