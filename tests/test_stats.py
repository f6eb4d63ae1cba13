"""kirinuki.core.stats against scipy's own results on fixed data, hand-computed small cases and
published power tables (G*Power / R pwr for the paired t-test)."""
import numpy as np
import pytest
from scipy import stats

from kirinuki.core.stats import (WILCOXON_ARE, bootstrap_ci, cohens_dz, holm, min_detectable_dz, n_for_effect,
                            paired_t, power_paired, rank_biserial, wilcoxon_p)

BASE = np.array([0.50, 0.62, 0.71, 0.40, 0.83, 0.55, 0.66, 0.90, 0.35, 0.77])
CAND = BASE + np.array([0.10, 0.04, -0.02, 0.07, 0.0, 0.12, 0.04, -0.01, 0.09, 0.05])
D = CAND - BASE


def test_tests_match_scipy():
    assert wilcoxon_p(D) == stats.wilcoxon(CAND, BASE, zero_method="wilcox").pvalue
    t, p = paired_t(D)
    ref = stats.ttest_rel(CAND, BASE)
    assert t == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)


def test_tests_degenerate_cases():
    assert wilcoxon_p(np.zeros(5)) == 1.0 and wilcoxon_p(np.array([])) is None
    assert paired_t(np.zeros(5)) == (None, 1.0)  # no change at all
    assert paired_t(np.full(5, -0.1)) == (None, 0.0)  # the same shift on every image
    assert paired_t(np.array([0.3])) == (None, None)


def test_cohens_dz_by_hand():
    assert cohens_dz(np.array([1.0, 2.0, 3.0])) == pytest.approx(2.0)  # mean 2, sd 1
    assert cohens_dz(D) == pytest.approx(D.mean() / D.std(ddof=1))
    assert cohens_dz(np.full(4, 0.2)) is None and cohens_dz(np.array([0.1])) is None


def test_rank_biserial_by_hand_and_against_scipy():
    # |d| ranks 1, 2, 3 (zero dropped): W+ = 1 + 3, W- = 2 -> (4 - 2) / 6
    assert rank_biserial(np.array([1.0, -2.0, 3.0, 0.0])) == pytest.approx(1 / 3)
    # tied magnitudes share rank 1.5: W+ = 1.5 + 3, W- = 1.5 -> 3 / 6
    assert rank_biserial(np.array([1.0, -1.0, 2.0])) == pytest.approx(0.5)
    assert rank_biserial(np.array([0.2, 0.1])) == 1.0 and rank_biserial(np.array([-0.2])) == -1.0
    assert rank_biserial(np.zeros(3)) == 0.0 and rank_biserial(np.array([])) is None
    # scipy's one-sided statistic is W+; r = 2 W+ / T - 1 with T = n (n + 1) / 2 over non-zero pairs
    w_plus = stats.wilcoxon(D, zero_method="wilcox", alternative="greater").statistic
    n = np.count_nonzero(D)
    assert rank_biserial(D) == pytest.approx(2 * w_plus / (n * (n + 1) / 2) - 1)


def test_bootstrap_ci_is_seeded_and_agrees_with_scipy():
    lo, hi = bootstrap_ci(D, 0.95, 10_000, seed=0)
    assert (lo, hi) == bootstrap_ci(D, 0.95, 10_000, seed=0)  # same seed, same interval
    assert bootstrap_ci(D, 0.95, 10_000, seed=1) != (lo, hi)
    assert lo < D.mean() < hi
    ref = stats.bootstrap((D,), np.mean, confidence_level=0.95, n_resamples=10_000, method="percentile",
                          rng=np.random.default_rng(0)).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.004) and hi == pytest.approx(ref.high, abs=0.004)
    # chunked resampling gives the same kind of answer for many pairs
    big = np.random.default_rng(3).normal(0.1, 0.2, 2000)
    blo, bhi = bootstrap_ci(big, 0.9, 3_000, seed=0)
    half = stats.norm.ppf(0.95) * big.std(ddof=1) / np.sqrt(len(big))
    assert blo == pytest.approx(big.mean() - half, abs=0.002) and bhi == pytest.approx(big.mean() + half, abs=0.002)


def test_bootstrap_ci_degenerate():
    assert bootstrap_ci(np.array([0.3]), 0.95, 200, 0) == (pytest.approx(0.3), pytest.approx(0.3))
    assert bootstrap_ci(np.zeros(6), 0.95, 200, 0) == (0.0, 0.0)
    assert bootstrap_ci(np.array([]), 0.95, 200, 0) == (None, None)


def test_power_matches_published_tables():
    # paired t-test, two-sided alpha 0.05: dz 0.5 needs 34 pairs (power 0.808), dz 0.8 15, dz 0.2 199
    assert power_paired(34, 0.5, 0.05) == pytest.approx(0.8078, abs=1e-4)
    assert (n_for_effect(0.5, 0.05, 0.8), n_for_effect(0.8, 0.05, 0.8), n_for_effect(0.2, 0.05, 0.8)) == (34, 15, 199)
    assert n_for_effect(-0.5, 0.05, 0.8) == 34  # direction does not matter
    assert power_paired(10, 0.0, 0.05) == pytest.approx(0.05)  # no effect: rejects at the level alpha


def test_power_matches_simulated_t_tests():
    rng = np.random.default_rng(7)
    samples = rng.normal(0.8, 1.0, size=(20_000, 12))  # dz = 0.8, 12 pairs
    rejected = (stats.ttest_1samp(samples, 0.0, axis=1).pvalue < 0.05).mean()
    assert power_paired(12, 0.8, 0.05) == pytest.approx(rejected, abs=0.01)


def test_wilcoxon_power_uses_the_relative_efficiency():
    assert power_paired(20, 0.6, 0.05, WILCOXON_ARE) == pytest.approx(power_paired(20 * 3 / np.pi, 0.6, 0.05))
    assert n_for_effect(0.5, 0.05, 0.8, WILCOXON_ARE) == 35  # 34 / 0.955, rounded up
    assert power_paired(1, 1.0, 0.05) is None  # one pair: no test


def test_min_detectable_effect_inverts_power():
    for n in (3, 6, 18, 120):
        dz = min_detectable_dz(n, 0.05, 0.8)
        assert power_paired(n, dz, 0.05) == pytest.approx(0.8, abs=1e-6)
    assert min_detectable_dz(34, 0.05, 0.8) == pytest.approx(0.495, abs=1e-3)
    assert min_detectable_dz(18, 0.05, 0.8) > min_detectable_dz(40, 0.05, 0.8)
    assert min_detectable_dz(1, 0.05, 0.8) is None


def test_power_is_finite_far_in_the_tail():
    """scipy's nct.cdf gives NaN for a large noncentrality; power must stay a number."""
    for n in (2, 3, 5, 10):
        for dz in (4.0, 8.0, 16.0):
            p = power_paired(n, dz, 0.05, WILCOXON_ARE)
            assert 0 < p <= 1


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> x3, x2, x1 = 0.03, 0.06, 0.04 -> running max 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([None, 0.02, None]) == [None, 0.02, None]  # untested entries do not count
    assert holm([0.6, 0.7]) == [1.0, 1.0]
    assert holm([]) == []
