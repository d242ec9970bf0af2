"""metrics.Tally: what the hot path notes, folded, reads exactly as prometheus_client's own calls."""

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from gateway.ops.metrics import Tally

pytestmark = pytest.mark.unit

BUCKETS = (0.001, 0.01, 0.1, 1)
# on a bound, between bounds, below the first, above the last, zero
VALUES = [0.001, 0.0005, 0.01, 0.05, 0.1, 0.5, 1, 2, 30, 0.0, 0.001]


def pair() -> tuple[CollectorRegistry, Counter, Histogram]:
    registry = CollectorRegistry()
    counter = Counter("c", "c", ["route", "code"], registry=registry)
    histogram = Histogram("h_seconds", "h", ["route"], buckets=BUCKETS, registry=registry)
    return registry, counter, histogram


def test_folded_counts_and_observations_read_as_direct_calls():
    direct, counter, histogram = pair()
    for value in VALUES:
        histogram.labels("/a").observe(value)
        counter.labels("/a", "").inc()
    counter.labels("/b", "X").inc(7)

    folded, counter2, histogram2 = pair()
    tally = Tally()
    for value in VALUES:
        tally.observe(histogram2, ("/a",), value)
        tally.inc(counter2, ("/a", ""))
    tally.inc(counter2, ("/b", "X"), 7)
    assert b"h_seconds_count" not in generate_latest(folded)  # nothing until the fold
    tally.fold()

    def samples(registry: CollectorRegistry) -> list[str]:
        return [line for line in generate_latest(registry).decode().splitlines() if not line.startswith("#") and "_created" not in line]

    assert samples(folded) == samples(direct)
    assert 'h_seconds_bucket{le="0.001",route="/a"} 4.0' in samples(folded)  # 0.0, 0.0005, 0.001 twice


def test_a_fold_takes_what_is_pending_once():
    registry, counter, _ = pair()
    tally = Tally()
    tally.inc(counter, ("/a", ""), 2)
    tally.fold()
    tally.fold()
    tally.inc(counter, ("/a", ""))
    tally.fold()
    assert registry.get_sample_value("c_total", {"route": "/a", "code": ""}) == 3


def test_a_held_cell_folds_like_inc_and_stays_usable_after_folds():
    registry, counter, _ = pair()
    tally = Tally()
    cell = tally.cell(counter, ("/a", ""))
    assert tally.cell(counter, ("/a", "")) is cell  # one cell per label set
    cell[0] += 1
    tally.inc(counter, ("/a", ""), 2)  # inc() adds to the same cell
    tally.fold()
    assert registry.get_sample_value("c_total", {"route": "/a", "code": ""}) == 3
    tally.fold()  # nothing pending: nothing added, and no child made for a cell never added to
    tally.cell(counter, ("/never", ""))
    cell[0] += 4
    tally.fold()
    assert registry.get_sample_value("c_total", {"route": "/a", "code": ""}) == 7
    assert registry.get_sample_value("c_total", {"route": "/never", "code": ""}) is None
