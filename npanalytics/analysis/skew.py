"""How uneven the load over a Service port's backends is, and whether the model explains it.

Pure functions. The statistics are computed for many groups at once (a group is one
Service port, window, source and grouping): the rows of a group share a code, and every
statistic is a ``bincount`` or a sort over all rows, never a Python loop over groups.

Defined values
--------------
A group without load (total 0) has shares 0, bootstrap intervals ``[0, 0]`` and NaN
for the evenness statistics (``max_mean``, ``cv``, ``gini``, ``jain``,
``entropy_norm``): evenness of nothing is undefined. Its G-test is ``G = 0, p = 1``
(no evidence against the model). A group with one backend that has load is perfectly
even: ``max_mean`` 1, ``cv`` 0, ``gini`` 0, ``jain`` 1, ``entropy_norm`` 1, and its
G-test is ``G = 0, p = 1``. Load on a backend the model gives probability 0 (a stale
backend, a node that should drop) makes ``G = inf, p = 0``. No statistic emits a
division warning.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..schemas import empty_frame, validate_frame

__all__ = [
    "GROUPS",
    "bootstrap_share_ci",
    "evenness",
    "g_test",
    "gini",
    "jain",
    "skew_table",
]

GROUPS = ("endpoint", "pod", "node", "zone")
"""What a backend can be, finest first; the ``group`` column of kinds ``skew`` and ``skew_summary``."""

# Column of kind backend_load / expected_shares that names the backend of each grouping.
_GROUP_COLUMN = {"endpoint": "endpoint_ip", "pod": "pod", "node": "node", "zone": "zone"}

_KEY = ["service_port_name", "window_start", "source"]

# Bootstrap draws are made in chunks of at most this many numbers (memory bound).
_BOOT_CHUNK = 20_000_000


def _sizes(codes: np.ndarray, ngroups: int) -> np.ndarray:
    return np.bincount(codes, minlength=ngroups)


def evenness(values: np.ndarray, codes: np.ndarray, ngroups: int) -> pd.DataFrame:
    """Evenness statistics of the loads of many groups at once.

    Parameters
    ----------
    values : numpy.ndarray
        Non-negative loads, one per backend.
    codes : numpy.ndarray
        Group code (``0 <= code < ngroups``) of each value.
    ngroups : int
        Number of groups.

    Returns
    -------
    pandas.DataFrame
        One row per group (index = code): ``backends``, ``total``, ``max_mean``
        (largest / mean), ``cv`` (population standard deviation / mean), ``gini``,
        ``jain`` (``(sum x)^2 / (n sum x^2)``, in ``[1/n, 1]``) and ``entropy_norm``
        (Shannon entropy of the shares / log n). See the module docstring for the
        values of groups without load or with one backend.
    """
    x = np.asarray(values, dtype="float64")
    c = np.asarray(codes, dtype="int64")
    raw_total = np.bincount(c, weights=x, minlength=ngroups)
    if np.any(x < 0) or not np.all(np.isfinite(x)):
        raise ValueError("loads must be finite and non-negative")
    n = _sizes(c, ngroups)
    order = np.lexsort((x, c))
    starts = np.cumsum(n) - n
    nonempty = n > 0
    largest = np.zeros(ngroups)
    largest[nonempty] = x[order][(starts + n - 1)[nonempty]]
    # every statistic is scale-free: work on x / (the group's largest load), so that
    # squares neither overflow nor underflow
    x = np.divide(x, largest[c], out=np.zeros(len(x)), where=largest[c] > 0)
    largest = (largest > 0).astype("float64")
    total = np.bincount(c, weights=x, minlength=ngroups)
    sumsq = np.bincount(c, weights=x * x, minlength=ngroups)
    xs, cs = x[order], c[order]
    rank = np.arange(len(xs)) - starts[cs] + 1  # 1-based rank within the group, ascending
    gini_num = np.bincount(cs, weights=(2 * rank - n[cs] - 1) * xs, minlength=ngroups)

    loaded = total > 0
    nan = np.full(ngroups, np.nan)
    mean = np.divide(total, n, out=np.zeros(ngroups), where=nonempty)
    max_mean = np.divide(largest, mean, out=nan.copy(), where=loaded)
    variance = np.maximum(np.divide(sumsq, n, out=np.zeros(ngroups), where=nonempty) - mean**2, 0.0)
    cv = np.divide(np.sqrt(variance), mean, out=nan.copy(), where=loaded)
    # float rounding can leave a tiny residue for equal loads: clip to the bounds
    cv = np.where(loaded & (cv < 1e-12), 0.0, cv)
    gini_ = np.divide(gini_num, n * total, out=nan.copy(), where=loaded)
    gini_ = np.where(loaded, np.clip(gini_, 0.0, 1.0), np.nan)
    jain_ = np.divide(total**2, n * sumsq, out=nan.copy(), where=loaded)
    jain_ = np.where(loaded, np.clip(jain_, 1.0 / np.maximum(n, 1), 1.0), np.nan)
    share = np.divide(x, total[c], out=np.zeros(len(x)), where=total[c] > 0)
    plogp = np.zeros(len(x))
    np.multiply(share, np.log(share, out=np.zeros(len(x)), where=share > 0), out=plogp, where=share > 0)
    entropy = -np.bincount(c, weights=plogp, minlength=ngroups)
    log_n = np.log(np.maximum(n, 1).astype("float64"))
    entropy_norm = np.divide(entropy, log_n, out=np.ones(ngroups), where=n > 1)
    entropy_norm = np.where(loaded, np.clip(entropy_norm, 0.0, 1.0), np.nan)
    return pd.DataFrame(
        {
            "backends": n.astype("int64"),
            "total": raw_total,
            "max_mean": max_mean,
            "cv": cv,
            "gini": gini_,
            "jain": jain_,
            "entropy_norm": entropy_norm,
        }
    )


def gini(loads) -> float:
    """Gini coefficient of one set of loads (0 = even, ``(n-1)/n`` = one takes all; NaN without load)."""
    x = np.asarray(loads, dtype="float64")
    return float(evenness(x, np.zeros(len(x), dtype="int64"), 1)["gini"].iloc[0])


def jain(loads) -> float:
    """Jain's fairness index of one set of loads, in ``[1/n, 1]`` (NaN without load)."""
    x = np.asarray(loads, dtype="float64")
    return float(evenness(x, np.zeros(len(x), dtype="int64"), 1)["jain"].iloc[0])


def bootstrap_share_ci(
    counts: np.ndarray,
    codes: np.ndarray,
    ngroups: int,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap intervals of each backend's share, resampling each group's total.

    Each group's counts are resampled as one multinomial draw of its total over its
    observed shares (numpy ``Generator.multinomial``, all groups of the same size in
    one call), ``n_boot`` times; the interval is the central ``level`` quantile range
    of the resampled shares.

    Parameters
    ----------
    counts : numpy.ndarray
        Observed counts per backend (rounded to integers).
    codes : numpy.ndarray
        Group code of each count.
    ngroups : int
        Number of groups.
    n_boot : int, default 1000
        Bootstrap replicates.
    seed : int, default 0
        Seed of the ``numpy.random.Generator`` (results are reproducible).
    level : float, default 0.95
        Coverage of the interval.

    Returns
    -------
    low, high : numpy.ndarray
        Aligned to ``counts``. A backend with count 0 gets ``[0, 0]`` (resampling
        never gives it load); a group without load gets ``[0, 0]``.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    k = np.rint(np.asarray(counts, dtype="float64")).astype("int64")
    c = np.asarray(codes, dtype="int64")
    low = np.zeros(len(k))
    high = np.zeros(len(k))
    if len(k) == 0:
        return low, high
    rng = np.random.default_rng(seed)
    n = _sizes(c, ngroups)
    total = np.bincount(c, weights=k, minlength=ngroups).astype("int64")
    order = np.argsort(c, kind="stable")
    starts = np.cumsum(n) - n
    pos = np.empty(len(k), dtype="int64")
    pos[order] = np.arange(len(k)) - starts[c[order]]
    qs = [(1 - level) / 2, 1 - (1 - level) / 2]
    for size in np.unique(n[n > 0]):
        groups = np.flatnonzero((n == size) & (total > 0))
        if len(groups) == 0:
            continue
        rows = np.flatnonzero(np.isin(c, groups))
        slot = np.searchsorted(groups, c[rows])
        matrix = np.zeros((len(groups), size), dtype="int64")
        matrix[slot, pos[rows]] = k[rows]
        probs = matrix / total[groups][:, None]
        chunk = max(1, _BOOT_CHUNK // (size * n_boot))
        for lo in range(0, len(groups), chunk):
            sl = slice(lo, lo + chunk)
            draws = rng.multinomial(total[groups][sl], probs[sl], size=(n_boot, len(probs[sl])))
            shares = draws / total[groups][sl][None, :, None]
            q = np.quantile(shares, qs, axis=0)
            in_chunk = (slot >= lo) & (slot < lo + chunk)
            r = rows[in_chunk]
            low[r] = q[0][slot[in_chunk] - lo, pos[r]]
            high[r] = q[1][slot[in_chunk] - lo, pos[r]]
    return low, high


def g_test(
    observed: np.ndarray, expected_share: np.ndarray, codes: np.ndarray, ngroups: int
) -> tuple[np.ndarray, np.ndarray]:
    """G-test of each group's counts against its expected shares.

    Uses :func:`scipy.stats.power_divergence` with ``lambda_="log-likelihood"``,
    once for all groups with the same number of categories. Categories with
    expected share 0 and no load are left out (they cannot tell anything).

    Parameters
    ----------
    observed : numpy.ndarray
        Observed counts.
    expected_share : numpy.ndarray
        Shares the model predicts (they need not sum to 1: they are normalised
        within each group); NaN for a backend the model says nothing about.
    codes : numpy.ndarray
        Group code of each row.
    ngroups : int
        Number of groups.

    Notes
    -----
    The degrees of freedom are (categories - 1). When the expected shares were
    weighted by a client-to-node mix measured from the same counts (per-node totals
    fixed by the data), the exact test would have fewer degrees of freedom (the sum
    over nodes of their endpoints - 1), so the p-value given here is conservative
    (larger): it may miss a deviation, never invent one.

    Returns
    -------
    statistic, p_value : numpy.ndarray
        One per group. NaN when any share of the group is NaN (no model);
        ``inf, 0`` when a backend with expected share 0 has load; ``0, 1`` for a
        group without load or with a single possible backend.
    """
    from scipy import stats  # imported here: ``import npanalytics`` stays light

    o = np.asarray(observed, dtype="float64")
    e = np.asarray(expected_share, dtype="float64")
    c = np.asarray(codes, dtype="int64")
    stat = np.zeros(ngroups)
    pval = np.ones(ngroups)
    no_model = np.bincount(c, weights=np.isnan(e), minlength=ngroups) > 0
    e0 = np.nan_to_num(e, nan=0.0)
    impossible = np.bincount(c, weights=(e0 <= 0) & (o > 0), minlength=ngroups) > 0
    total = np.bincount(c, weights=o, minlength=ngroups)
    keep = (e0 > 0) & ~no_model[c] & ~impossible[c] & (total[c] > 0)
    kept_sizes = np.bincount(c[keep], minlength=ngroups)
    e_sum = np.bincount(c[keep], weights=e0[keep], minlength=ngroups)
    for size in np.unique(kept_sizes[kept_sizes > 1]):
        groups = np.flatnonzero(kept_sizes == size)
        rows = np.flatnonzero(keep & np.isin(c, groups))
        rows = rows[np.argsort(c[rows], kind="stable")]
        slot = np.searchsorted(groups, c[rows])
        obs = o[rows].reshape(len(groups), size)
        exp = (e0[rows] / e_sum[c[rows]] * total[c[rows]]).reshape(len(groups), size)
        with np.errstate(divide="ignore", invalid="ignore"):  # 0 * log(0) is taken as 0 by scipy
            res = stats.power_divergence(obs, exp, axis=1, lambda_="log-likelihood")
        stat[groups[slot[::size]]] = np.maximum(res.statistic, 0.0)
        pval[groups[slot[::size]]] = res.pvalue
    stat[impossible] = np.inf
    pval[impossible] = 0.0
    stat[no_model] = np.nan
    pval[no_model] = np.nan
    return stat, pval


def _binomial_range(share: np.ndarray, total: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Central ``level`` range of count/total when count ~ Binomial(total, share)."""
    from scipy import stats

    n = np.rint(total).astype("int64")
    p = np.clip(np.nan_to_num(share, nan=0.0), 0.0, 1.0)
    lo = stats.binom.ppf((1 - level) / 2, n, p)
    hi = stats.binom.ppf(1 - (1 - level) / 2, n, p)
    has = n > 0
    low = np.where(has, np.divide(lo, n, out=np.zeros(len(n)), where=has), 0.0)
    high = np.where(has, np.divide(hi, n, out=np.ones(len(n)), where=has), 1.0)
    unknown = np.isnan(share)
    return np.where(unknown, np.nan, low), np.where(unknown, np.nan, high)


def _grouped_rows(load: pd.DataFrame, expected: pd.DataFrame | None, group: str) -> pd.DataFrame:
    """Observed and expected load per (key, backend) for one grouping."""
    col = _GROUP_COLUMN[group]
    key = _KEY + [col]
    obs = load.loc[load[col].notna(), key + ["value"]]
    obs = obs.astype({col: "str"}).groupby(key, observed=True, dropna=False, sort=False)["value"].sum()
    obs = obs.rename("observed").reset_index()
    if expected is not None and len(expected):
        exp = expected.loc[expected[col].notna(), key + ["expected_share"]].astype({col: "str"})
        exp = exp.groupby(key, observed=True, dropna=False, sort=False)["expected_share"].sum(min_count=1)
        exp = exp.reset_index()
        rows = obs.merge(exp, on=key, how="outer")
        # a key the model covers gives 0 to backends it does not list
        covered = rows.groupby(_KEY, dropna=False, observed=True, sort=False)["expected_share"].transform("count") > 0
        rows.loc[covered.to_numpy() & rows["expected_share"].isna().to_numpy(), "expected_share"] = 0.0
    else:
        rows = obs.assign(expected_share=np.nan)
    rows["observed"] = rows["observed"].fillna(0.0)
    # a backend with no load that the model gives nothing could not receive load: not a backend here
    rows = rows[~((rows["observed"] == 0) & (rows["expected_share"] == 0))]
    return rows.rename(columns={col: "backend"}).assign(group=group)


def skew_table(
    load: pd.DataFrame,
    expected: pd.DataFrame | None = None,
    *,
    groups: tuple[str, ...] = GROUPS,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Shares, intervals and skew statistics per Service port, window, source and grouping.

    Parameters
    ----------
    load : pandas.DataFrame
        Kind ``backend_load`` with one measure per source (connections for conntrack
        and rules, requests for ground truth); rows of several entry nodes are summed.
    expected : pandas.DataFrame, optional
        Kind ``expected_shares`` (from :func:`npanalytics.analysis.expected.expected_shares`).
        Without it, expected columns and the G-test are NaN; its ``model`` column
        becomes the summary's (``''`` for a key it does not cover).
    groups : tuple of str
        Groupings to compute, from :data:`GROUPS`; a grouping whose label is unknown
        for every row is skipped.
    n_boot, seed : int
        Bootstrap replicates and seed (see :func:`bootstrap_share_ci`).

    Returns
    -------
    skew, skew_summary : pandas.DataFrame
        Kinds ``skew`` and ``skew_summary``, sorted by key, grouping and backend.
    """
    validate_frame(load, "backend_load")
    if expected is not None:
        validate_frame(expected, "expected_shares")
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise ValueError(f"groups: unknown grouping(s) {unknown}; allowed: {list(GROUPS)}")
    pieces = [_grouped_rows(load, expected, g) for g in groups]
    rows = pd.concat([p for p in pieces if len(p)], ignore_index=True) if any(len(p) for p in pieces) else None
    if rows is None:
        return empty_frame("skew"), empty_frame("skew_summary")
    gkey = _KEY + ["group"]
    rows = rows.sort_values(gkey + ["backend"], kind="stable", na_position="first").reset_index(drop=True)
    codes = rows.groupby(gkey, sort=False, dropna=False, observed=True).ngroup().to_numpy(dtype="int64")
    keys = rows.loc[np.r_[True, codes[1:] != codes[:-1]], gkey].reset_index(drop=True)
    ngroups = len(keys)
    obs = rows["observed"].to_numpy(dtype="float64")
    exp = rows["expected_share"].to_numpy(dtype="float64")
    ev = evenness(obs, codes, ngroups)
    total = ev["total"].to_numpy()
    share = np.divide(obs, total[codes], out=np.zeros(len(obs)), where=total[codes] > 0)
    low, high = bootstrap_share_ci(obs, codes, ngroups, n_boot=n_boot, seed=seed)
    e_sum = np.bincount(codes, weights=np.nan_to_num(exp), minlength=ngroups)
    exp_norm = np.divide(exp, e_sum[codes], out=np.full(len(exp), np.nan), where=e_sum[codes] > 0)
    exp_norm = np.where(np.isnan(exp), np.nan, np.nan_to_num(exp_norm, nan=0.0))
    exp_low, exp_high = _binomial_range(exp_norm, total[codes])
    stat, pval = g_test(obs, exp_norm, codes, ngroups)

    skew = pd.DataFrame(
        {
            "service_port_name": rows["service_port_name"].astype("str").astype("category"),
            "window_start": pd.to_datetime(rows["window_start"], utc=True).astype("datetime64[ns, UTC]"),
            "source": rows["source"].astype("str").astype("category"),
            "group": rows["group"].astype("category"),
            "backend": rows["backend"].astype("str").astype("category"),
            "observed": obs,
            "share": share,
            "share_ci_low": low,
            "share_ci_high": high,
            "expected_share": exp_norm,
            "expected_low": exp_low,
            "expected_high": exp_high,
        }
    )
    summary = pd.DataFrame(
        {
            "service_port_name": keys["service_port_name"].astype("str").astype("category"),
            "window_start": keys["window_start"],
            "source": keys["source"].astype("str").astype("category"),
            "group": keys["group"].astype("category"),
            **{c: ev[c] for c in ("backends", "total", "max_mean", "cv", "gini", "jain", "entropy_norm")},
            "g_statistic": stat,
            "p_value": pval,
        }
    )
    if expected is not None and len(expected):
        m = expected.astype({"service_port_name": "str", "source": "str"}).drop_duplicates(_KEY)
        summary = summary.astype({"service_port_name": "str", "source": "str"}).merge(m[_KEY + ["model"]], on=_KEY, how="left")
        summary["service_port_name"] = summary["service_port_name"].astype("category")
        summary["source"] = summary["source"].astype("category")
    else:
        summary["model"] = ""
    summary["model"] = summary["model"].fillna("").astype("str")
    summary["window_start"] = pd.to_datetime(summary["window_start"], utc=True).astype("datetime64[ns, UTC]")
    return validate_frame(skew, "skew"), validate_frame(summary.reset_index(drop=True), "skew_summary")
