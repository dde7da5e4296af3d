"""Published kube-proxy numbers to set beside the lab's own measurements.

Only numbers from first-party sources, each row with its source, so a notebook
or report can show "ours vs published" without typing numbers in.

KEP-3866 first-packet round-trip times
--------------------------------------
The nftables-proxy KEP (``kubernetes/enhancements``,
``keps/sig-network/3866-nftables-proxy/iptables-vs-nftables.svg``; the same chart
is in the Kubernetes blog post "NFTables mode for kube-proxy", 2025-02-28,
https://kubernetes.io/blog/2025/02/28/nftables-kube-proxy/) charts the first-packet
round-trip time of iptables and nftables mode at 5,000, 10,000 and 30,000
Services, at the 1st, 50th, 90th and 99th percentile. The chart prints no
values: they were read off the bar heights (about +-5 µs; our field notes, section
2a). Bars drawn at the chart's smallest height are upper bounds ("at most 10 µs"),
flagged by ``upper_bound``.
"""

from __future__ import annotations

import pandas as pd

from ..schemas import frame_from_records, validate_frame

__all__ = ["KEP3866_SOURCE", "kep3866_first_packet"]

KEP3866_SOURCE = (
    "KEP-3866 chart iptables-vs-nftables.svg (kubernetes/enhancements "
    "keps/sig-network/3866-nftables-proxy; Kubernetes blog 2025-02-28), bar heights read off the SVG"
)
"""Where :func:`kep3866_first_packet`'s numbers come from."""

# (proxy mode, quantile) -> first-packet RTT in ms at 5k, 10k, 30k Services; None marks an
# upper bound (a bar at the chart's minimal height, read as <= 0.010 ms).
_SERVICES = (5_000, 10_000, 30_000)
_FLOOR_MS = 0.010
_KEP3866_MS = {
    ("iptables", 0.01): (0.018, None, 0.041),
    ("iptables", 0.50): (0.049, 0.061, 0.274),
    ("iptables", 0.90): (0.120, 0.187, 0.491),
    ("iptables", 0.99): (0.156, 0.262, 0.716),
    ("nftables", 0.01): (None, None, None),
    ("nftables", 0.50): (0.014, 0.014, 0.014),
    ("nftables", 0.90): (0.022, 0.022, 0.022),
    ("nftables", 0.99): (0.037, 0.037, 0.037),
}


def kep3866_first_packet() -> pd.DataFrame:
    """KEP-3866's published first-packet round-trip times, iptables vs nftables.

    Returns
    -------
    pandas.DataFrame
        Kind ``published_latency``: one row per (proxy mode, Service count,
        quantile), ``rtt_seconds`` in seconds, ``upper_bound`` True where the
        chart only says "at most", and the ``source``.
    """
    records = []
    for (mode, quantile), values in _KEP3866_MS.items():
        for services, ms in zip(_SERVICES, values):
            records.append({
                "source": KEP3866_SOURCE, "proxy_mode": mode, "services": services, "quantile": quantile,
                "rtt_seconds": (_FLOOR_MS if ms is None else ms) / 1e3, "upper_bound": ms is None,
            })
    return validate_frame(frame_from_records(records, "published_latency"), "published_latency")
