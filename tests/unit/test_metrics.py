"""The metrics read at once: a request counted on the hot path is in the next scrape, no fold between."""

import pytest
from prometheus_client import REGISTRY

from gateway.ops import metrics

pytestmark = pytest.mark.unit


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_count_and_an_observation_are_in_the_next_scrape():
    route = {"route": "/v1/test-metrics-at-once"}
    counted = {**route, "model": "other", "status": "200", "code": ""}
    before = sample("maas_gateway_requests_total", counted)
    metrics.REQUESTS.labels(route["route"], "other", "200", "").inc()
    metrics.REQUEST_DURATION.labels(route["route"]).observe(0.003)
    assert sample("maas_gateway_requests_total", counted) == before + 1
    text = metrics.render()[0].decode()
    assert 'maas_gateway_request_duration_seconds_bucket{le="0.005",route="/v1/test-metrics-at-once"} 1.0' in text
    assert 'maas_gateway_request_duration_seconds_bucket{le="0.0025",route="/v1/test-metrics-at-once"} 0.0' in text
