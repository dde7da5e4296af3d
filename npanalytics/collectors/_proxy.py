"""What the three kube-proxy rule readers (iptables, nftables, IPVS) share.

- :class:`ProxyRules`, the result of every rule reader: the ``proxy_services`` and
  ``proxy_endpoints`` frames plus the :class:`ParseReport`.
- kube-proxy's chain-name hashes (../shared/KUBE_FACTS.md §1.3 and §2.2), so that a
  reader can recover a Service from a chain name when comments are missing, and
  the lab can render rules with the exact names kube-proxy would use.
- :func:`probability_from_saved`, which maps iptables-save's 11-decimal rendering
  of ``1/k`` back to ``1/k``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib

import pandas as pd

from ._source import ParseReport

__all__ = [
    "ProxyRules",
    "service_port_name",
    "iptables_chain_hash",
    "iptables_endpoint_chain_hash",
    "nftables_chain_name",
    "probability_from_saved",
]


@dataclasses.dataclass
class ProxyRules:
    """The Service ports and endpoints programmed in one kube-proxy rule dump.

    Attributes
    ----------
    services : pandas.DataFrame
        Frame of kind ``proxy_services``.
    endpoints : pandas.DataFrame
        Frame of kind ``proxy_endpoints``.
    report : ParseReport
        Lines read, parsed and skipped.
    """

    services: pd.DataFrame
    endpoints: pd.DataFrame
    report: ParseReport


def service_port_name(namespace: str, service: str, port_name: str) -> str:
    """kube-proxy's ServicePortName string: ``ns/name:port``, or ``ns/name`` for an unnamed port."""
    base = f"{namespace}/{service}"
    return f"{base}:{port_name}" if port_name else base


def _b32_sha256(text: str, length: int) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return base64.b32encode(digest).decode()[:length]


def iptables_chain_hash(service_port: str, protocol: str) -> str:
    """The 16-character suffix of KUBE-SVC/SVL/EXT/FW chains.

    ``base32(sha256(servicePortName + lower(protocol)))[:16]``; for example
    ``iptables_chain_hash("ns1/svc1:p80", "TCP") == "XPGD46QRK7WJZT7O"``.
    """
    return _b32_sha256(service_port + protocol.lower(), 16)


def iptables_endpoint_chain_hash(service_port: str, protocol: str, endpoint: str) -> str:
    """The 16-character suffix of a KUBE-SEP chain; ``endpoint`` is ``"ip:port"`` (``[v6]:port``)."""
    return _b32_sha256(service_port + protocol.lower() + endpoint, 16)


def nftables_chain_name(prefix: str, base: str) -> str:
    """kube-proxy's nftables chain name: ``prefix-HASH8-base``.

    ``base`` is ``ns/svc/proto/portname`` for service chains and
    ``ns/svc/proto/portname__ip/port`` for endpoint chains, for example
    ``nftables_chain_name("service", "ns1/svc1/tcp/p80") == "service-ULMVA6XW-ns1/svc1/tcp/p80"``.
    """
    return f"{prefix}-{_b32_sha256(base, 8)}-{base}"


def probability_from_saved(p: float, *, max_k: int = 100_000) -> float:
    """Map a printed ``--probability`` back to ``1/k`` when it is one.

    kube-proxy writes ``1/k`` with 10 decimals, the kernel stores
    ``round(2**31 * p)`` and iptables-save prints that over ``2**31`` with 11
    decimals (1/3 -> 0.33333333349). Values that are not close to any ``1/k``
    are returned unchanged.
    """
    if not 0.0 < p <= 1.0:
        return p
    k = round(1.0 / p)
    if 1 <= k <= max_k and abs(p - 1.0 / k) <= 1e-9 + 1.0 / 2**31:
        return 1.0 / k
    return p
