"""Collectors: I/O only. Each reads one source into frames that follow ``npanalytics.schemas``.

``read_<format>(source)`` parses a dump (a path, ``.gz``, a file object, ``str`` or
``bytes``); ``get_<source>(...)`` collects live.
"""

from ._proxy import ProxyRules
from ._source import ParseReport
from .conntrack import get_conntrack, get_conntrack_stats, read_conntrack, read_conntrack_stats
from .iptables import read_iptables_save
from .ipvs import read_ipvsadm
from .nftables import read_nft_ruleset
from .rules import read_proxy_rules

__all__ = [
    "ParseReport",
    "ProxyRules",
    "get_conntrack",
    "get_conntrack_stats",
    "read_conntrack",
    "read_conntrack_stats",
    "read_iptables_save",
    "read_ipvsadm",
    "read_nft_ruleset",
    "read_proxy_rules",
]
