"""d90 estimation on synthetic accuracy curves with a known crossing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from petl_analysis.errors import PetlError
from petl_analysis.probe.d90 import (
    coarse_grid,
    distinct_resamples,
    estimate_d90,
    format_ci,
    format_d90,
    interpolate_d90,
    isotonic_curve,
    next_dims,
    threshold_value,
)

LP, FT, D0, SCALE = 0.30, 0.90, 300.0, 0.5
TARGET = threshold_value(LP, FT, 0.9, mode="gain")
# Logistic in log d from LP to FT: it crosses LP + 0.9 (FT - LP) where the logistic equals 0.9, i.e. at D0 · 9^SCALE.
TRUE_D90 = D0 * 9**SCALE


def logistic(d):
    return LP + (FT - LP) / (1 + np.exp(-(np.log(d) - np.log(D0)) / SCALE))


def noisy_runs(dims, noise, seeds=5, rng_seed=0):
    rng = np.random.default_rng(rng_seed)
    return {int(d): list(logistic(d) + rng.normal(0, noise, seeds)) for d in dims}


def test_threshold_modes():
    assert threshold_value(0.3, 0.9, 0.9, mode="classic") == pytest.approx(0.81)
    assert threshold_value(0.3, 0.9, 0.9, mode="gain") == pytest.approx(0.84)
    assert threshold_value(0.3, 0.9, 1.0, mode="gain") == pytest.approx(0.9)
    for bad in (0, -0.1, 1.5):
        with pytest.raises(PetlError, match=r"\(0, 1\]"):
            threshold_value(0.3, 0.9, bad)
    with pytest.raises(PetlError, match="threshold mode"):
        threshold_value(0.3, 0.9, 0.9, mode="relative")


def test_interpolates_in_log_d():
    assert interpolate_d90([10, 100], [0.5, 0.7], 0.6) == pytest.approx(math.sqrt(1000))
    assert interpolate_d90([10, 100, 1000], [0.5, 0.7, 0.9], 0.7) == pytest.approx(100)
    assert interpolate_d90([10, 100], [0.5, 0.7], 0.8) is None
    assert interpolate_d90([10, 100], [0.75, 0.8], 0.7) == 10


def test_d90_of_a_known_logistic_within_5_percent():
    dims = coarse_grid(100_000, d_min=10, points_per_decade=8)
    est = estimate_d90(None, noisy_runs(dims, noise=0.005), TARGET)
    assert est.reached and not est.below_min
    assert abs(est.value / TRUE_D90 - 1) < 0.05
    assert est.ci_low <= est.value <= est.ci_high
    assert est.reached_fraction == 1.0
    assert est.fit.n_trials == 5 * len(dims)


def test_isotonic_fit_is_monotone_and_weighted():
    rng = np.random.default_rng(1)
    dims = [10, 20, 50, 100, 200, 500, 1000]
    accs = [list(0.5 + 0.05 * rng.normal(size=3)) for _ in dims]
    d, fitted = isotonic_curve(dims, accs)
    assert list(d) == dims
    assert np.all(np.diff(fitted) >= -1e-12)
    # Already monotone means are left alone; repeated dims are pooled; NaN (failed trials) is ignored.
    d, fitted = isotonic_curve([100, 10, 10], [[0.8, np.nan], [0.5], [0.7]])
    assert list(d) == [10, 100] and fitted == pytest.approx([0.6, 0.8])
    # A violation is pooled with seed-count weights: (0.9·1 + 0.6·3) / 4.
    _, fitted = isotonic_curve([10, 100], [[0.9], [0.6, 0.6, 0.6]])
    assert fitted == pytest.approx([0.675, 0.675])


def test_not_reached():
    dims = [10, 20, 50, 100]  # the logistic is still far below the target here
    est = estimate_d90(None, noisy_runs(dims, noise=0.01), TARGET, n_boot=200)
    assert est.value is None and not est.reached and not est.below_min
    assert est.reached_fraction == 0.0 and est.ci_high == math.inf


def test_below_min_is_flagged():
    dims = [5000, 10000, 20000]
    est = estimate_d90(None, noisy_runs(dims, noise=0.005), TARGET, n_boot=200)
    assert est.reached and est.below_min and est.value == 5000


def test_array_input_with_failed_trials():
    dims = coarse_grid(100_000, points_per_decade=8)
    runs = noisy_runs(dims, noise=0.005)
    arr = np.array([runs[d] for d in dims])
    arr[3, :2] = np.nan  # two failed seeds at one d
    est = estimate_d90(dims, arr, TARGET, n_boot=200)
    assert abs(est.value / TRUE_D90 - 1) < 0.05
    assert est.fit.n_trials == arr.size - 2
    with pytest.raises(PetlError, match="every trial failed"):
        estimate_d90([10, 20], np.full((2, 3), np.nan), TARGET)


def test_ci_contains_estimate_and_widens_with_noise():
    dims = coarse_grid(100_000, points_per_decade=6)
    widths = []
    for noise in (0.005, 0.03):
        est = estimate_d90(None, noisy_runs(dims, noise=noise, seeds=6, rng_seed=2), TARGET, n_boot=500)
        assert est.ci_low <= est.value <= est.ci_high
        widths.append(math.log(est.ci_high / est.ci_low))
    assert widths[1] > 2 * widths[0]


def test_bootstrap_is_deterministic():
    runs = noisy_runs(coarse_grid(10_000), noise=0.02)
    a = estimate_d90(None, runs, TARGET, n_boot=100, rng_seed=5)
    b = estimate_d90(None, runs, TARGET, n_boot=100, rng_seed=5)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)


def test_fitted_at_interpolates_curve():
    est = estimate_d90(None, {10: [0.5], 1000: [0.7]}, 0.6, n_boot=0)
    assert est.ci_low is None and est.ci_high is None
    assert est.fitted_at([10, 100, 1000, 5000]) == pytest.approx([0.5, 0.6, 0.7, 0.7])


def test_coarse_grid():
    assert coarse_grid(16_640) == [10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]
    assert coarse_grid(16_640, include_D=True)[-1] == 16_640
    assert coarse_grid(1000, d_min=1, points_per_decade=1) == [1, 10, 100, 1000]
    assert coarse_grid(300, points_per_decade=2) == [10, 30, 100, 300]
    assert coarse_grid(5) == [5]
    assert max(coarse_grid(10**6, d_max=3000)) <= 3000


def test_next_dims_brackets_the_crossing_and_terminates():
    tried = noisy_runs(coarse_grid(100_000), noise=0.002)
    for _ in range(20):
        proposal = next_dims(list(tried), [tried[d] for d in tried], TARGET, max_d=100_000)
        if not proposal:
            break
        assert all(p not in tried for p in proposal)
        tried.update(noisy_runs(proposal, noise=0.002, rng_seed=len(tried)))
    else:
        pytest.fail("next_dims did not terminate")
    dims, fitted = isotonic_curve(list(tried), list(tried.values()))
    i = int(np.flatnonzero(fitted >= TARGET)[0])
    lo, hi = dims[i - 1], dims[i]
    assert lo < TRUE_D90 < hi and hi / lo <= 1.25
    est = estimate_d90(None, tried, TARGET, n_boot=200)
    assert abs(est.value / TRUE_D90 - 1) < 0.05


def test_next_dims_expands_and_stops_at_the_edges():
    low = {10: [0.3], 20: [0.3]}
    assert next_dims(low, 0.8, max_d=1000) == [60]
    assert next_dims(low, 0.8) == []  # no max_d: cannot expand
    assert next_dims({10: [0.3], 1000: [0.3]}, 0.8, max_d=1000) == []  # not reached within D
    high = {30: [0.9], 100: [0.95]}
    assert next_dims(high, 0.8) == [10]
    assert next_dims({1: [0.9], 3: [0.9]}, 0.8) == []  # reached at d=1: nothing below
    # Means per d (as the probe driver passes them), NaN for a d whose trials all failed.
    assert next_dims([10, 100, 1000], np.array([0.3, np.nan, 0.9]), 0.8) == [32]
    assert next_dims([100, 120], [0.3, 0.9], 0.8) == []  # bracket ratio 1.2 <= 1.25


def test_one_seed_has_no_interval():
    est = estimate_d90(None, {10: [0.5], 100: [0.7], 1000: [0.9]}, 0.6)
    assert est.n_seeds == 1 and est.ci_low is None and est.ci_high is None and est.fit.n_boot == 0
    assert format_ci(est.ci_low, est.ci_high, est.n_seeds) == "n/a, 1 seed"


def test_per_seed_targets_shift_the_crossing_of_their_own_seed():
    dims = [10, 100, 1000]
    accs = np.array([[0.5, 0.5], [0.7, 0.7], [0.9, 0.9]])
    # The same curve for both seeds; seed 1's own bar is higher, so the mean margin crosses later than at 0.6.
    low = estimate_d90(dims, accs, [0.6, 0.6], n_boot=0)
    high = estimate_d90(dims, accs, [0.6, 0.8], n_boot=0)
    assert low.value == pytest.approx(estimate_d90(dims, accs, 0.6, n_boot=0).value)
    assert high.value == pytest.approx(estimate_d90(dims, accs, 0.7, n_boot=0).value) and high.value > low.value
    assert high.threshold_acc == pytest.approx(0.7)
    with pytest.raises(PetlError, match="per-seed targets"):
        estimate_d90(dims, accs, [0.6, 0.7, 0.8])


def test_bootstrap_resamples_whole_seeds_with_their_baselines():
    # Identical curves: only the per-seed targets differ, so an interval that ignored them would have zero width.
    dims = [10, 100, 1000, 10_000]
    accs = np.tile(np.array([[0.5], [0.6], [0.7], [0.8]]), (1, 2))
    est = estimate_d90(dims, accs, [0.55, 0.75], n_boot=400)
    single = [estimate_d90(dims, accs[:, [s]], t, n_boot=0).value for s, t in ((0, 0.55), (1, 0.75))]
    assert est.ci_low == pytest.approx(min(single)) and est.ci_high == pytest.approx(max(single))
    assert est.ci_low < est.value < est.ci_high
    assert distinct_resamples(2) == 3 and distinct_resamples(3) == 10 and distinct_resamples(1) == 1


def test_formatters_keep_the_below_grid_flag():
    assert format_d90(10.0, True, True) == "<=10" and format_d90(123.4, True) == "123"
    assert format_d90(None, False) == "not reached"
    assert format_ci(10.0, math.inf, 3) == "[10, inf]" and format_ci(None, None, 3) == "-"


def test_one_d90_type_from_the_estimate_to_the_artefact():
    from petl_analysis.artefacts import to_jsonable
    from petl_analysis.probe import D90
    from petl_analysis.probe.d90 import D90Estimate

    est = estimate_d90(None, {10: [0.5, 0.52], 100: [0.7, 0.72], 1000: [0.9, 0.88]}, [0.6, 0.65], n_boot=50)
    assert type(est) is D90 and D90Estimate is D90
    assert est.threshold_per_seed == [0.6, 0.65] and est.threshold_acc == pytest.approx(0.625)
    assert est.fit is not None and est.fit.n_trials == 6 and len(est.fit.curve.dims) == 3
    stored = to_jsonable(est)
    assert "fit" not in stored  # the curve stays in memory; the artefact holds the numbers
    again = D90(**stored)
    assert again == est and again.fit is None and again.text() == est.text()


def test_a_gain_of_exactly_two_validation_images_is_resolved_despite_float_error() -> None:
    from petl_analysis.probe.result import unresolved_gain

    # (0.48 - 0.44) * 50 is 1.9999999999999996 in floats: 2 images, not "2.0 ... under 2"
    assert unresolved_gain((0.44, 0.0), (0.48, 0.0), 50) is None
    assert "under 2" in unresolved_gain((0.44, 0.0), (0.46, 0.0), 50)
