"""The client's address: the socket peer, or ``X-Forwarded-For`` when a trusted proxy sent it.

Anyone can send ``X-Forwarded-For``, so it is believed only when the peer is one of the
configured proxies, and then read right to left: each trusted hop appended the address it saw,
so the first untrusted address from the right is the client (the left part is client-written).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from ragtrail._settings import ConfigurationError

__all__ = ["TrustedProxies"]

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The configured proxy addresses and CIDRs; falsy when there are none."""

    __slots__ = ("_networks", "_trusted")

    def __init__(self, entries: Iterable[str]) -> None:
        if isinstance(entries, (str, bytes)):
            raise ConfigurationError(
                f"setting trusted_proxies={entries!r} is not valid; expected a list of "
                "addresses or CIDRs")
        networks: list[_Network] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(str(entry).strip(), strict=False))
            except ValueError:
                raise ConfigurationError(
                    f"setting trusted_proxies has {entry!r}, which is not an IP address or "
                    "CIDR (e.g. 10.0.0.0/8)") from None
        self._networks = tuple(networks)
        # Peers repeat (the same few proxies), so membership is cached, bounded.
        self._trusted = lru_cache(maxsize=1024)(self._contains)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def client_address(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The client's address, canonical; the peer itself unless it is a trusted proxy."""
        if not self._networks or not forwarded_for or peer is None or not self._trusted(peer):
            return peer
        client = peer
        for hop in reversed(forwarded_for.split(",")):
            address = _parse(hop)
            if address is None:
                break  # garbage from the client side: keep the last address a proxy vouched for
            client = str(address)
            if not self._trusted(client):
                break
        return client

    def _contains(self, address: str) -> bool:
        parsed = _parse(address)
        if parsed is None:
            return False
        if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
            parsed = parsed.ipv4_mapped
        return any(parsed in network for network in self._networks)


def _parse(text: str) -> _Address | None:
    """An address from a forwarded hop: ``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``::1``."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
