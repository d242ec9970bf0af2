"""The bench's paired rounds with a third row ("gateway, limits on") and its verdict: the
order of the rounds, the ratios each row is judged by. No servers, no wrk."""

from pathlib import Path

import pytest

from tests.perf import bench, report

pytestmark = pytest.mark.unit

RPS = {"ceiling": 1000.0, "gateway": 900.0, bench.LIMITED: 855.0}  # limits on / off = 0.95


class Rounds(bench.Bench):
    """A Bench whose load() answers from RPS (a round's number scaled by `drift`) and notes the order."""

    def __init__(self, drift: list[float], work: Path) -> None:
        super().__init__(bench.Settings(pair_rounds=len(drift)), work)
        self.drift = drift
        self.order: list[str] = []

    def load(self, name, port, targets, body, key=None, **options):  # type: ignore[override]
        row, _, round_ = name.rpartition(" round ")
        self.order.append(row)
        return {"rps": RPS[row.rsplit(" ", 1)[0]] * self.drift[int(round_) - 1]}


def test_three_rows_take_turns_and_each_ratio_pairs_runs_of_the_same_round(tmp_path):
    rounds = Rounds([1.0, 0.5, 2.0], tmp_path)  # the host's speed drifts from round to round
    targets = {"ceiling": (1, [1], None), "gateway": (2, [2], "k"), bench.LIMITED: (2, [2], "limited")}
    rows, ratios = rounds.paired(targets, kinds=("plain",))
    assert rounds.order == [
        "ceiling plain", "gateway plain", f"{bench.LIMITED} plain",
        f"{bench.LIMITED} plain", "gateway plain", "ceiling plain",
        "ceiling plain", "gateway plain", f"{bench.LIMITED} plain",
    ]
    assert ratios["plain"] == {"ratios": [0.9, 0.9, 0.9], "median": 0.9}  # gateway / ceiling, drift cancelled
    assert ratios["third"]["plain"] == {"ratios": [0.95, 0.95, 0.95], "median": 0.95}  # limits on / off
    assert rows[bench.LIMITED]["plain"]["rounds_rps"] == [855.0, 427.5, 1710.0]


def test_two_rows_keep_their_ratio_and_have_no_third(tmp_path):
    rounds = Rounds([1.0, 1.0, 1.0], tmp_path)
    _, ratios = rounds.paired({"ceiling": (1, [1], None), "gateway": (2, [2], "k")}, kinds=("plain",))
    assert ratios["plain"]["median"] == 0.9 and "third" not in ratios


@pytest.mark.parametrize(("limited", "met"), [(0.9, True), (0.89, False)])
def test_limits_on_is_met_at_nine_tenths_of_limits_off(limited, met):
    paired = {"rounds": 3, "third": {kind: {"ratios": [limited] * 3, "median": limited} for kind in ("plain", "stream")}}
    rows = {"gateway": {kind: {"rps": 1000.0} for kind in ("plain", "stream")},
            bench.LIMITED: {kind: {"rps": 1000.0 * limited} for kind in ("plain", "stream")}}
    ratios: dict[str, float] = {}
    targets = report._limits_targets(paired, rows, ratios)
    assert [(t["target"], t["goal"], t["met"]) for t in targets] == [
        ("throughput with limits on vs off, plain", ">= 0.90", met), ("throughput with limits on vs off, stream", ">= 0.90", met)]
    assert targets[0]["measured"] == (f"{limited:.2f}, the median of 3 paired rounds ({limited:.2f}, {limited:.2f}, {limited:.2f}); "
                                      f"median rounds {1000 * limited:,.0f} / 1,000 req/s")
    assert ratios == {"limits_on_vs_off_plain": limited, "limits_on_vs_off_stream": limited}


def test_no_limits_row_no_limits_verdict():
    assert report._limits_targets({"rounds": 3}, {}, {}) == []
