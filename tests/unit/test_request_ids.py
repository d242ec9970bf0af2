"""proxy.request_ids(): ids for requests that bring none."""

import re

import pytest

from gateway.serving.proxy import _request_id, request_ids

pytestmark = pytest.mark.unit


def test_ids_are_24_hex_digits_and_distinct():
    make = request_ids()
    ids = [make() for _ in range(1000)]
    assert all(re.fullmatch(r"[0-9a-f]{24}", i) for i in ids)
    assert len(set(ids)) == 1000


def test_two_processes_or_apps_do_not_share_a_prefix():
    assert request_ids()()[:16] != request_ids()()[:16]


@pytest.mark.parametrize(
    "sent, kept",
    [
        (b"req-1", True),
        (b"x" * 128, True),
        (b"x" * 129, False),  # too long
        (b"", False),
        (b"caf\xc3\xa9", False),  # not ASCII
        (b"a\tb", False),  # not printable
    ],
)
def test_a_clients_id_is_kept_when_sane(sent, kept):
    scope = {"headers": [(b"x-request-id", sent)]}
    got = _request_id(scope, b"x-request-id", lambda: "generated")
    assert got == (sent.decode() if kept else "generated")
