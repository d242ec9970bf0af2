"""gateway/serving/bodylimits.py: a JSON body's values are counted before the parse, which then stays bounded."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc

import orjson
import pytest

from gateway.serving.bodylimits import refuse_dense_json, structural_count
from gateway.errors import InvalidRequestError

pytestmark = pytest.mark.unit

MIB = 1024 * 1024
BODY = 25 * MIB
LIMIT = 500_000  # the default, server.max_json_elements


def _hostile(unit: bytes) -> bytes:
    head, tail = b'{"model":"gpt-4o-mini","x":[', b"0]}"
    return head + unit * ((BODY - len(head) - len(tail)) // len(unit)) + tail


def _at_limit(unit: bytes, per_unit: int) -> bytes:
    """A 25 MiB body holding as many small values as the limit lets through, padded with a string."""
    core = b'{"model":"gpt-4o-mini","x":[' + unit * (LIMIT // per_unit - 2) + b'0],"pad":"'
    return core + b"a" * (BODY - len(core) - 2) + b'"}'


def _peak(work) -> int:
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("unit", [b"{},", b'{"a":1},', b"[],", b"1.5,"], ids=["objects", "tiny-objects", "arrays", "floats"])
def test_a_25_mib_body_of_tiny_values_is_refused_before_the_parse_without_allocating(unit):
    body = _hostile(unit)

    def check():
        with pytest.raises(InvalidRequestError) as caught:
            refuse_dense_json(body, LIMIT)
        assert caught.value.status == 400
        assert caught.value.payload() == {
            "error": {
                "message": "The request could not be understood. (the JSON body holds more than 500000 values "
                "('{', '[' and ',' counted); send fewer per request)",
                "type": "invalid_request_error",
                "param": None,
                "code": "INVALID_REQUEST",
            }
        }

    assert _peak(check) < MIB  # parsed, these take 350-780 MiB (gateway/serving/bodylimits.py)


# A child process reads the body from a file, parses it and prints its peak RSS (VmHWM: this
# process's own, which ru_maxrss is not: it keeps the parent's across fork and exec) less its RSS
# before the parse, in KiB (an over-estimate of the parse's: the peak may be the read's).
# tracemalloc is no measure of the parse: orjson reserves room for as many values as the
# input's length allows and touches little of it.
_PARSE_IN_CHILD = """
import sys, orjson
def kib(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field + ":"))
body = open(sys.argv[1], "rb").read()
before = kib("VmRSS")
value = orjson.loads(body)
print(kib("VmHWM") - before)
"""


@pytest.mark.parametrize(
    ("unit", "per_unit"),
    [(b'{"a":1},', 2), (b'{"a":{"a":{"a":{"a":1}}}},', 5)],
    ids=["tiny-objects", "nested-one-key-objects"],
)
def test_the_densest_body_let_through_parses_within_a_few_times_its_size(unit, per_unit, tmp_path):
    body = _at_limit(unit, per_unit)
    assert len(body) == BODY and structural_count(body) <= LIMIT
    refuse_dense_json(body, LIMIT)  # let through
    (tmp_path / "body.json").write_bytes(body)
    child = subprocess.run([sys.executable, "-c", _PARSE_IN_CHILD, str(tmp_path / "body.json")],
                           capture_output=True, check=True, timeout=120)
    growth = int(child.stdout) * 1024
    assert 0 < growth < 8 * BODY  # measured +107 and +135 MiB (4-5.5x); without the limit, up to +800 MiB


def test_the_limit_is_inclusive_and_short_bodies_are_not_counted():
    refuse_dense_json(b"," * 10, 10)
    with pytest.raises(InvalidRequestError):
        refuse_dense_json(b"," * 11, 10)
    with pytest.raises(InvalidRequestError):
        refuse_dense_json(b"{[," * 4, 11)
    refuse_dense_json(b'{"model":"m","input":["a","b","c"]}', 5)  # 36 bytes > 5 but 5 structural bytes
