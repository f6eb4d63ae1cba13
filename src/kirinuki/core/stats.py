"""Statistics of paired differences: tests, effect sizes, a bootstrap interval, power.

Every function takes the paired differences d = candidate - baseline of one metric (a 1-D
float array without NaN, one value per image) or a sample size, and returns plain floats,
None where a quantity is undefined (too few values, no spread), so results are JSON-ready.
scipy only: the power of the paired t-test comes from the noncentral t distribution.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
from scipy import optimize, stats

# Asymptotic relative efficiency of the Wilcoxon signed-rank test against the t-test for
# normal data (3/pi): n pairs under Wilcoxon are worth about 0.955 n pairs under the t-test.
# Power for Wilcoxon is the t-test's at that effective n (Lehmann; G*Power's "A.R.E." method).
WILCOXON_ARE = 3 / math.pi
MAX_N = 1_000_000  # sample-size searches give up beyond this
_BOOT_CELLS = 4_000_000  # resampled values held in memory at once by bootstrap_ci


def spearman(x: Sequence[float], y: Sequence[float]) -> Optional[float]:
    """Spearman's rank correlation; None where it is undefined (fewer than 3 pairs, or one side
    constant), which scipy would answer with NaN and a warning."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.unique(x).size < 2 or np.unique(y).size < 2:
        return None
    return float(stats.spearmanr(x, y).statistic)


def wilcoxon_p(d: np.ndarray) -> Optional[float]:
    """Two-sided Wilcoxon signed-rank p-value; zero differences are dropped ("wilcox").

    1.0 when every difference is zero (no evidence of any change); None without data.
    """
    if len(d) == 0:
        return None
    if not np.any(d):
        return 1.0
    return float(stats.wilcoxon(d, zero_method="wilcox").pvalue)


def paired_t(d: np.ndarray) -> tuple[Optional[float], Optional[float]]:
    """(t statistic, two-sided p) of the paired t-test, i.e. a one-sample t-test of d vs 0.

    With no spread in d the statistic is undefined (None): p is 1.0 when every difference
    is zero and 0.0 when every difference is the same non-zero shift. None, None for < 2 pairs.
    """
    if len(d) < 2:
        return None, None
    if np.ptp(d) == 0:
        return None, 1.0 if d[0] == 0 else 0.0
    r = stats.ttest_1samp(d, 0.0)
    return float(r.statistic), float(r.pvalue)


def cohens_dz(d: np.ndarray) -> Optional[float]:
    """Standardised mean difference of paired data: mean(d) / sd(d) (ddof 1)."""
    if len(d) < 2 or np.ptp(d) == 0:
        return None
    return float(np.mean(d) / np.std(d, ddof=1))


def rank_biserial(d: np.ndarray) -> Optional[float]:
    """Matched-pairs rank-biserial correlation (W+ - W-) / (W+ + W-), in [-1, 1].

    W+ and W- are the sums of the ranks of |d| (average ranks for ties, zeros dropped as
    in `wilcoxon_p`) of the positive and the negative differences: the share of the rank
    mass favouring the candidate minus the share against it. 0.0 when all differences are zero.
    """
    if len(d) == 0:
        return None
    nz = d[d != 0]
    if nz.size == 0:
        return 0.0
    ranks = stats.rankdata(np.abs(nz))
    w_plus, w_minus = ranks[nz > 0].sum(), ranks[nz < 0].sum()
    return float((w_plus - w_minus) / (w_plus + w_minus))


def bootstrap_ci(d: np.ndarray, level: float, n_boot: int, seed: int) -> tuple[Optional[float], Optional[float]]:
    """Percentile bootstrap interval of mean(d): `n_boot` resamples of the pairs with
    replacement from numpy's default_rng(seed), so the same inputs give the same interval."""
    n = len(d)
    if n == 0:
        return None, None
    rng = np.random.default_rng(seed)
    rows = max(1, _BOOT_CELLS // n)  # resample in chunks: memory stays flat for large n
    means = np.concatenate([d[rng.integers(0, n, size=(min(rows, n_boot - i), n))].mean(axis=1)
                            for i in range(0, n_boot, rows)])
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def power_paired(n: float, dz: float, alpha: float, are: float = 1.0) -> Optional[float]:
    """Power of the two-sided paired t-test with n pairs against a true effect dz.

    P(|T| > t_crit) with T ~ noncentral t(df = n_eff - 1, nc = dz * sqrt(n_eff)) and
    n_eff = are * n (pass WILCOXON_ARE for the signed-rank test). None when n_eff <= 1.
    """
    n_eff = are * n
    if n_eff <= 1:
        return None
    df, nc = n_eff - 1, dz * math.sqrt(n_eff)
    t_crit = stats.t.ppf(1 - alpha / 2, df)
    # P(T < -t_crit) written as the upper tail at -nc (T_nc = -T_-nc): scipy's nct.cdf
    # returns NaN far in the tail, its sf does not
    return float(stats.nct.sf(t_crit, df, nc) + stats.nct.sf(t_crit, df, -nc))


def min_detectable_dz(n: int, alpha: float, power: float, are: float = 1.0) -> Optional[float]:
    """Smallest standardised effect |dz| that n pairs detect with the given power."""
    if power_paired(n, 0.0, alpha, are) is None:
        return None
    gap = lambda dz: power_paired(n, dz, alpha, are) - power  # noqa: E731
    hi = 1.0
    while gap(hi) < 0:  # power rises with dz; n_eff > 1 guarantees it reaches 1
        hi *= 2
        if hi > 1e6:
            return None
    return float(optimize.brentq(gap, 0.0, hi, xtol=1e-10))


def n_for_effect(dz: float, alpha: float, power: float, are: float = 1.0) -> Optional[int]:
    """Smallest number of pairs whose test detects a true effect |dz| with the given power;
    None for dz = 0 or when more than MAX_N pairs would be needed."""
    dz = abs(dz)
    if dz == 0:
        return None
    enough = lambda n: (power_paired(n, dz, alpha, are) or 0.0) >= power  # noqa: E731
    lo, hi = 1, 2
    while not enough(hi):  # power rises with n: double until enough, then bisect
        lo, hi = hi, hi * 2
        if hi > MAX_N:
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return hi


def holm(pvalues: Sequence[Optional[float]]) -> list[Optional[float]]:
    """Holm-Bonferroni adjusted p-values (family-wise error control across metrics).

    The i-th smallest of m p-values is multiplied by (m - i + 1), running maxima keep the
    order, capped at 1. None entries (no test) are kept and not counted in m.
    """
    present = [(p, i) for i, p in enumerate(pvalues) if p is not None]
    m = len(present)
    adjusted: list[Optional[float]] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted
