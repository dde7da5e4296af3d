"""PromQL's arithmetic where npanalytics needs it outside Prometheus (pure).

The kube-proxy catalog computes quantiles of scraped histograms with it, and the
overhead analysis of histogram frames; both give what Prometheus would answer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["histogram_quantile"]


def histogram_quantile(buckets: Iterable[tuple[float, float]], q: float) -> float:
    """The ``q`` quantile of a classic histogram, interpolated as Prometheus does.

    Parameters
    ----------
    buckets : iterable of (upper_bound, cumulative_count)
        The ``le`` bounds (floats, ``inf`` for ``+Inf``) and their cumulative
        counts (or rates, or increases), in any order.
    q : float
        Quantile, 0..1.

    Returns
    -------
    float
        As PromQL's ``histogram_quantile``: NaN without a ``+Inf`` bucket, with
        fewer than two buckets or no observations; ``-inf``/``+inf`` for q < 0 /
        q > 1; the upper bound of the last finite bucket when the rank falls in
        the ``+Inf`` bucket; the first bound when it is <= 0 and the rank falls
        in it; otherwise linear interpolation inside the bucket (from 0 for the
        first bucket). Equal bounds are merged and decreasing counts made
        monotonic first, as Prometheus does.
    """
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    merged: dict[float, float] = {}
    for bound, count in buckets:
        merged[float(bound)] = merged.get(float(bound), 0.0) + float(count)
    pairs = sorted(merged.items())
    if len(pairs) < 2 or not math.isinf(pairs[-1][0]) or pairs[-1][0] < 0:
        return math.nan
    bounds = [b for b, _ in pairs]
    counts, highest = [], -math.inf
    for _, count in pairs:  # ensureMonotonic
        highest = max(highest, count)
        counts.append(highest)
    observations = counts[-1]
    if observations == 0 or math.isnan(observations):
        return math.nan
    rank = q * observations
    b = next(i for i, c in enumerate(counts) if c >= rank)  # sort.Search: first count >= rank
    if b == len(counts) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start, end, count = 0.0, bounds[b], counts[b]
    if b > 0:
        start = bounds[b - 1]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    if count == 0:  # only when rank is 0 too: Go's 0/0 is NaN
        return math.nan
    return start + (end - start) * (rank / count)
