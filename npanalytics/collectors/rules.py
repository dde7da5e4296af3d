"""One entry point for kube-proxy rule dumps of any mode: :func:`read_proxy_rules`."""

from __future__ import annotations

import io

from ._proxy import ProxyRules
from ._source import Source, read_source_bytes

__all__ = ["read_proxy_rules", "detect_rules_format", "RULES_FORMATS"]

RULES_FORMATS = ("iptables", "nftables", "ipvs")


def detect_rules_format(data: bytes, name: str = "<bytes>") -> str:
    """Tell an iptables, nftables or ipvsadm dump apart by its first meaningful line.

    Raises
    ------
    ValueError
        When no line looks like any of the three.
    """
    for raw in data.splitlines()[:200]:
        line = raw.decode("utf-8", "replace").strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("*", ":", "-A ", "-N ", "-P ", "[")) and not line.startswith("->"):
            return "iptables"
        if line.startswith(("table ", "add ", "flush ", "delete ")):
            return "nftables"
        if line.startswith(("IP Virtual Server", "Prot LocalAddress", "TCP ", "UDP ", "SCTP ")):
            return "ipvs"
        break
    raise ValueError(
        f"{name}: cannot tell the rule format; expected iptables-save, nft list ruleset "
        "or ipvsadm -Ln output (pass format= to choose)"
    )


def read_proxy_rules(source: Source, *, format: str = "auto", on_bad_line: str = "raise") -> ProxyRules:
    """Read a kube-proxy rule dump of any mode into ``proxy_services`` and ``proxy_endpoints``.

    Parameters
    ----------
    source : path, file object, str or bytes
        An ``iptables-save`` dump, an ``nft list ruleset`` dump or ``ipvsadm -Ln`` output.
    format : {"auto", "iptables", "nftables", "ipvs"}
        The dump's format; ``"auto"`` looks at its first lines.
    on_bad_line : {"raise", "warn", "skip"}
        Passed to the reader.

    Returns
    -------
    ProxyRules
    """
    if format not in ("auto", *RULES_FORMATS):
        raise ValueError(f"format must be 'auto' or one of {RULES_FORMATS}, got {format!r}")
    name, data = read_source_bytes(source)
    if format == "auto":
        format = detect_rules_format(data, name)
    if format == "iptables":
        from .iptables import read_iptables_save as reader
    elif format == "nftables":
        from .nftables import read_nft_ruleset as reader
    else:
        from .ipvs import read_ipvsadm as reader
    if hasattr(source, "read"):  # a stream can be read once: hand over what was read, named
        source = io.BytesIO(data)
        source.name = name
    return reader(source, on_bad_line=on_bad_line)
