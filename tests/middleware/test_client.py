"""The client address: X-Forwarded-For believed only from trusted proxies (_client)."""

from __future__ import annotations

import pytest

from ragtrail import ConfigurationError
from ragtrail.middleware._client import TrustedProxies


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    """Anyone can send X-Forwarded-For: with no proxies configured it is ignored."""
    proxies = TrustedProxies(())
    assert not proxies
    assert proxies.client_address("198.51.100.7", "203.0.113.9") == "198.51.100.7"


def test_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    """A client talking to the app directly cannot choose its address."""
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client_address("198.51.100.7", "203.0.113.9") == "198.51.100.7"


def test_the_first_untrusted_hop_from_the_right_is_the_client() -> None:
    """Hops appended by trusted proxies are skipped; what the client wrote on the left is not
    believed."""
    proxies = TrustedProxies(["10.0.0.0/8", "192.0.2.1"])
    header = "1.2.3.4, 203.0.113.9, 10.1.2.3"  # "1.2.3.4" is the client's own claim
    assert proxies.client_address("192.0.2.1", header) == "203.0.113.9"


def test_all_hops_trusted_gives_the_leftmost() -> None:
    """When every hop is a proxy, the request started at the first one."""
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client_address("10.0.0.1", "10.9.9.9, 10.0.0.2") == "10.9.9.9"


def test_garbage_stops_the_walk_at_the_last_vouched_address() -> None:
    """An unparseable hop (client-written) is never returned as an address."""
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client_address("10.0.0.1", "<script>, 10.0.0.2") == "10.0.0.2"
    assert proxies.client_address("10.0.0.1", "evil\r\nx") == "10.0.0.1"


@pytest.mark.parametrize(("header", "expected"), [
    ("203.0.113.9:51234", "203.0.113.9"),
    ("[2001:db8::1]:443", "2001:db8::1"),
    ("2001:db8::1", "2001:db8::1"),
    (" 2001:DB8:0::1 ", "2001:db8::1"),
])
def test_ports_brackets_and_spelling_are_normalised(header: str, expected: str) -> None:
    """Addresses come back canonical, without port or brackets."""
    proxies = TrustedProxies(["127.0.0.1"])
    assert proxies.client_address("127.0.0.1", header) == expected


def test_ipv4_mapped_peers_match_ipv4_networks() -> None:
    """A dual-stack server reports ``::ffff:10.0.0.1``; it is still the 10/8 proxy."""
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client_address("::ffff:10.0.0.1", "203.0.113.9") == "203.0.113.9"


def test_missing_peer_or_header_is_not_an_error() -> None:
    """Unix sockets and in-process calls have no peer; requests often have no header."""
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client_address(None, "203.0.113.9") is None
    assert proxies.client_address("10.0.0.1", None) == "10.0.0.1"
    assert proxies.client_address("not-an-ip", "203.0.113.9") == "not-an-ip"


@pytest.mark.parametrize("entries", [["10.0.0.0/33"], ["proxy.internal"], "10.0.0.0/8"])
def test_bad_entries_fail_at_start_up_naming_the_setting(entries: object) -> None:
    """A typo in trusted_proxies is a ConfigurationError, not silently ignored."""
    with pytest.raises(ConfigurationError, match="trusted_proxies"):
        TrustedProxies(entries)  # type: ignore[arg-type]
