"""policies/auth_failures.py and policies/forwarded.py: the failed-authentication limiter's pure parts."""

from __future__ import annotations

import pytest

from gateway.store.keys import well_formed
from policies.auth_failures import blocked_until, retry_after, window_index
from policies.forwarded import client_address, parse_networks

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("count", "now", "expected"),
    [(30, 125.0, None), (31, 125.0, 180.0), (31, 120.0, 180.0), (500, 179.9, 180.0), (1, 0.0, None)],
)
def test_an_address_is_refused_until_its_window_ends_once_over_the_limit(count, now, expected):
    assert blocked_until(count, 30, now, 60.0) == expected


def test_windows_are_aligned_on_the_epoch_so_every_instance_names_the_same_one():
    assert [window_index(t, 60.0) for t in (0.0, 59.999, 60.0, 1_700_000_000.0)] == [0, 0, 1, 28_333_333]
    assert window_index(31.0, 30.0) == 1


@pytest.mark.parametrize(("until", "now", "expected"), [(180.0, 125.0, 55), (180.0, 179.2, 1), (180.0, 180.0, 1), (1000.0, 0.0, 60)])
def test_retry_after_is_whole_seconds_between_1_and_60(until, now, expected):
    assert retry_after(until, now) == expected


TRUSTED = parse_networks(["10.0.0.0/8", "fd00::/8", "127.0.0.1"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),  # an untrusted peer is the client, whatever it says
        ("10.1.2.3", ["198.51.100.1"], "198.51.100.1"),
        ("10.1.2.3", ["1.1.1.1, 198.51.100.1, 10.9.9.9"], "198.51.100.1"),  # rightmost untrusted: the client's own words are left of it
        ("10.1.2.3", ["1.1.1.1", "198.51.100.1"], "198.51.100.1"),  # several headers read as one list
        ("127.0.0.1", ["fd00::1, 2001:db8::7"], "2001:db8::7"),
        ("10.1.2.3", ["10.0.0.1, 10.0.0.2"], "10.0.0.1"),  # all trusted: the leftmost
        ("10.1.2.3", [], "10.1.2.3"),
        ("10.1.2.3", ["not-an-ip"], "not-an-ip"),
        ("10.1.2.3", ["x" * 100], "x" * 64),
    ],
)
def test_the_client_address_is_believed_from_trusted_proxies_only(peer, forwarded, expected):
    assert client_address(peer, forwarded, TRUSTED) == expected


def test_without_trusted_proxies_the_peer_is_the_client():
    assert client_address("10.1.2.3", ["198.51.100.1"], ()) == "10.1.2.3"


def test_trusted_proxies_reject_what_is_not_an_address():
    with pytest.raises(ValueError):
        parse_networks(["10.0.0.0/33"])


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("sk-" + "A" * 43, True),  # the gateway's: "sk-" + token_urlsafe(32)
        ("sk-" + "Ab-_" * 5 + "xy", True),  # LiteLLM's generated: "sk-" + token_urlsafe(16)
        ("sk-my.custom/key~1", True),  # LiteLLM's custom keys: only the prefix is required
        ("sk-test-" + "x" * 504, True),
        ("sk-test-" + "x" * 505, False),
        ("Sk-abc", False),
        ("abc", False),
        ("sk-\u00e9t\u00e9", False),
        ("sk-a\x00b", False),
    ],
)
def test_a_key_of_either_mode_is_well_formed_and_garbage_is_not(key, expected):
    assert well_formed(key) is expected
