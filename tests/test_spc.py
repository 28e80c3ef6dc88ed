"""Tests for addin.spc: hand-worked XmR series with literal expected labels.

Shorthand in comments: MRs = moving ranges, MR-bar = their mean after
screening, upl/lpl = mean +/- 2.66 MR-bar, near = mean +/- 1.77333 MR-bar.

Many rule tests fix the limits on a 12-point baseline B = [11, 9] * 6:
mean 10, eleven MRs of 2, MR-bar 2, so
lpl 4.68, near_lpl 6.45333, near_upl 13.54667, upl 15.32.
"close" high is (13.54667, 15.32], close low is [4.68, 6.45333).
B alternates around the mean, so it fires nothing itself.
"""

import numpy as np
import pandas as pd
import pytest

from addin import spc
from addin.spc import describe_signal, xmr

C = "common_cause"
IMP = "special_cause_improvement"
CON = "special_cause_concern"
NH = "special_cause_neutral_high"
NL = "special_cause_neutral_low"
OUT, TR, TWO, SH = "outside_limits", "trend", "two_in_three", "shift"

B = [11, 9] * 6


def labels(df):
    return list(df["point_type"]), list(df["rule"])


def fixed(tail, **kw):
    """xmr of B + tail with limits fixed on B."""
    return xmr(B + tail, fix_after_n_points=12, **kw)


# Outside limits, high at the end and low at the start.
# [1, 11, 9, 11, ..., 9, 19]: sum 200, mean 10.
# MRs: 10, seventeen 2s, 10 -> raw MR-bar 54/19 = 2.8421; 3.267 * 2.8421 = 9.285,
# so both 10s are screened out: MR-bar 34/17 = 2; lpl 4.68, upl 15.32.
OUTSIDE = [1] + [11, 9] * 9 + [19]


def test_outside_limits_high_and_low():
    df = xmr(OUTSIDE)
    assert labels(df) == ([CON] + [C] * 18 + [IMP], [OUT] + [""] * 18 + [OUT])
    assert df["mean"].iloc[0] == pytest.approx(10, abs=1e-9)
    assert df["lpl"].iloc[0] == pytest.approx(4.68, abs=1e-9)
    assert df["upl"].iloc[0] == pytest.approx(15.32, abs=1e-9)


def test_screen_outliers_changes_mr_bar_and_limits():
    on, off = xmr(OUTSIDE), xmr(OUTSIDE, screen_outliers=False)
    assert on["mr_bar"].iloc[0] == pytest.approx(2.0, abs=1e-9)
    assert off["mr_bar"].iloc[0] == pytest.approx(54 / 19, abs=1e-9)
    assert off["mean"].iloc[0] == pytest.approx(10, abs=1e-9)
    assert off["upl"].iloc[0] == pytest.approx(10 + 2.66 * 54 / 19, abs=1e-9)  # 17.56
    assert off["near_lpl"].iloc[0] == pytest.approx(10 - 2 * 2.66 / 3 * 54 / 19, abs=1e-9)


def test_limits_function():
    # [1, 2, 4, 7]: mean 3.5, MRs 1, 2, 3 -> MR-bar 2 (none >= 6.534)
    lim = spc.limits([1, 2, 4, 7])
    assert lim.mean == pytest.approx(3.5, abs=1e-9)
    assert lim.mr_bar == pytest.approx(2, abs=1e-9)
    assert (lim.lpl, lim.upl) == pytest.approx((-1.82, 8.82), abs=1e-9)
    assert (lim.near_lpl, lim.near_upl) == pytest.approx((3.5 - 3.546666667, 3.5 + 3.546666667),
                                                          abs=1e-8)
    # screening: [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 10]: MRs nine 1s and 9 -> MR-bar 18/10 = 1.8;
    # 9 >= 5.88 dropped -> MR-bar 1
    assert spc.limits([0, 1] * 5 + [10]).mr_bar == pytest.approx(1, abs=1e-9)
    assert spc.limits([0, 1] * 5 + [10], screen_outliers=False).mr_bar == pytest.approx(1.8)


def test_improvement_directions():
    inc, dec, neu = (xmr(OUTSIDE, improvement=i) for i in ("increase", "decrease", "neutral"))
    assert list(inc["point_type"].iloc[[0, 19]]) == [CON, IMP]
    assert list(dec["point_type"].iloc[[0, 19]]) == [IMP, CON]
    assert list(neu["point_type"].iloc[[0, 19]]) == [NL, NH]
    assert list(neu["direction"].iloc[[0, 1, 19]]) == [-1, 0, 1]


# Trend: [4, 3, 5, 1, 2, 3, 4, 5, 6, 7, 4, 3, 5, 4]: sum 56, mean 4.
# MRs 1,2,4,1,1,1,1,1,1,3,1,2,1 = 20 -> MR-bar 20/13 = 1.53846 (none >= 5.03);
# upl 8.0923, near_upl 6.7282, near_lpl 1.2718, lpl -0.0923.
# 1 (idx 3) is close low and 7 (idx 9) close high, but never two on one side.
def test_seven_point_increasing_trend_flags_every_point():
    df = xmr([4, 3, 5, 1, 2, 3, 4, 5, 6, 7, 4, 3, 5, 4])
    # idx 3-5 are below the mean but take the rising trend's direction
    assert labels(df) == ([C] * 3 + [IMP] * 7 + [C] * 4, [""] * 3 + [TR] * 7 + [""] * 4)
    assert df["upl"].iloc[0] == pytest.approx(4 + 2.66 * 20 / 13, abs=1e-9)


def test_decreasing_trend_mirrored():
    df = xmr([8 - x for x in [4, 3, 5, 1, 2, 3, 4, 5, 6, 7, 4, 3, 5, 4]], improvement="decrease")
    assert labels(df) == ([C] * 3 + [IMP] * 7 + [C] * 4, [""] * 3 + [TR] * 7 + [""] * 4)


def test_six_point_trend_does_not_fire():
    # [4,3,5,2,3,4,5,6,7,4,3,5,4]: 2..7 is 6 points. mean 55/13 = 4.2308,
    # MRs sum 18 / 12 = 1.5; near_upl 6.8908 (7 close, alone); no shift.
    df = xmr([4, 3, 5, 2, 3, 4, 5, 6, 7, 4, 3, 5, 4])
    assert labels(df) == ([C] * 13, [""] * 13)


def test_equal_value_breaks_trend():
    # 1,2,3,4,4,5,6,7 has 8 points but the repeated 4 splits it into 4 + 4.
    # mean 56/14 = 4, MRs sum 20 / 13 (same limits as the 7-point trend test)
    df = xmr([4, 3, 5, 1, 2, 3, 4, 4, 5, 6, 7, 3, 5, 4])
    assert labels(df) == ([C] * 14, [""] * 14)


def test_trend_function_turning_point_takes_later_direction():
    mask, direction = spc.trend([0, 1, 2, 3, 4, 5, 6, 7, 6, 5, 4, 3, 2, 1])
    assert mask.tolist() == [True] * 14
    assert direction.tolist() == [1] * 7 + [-1] * 7
    mask, direction = spc.trend([1, 2, 3, 4, 5, 6])
    assert not mask.any() and not direction.any()


# Two in three without fixed limits:
# [9,11,9,11,9,11,14,11,14,9,11,9,11,9,11,9,11,9,7,4,4,9]: sum 212, mean 9.63636;
# MRs sum 50 / 21 = 2.38095 (none >= 7.78); near_upl 13.8586, upl 15.9697,
# near_lpl 5.4141, lpl 3.3030.  idx 5-8 (11,14,11,14) are all above the mean,
# window 6-8 has two close -> idx 6 and 8; window 18-20 (7,4,4) below, two close.
def test_two_in_three_high_and_low():
    df = xmr([9, 11, 9, 11, 9, 11, 14, 11, 14, 9, 11, 9, 11, 9, 11, 9, 11, 9, 7, 4, 4, 9])
    pt = [C] * 22
    pt[6] = pt[8] = IMP
    pt[19] = pt[20] = CON
    rule = ["" if p == C else TWO for p in pt]
    assert labels(df) == (pt, rule)
    assert df["near_upl"].iloc[0] == pytest.approx(212 / 22 + 2 * 2.66 / 3 * 50 / 21, abs=1e-9)


def test_two_in_three_outside_point_is_not_close():
    # 14 close, 16 outside, 11 above but not close: only one close point
    df = fixed([14, 16, 11, 9])
    assert labels(df)[1][12:] == ["", OUT, "", ""]
    # 14 close, 16 outside, 14 close: two close on one side -> both flagged
    df = fixed([14, 16, 14, 9])
    assert labels(df) == ([C] * 12 + [IMP] * 3 + [C], [""] * 12 + [TWO, OUT, TWO, ""])


def test_two_in_three_needs_one_side():
    # 14 (close high), 6 (close low), 14 (close high): no window on one side
    df = fixed([14, 6, 14, 9])
    assert labels(df) == ([C] * 16, [""] * 16)


def test_two_in_three_value_at_upl_is_close_not_outside():
    at_upl = 10 + 2.66 * 2  # same float as the module's upl for B
    df = fixed([at_upl, 14, 11, 9])
    assert labels(df)[1][12:] == [TWO, TWO, "", ""]


def test_shift_of_seven():
    # [9,11,9,11,9,12,11,12,11,12,11,12,9,11,9,8,10]: mean 177/17 = 10.4118,
    # MRs sum 27 / 16 = 1.6875, near limits 7.4193 / 13.4043: nothing close.
    # idx 5-11 above the mean (7); idx 13 = 11 above but alone.
    df = xmr([9, 11, 9, 11, 9, 12, 11, 12, 11, 12, 11, 12, 9, 11, 9, 8, 10])
    assert labels(df) == ([C] * 5 + [IMP] * 7 + [C] * 5, [""] * 5 + [SH] * 7 + [""] * 5)
    assert df["mean"].iloc[0] == pytest.approx(177 / 17, abs=1e-9)
    assert df["mr_bar"].iloc[0] == pytest.approx(1.6875, abs=1e-9)


def test_shift_seven_vs_six_on_fixed_limits():
    seven = fixed([12, 11, 12, 11, 12, 11, 12, 9], improvement="decrease")
    assert labels(seven) == ([C] * 12 + [CON] * 7 + [C], [""] * 12 + [SH] * 7 + [""])
    six = fixed([12, 11, 12, 11, 12, 11, 9])
    assert labels(six) == ([C] * 19, [""] * 19)


def test_point_on_mean_breaks_shift():
    on_mean = fixed([12, 11, 12, 10, 11, 12, 11, 12, 9])  # 3 above, 10 on mean, 4 above
    assert labels(on_mean) == ([C] * 21, [""] * 21)
    nudged = fixed([12, 11, 12, 10.5, 11, 12, 11, 12, 9])  # 8 above
    assert labels(nudged)[1][12:] == [SH] * 8 + [""]


def test_precedence_outside_over_trend_over_two_in_three_over_shift():
    # idx 11 (B's last, 9) .. idx 18 rise 9 -> 16: trend of 8.  idx 12-19 above
    # the mean (shift); 14, 15 close (two in three); 16 > 15.32 outside.
    df = fixed([10.5, 11, 12, 13, 14, 15, 16, 12])
    assert labels(df) == ([C] * 11 + [IMP] * 9, [""] * 11 + [TR] * 7 + [OUT, SH])


def test_precedence_two_in_three_over_shift():
    # idx 12-18 above the mean; 14s at idx 13, 15 close in window 13-15
    df = fixed([12, 14, 12, 14, 12, 11, 12, 9])
    assert labels(df)[1][12:] == [SH, TWO, SH, TWO, SH, SH, SH, ""]


def test_falling_trend_above_mean_takes_trend_direction():
    # idx 12-18 (15.3 .. 10.5) are above the mean (also shift and two-in-three)
    # but falling: concern.  idx 19 (11) ends the trend yet is the 8th point
    # above the mean: shift, high, improvement.
    df = fixed([15.3, 14.5, 14, 13, 12, 11, 10.5, 11])
    assert labels(df) == ([C] * 12 + [CON] * 7 + [IMP], [""] * 12 + [TR] * 7 + [SH])
    assert list(df["direction"].iloc[12:19]) == [-1] * 7


def test_all_values_equal():
    df = xmr([5] * 10)
    assert labels(df) == ([C] * 10, [""] * 10)
    assert (df[["mean", "lpl", "upl", "near_lpl", "near_upl"]] == 5).all().all()
    assert (df["mr_bar"] == 0).all()


def test_fewer_than_seven_points_and_tiny_series():
    # [1..6]: mean 3.5, MR-bar 1, upl 6.16, near_upl 5.2733 -> 6 close, 1 close; alone
    df = xmr([1, 2, 3, 4, 5, 6])
    assert labels(df) == ([C] * 6, [""] * 6)
    assert df["trial"].all()
    one = xmr([7])
    assert labels(one) == ([C], [""])
    assert one["mean"].iloc[0] == 7
    assert one[["lpl", "upl", "near_lpl", "near_upl", "mr_bar"]].isna().all().all()
    two = xmr([1, 3])  # mean 2, MR-bar 2
    assert two["upl"].iloc[0] == pytest.approx(2 + 5.32, abs=1e-9)
    empty = xmr([])
    assert len(empty) == 0 and list(empty.columns[:6]) == [
        "value", "mean", "lpl", "upl", "point_type", "rule"]


def test_fix_after_n_points():
    # baseline [9,11,9,11,9,11]: mean 10, MR-bar 2, upl 15.32.
    # 16 outside; 10 on the mean; seven equal 12s: shift, not a trend.
    values = [9, 11] * 3 + [16, 10] + [12] * 7
    df = xmr(values, fix_after_n_points=6)
    assert labels(df) == ([C] * 6 + [IMP, C] + [IMP] * 7, [""] * 6 + [OUT, ""] + [SH] * 7)
    assert np.allclose(df["mean"], 10, atol=1e-9) and np.allclose(df["mr_bar"], 2, atol=1e-9)
    assert np.allclose(df["upl"], 15.32, atol=1e-9)
    # unfixed, every point is in the baseline: mean 170/15
    assert xmr(values)["mean"].iloc[0] == pytest.approx(170 / 15, abs=1e-9)
    # N larger than the series: all points are the baseline
    assert xmr(values, fix_after_n_points=50)["mean"].iloc[0] == pytest.approx(170 / 15)


def test_rebase_separate_limits_and_no_trend_across_border():
    # seg 0 [5,3,1,2,3,4]: mean 3, MRs 2,2,1,1,1 -> 1.4, upl 6.724, lpl -0.724.
    # seg 1 [15,16,17,18,14,16]: mean 16, MRs 1,1,1,4,2 -> 1.8, upl 20.788.
    # 1,2,3,4,15,16,17,18 rises for 8 points but crosses the border.
    values = [5, 3, 1, 2, 3, 4, 15, 16, 17, 18, 14, 16]
    df = xmr(values, rebase_at=[6])
    assert labels(df) == ([C] * 12, [""] * 12)
    assert list(df["segment"]) == [0] * 6 + [1] * 6
    assert list(df["mean"]) == pytest.approx([3] * 6 + [16] * 6, abs=1e-9)
    assert list(df["upl"]) == pytest.approx([3 + 2.66 * 1.4] * 6 + [16 + 2.66 * 1.8] * 6, abs=1e-9)
    assert df["trial"].all()
    # one segment: mean 9.5, MRs sum 27 / 11; the 11 is screened -> 16/10 = 1.6,
    # lpl 5.244, upl 13.756: everything is outside.
    whole = xmr(values)
    assert labels(whole) == ([CON] * 6 + [IMP] * 6, [OUT] * 12)
    assert whole["mr_bar"].iloc[0] == pytest.approx(1.6, abs=1e-9)


def test_rebase_with_fixed_baseline_per_segment():
    # seg 0 baseline [9,11,9,11] -> mean 10, upl 15.32; seg 1 [19,21,19,21] -> lpl 14.68
    df = xmr([9, 11, 9, 11, 30, 19, 21, 19, 21, 5], fix_after_n_points=4, rebase_at=[5])
    assert labels(df) == ([C] * 4 + [IMP] + [C] * 4 + [CON], [""] * 4 + [OUT] + [""] * 4 + [OUT])
    assert list(df["mean"]) == pytest.approx([10] * 5 + [20] * 5)


def test_series_input_keeps_index():
    months = pd.period_range("2023-01", periods=20, freq="M")
    s = pd.Series([1.0] + [11, 9] * 9 + [19], index=months)
    df = xmr(s)
    assert df.index.equals(s.index)
    assert df["point_type"].iloc[-1] == IMP
    assert xmr(np.array(OUTSIDE))["rule"].tolist() == xmr(OUTSIDE)["rule"].tolist()


@pytest.mark.parametrize("kwargs, message", [
    ({"improvement": "up"}, "improvement"),
    ({"fix_after_n_points": 1}, "fix_after_n_points"),
    ({"fix_after_n_points": 2.5}, "fix_after_n_points"),
    ({"fix_after_n_points": True}, "fix_after_n_points"),
    ({"rebase_at": [0]}, "out of range"),
    ({"rebase_at": [20]}, "out of range"),
    ({"rebase_at": [5, 3]}, "increasing"),
    ({"rebase_at": [5, 5]}, "increasing"),
    ({"rebase_at": [2.0]}, "integers"),
    ({"screen_outliers": "yes"}, "screen_outliers"),
])
def test_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        xmr(OUTSIDE, **kwargs)


@pytest.mark.parametrize("values", [[1, None, 3], [1, np.nan, 3], pd.Series([1, pd.NA, 3]),
                                    [1, np.inf, 2]])
def test_missing_values_raise(values):
    with pytest.raises(ValueError, match="missing"):
        xmr(values)


def test_bad_values_raise():
    with pytest.raises(ValueError, match="numeric"):
        xmr([1, "a", 3])
    with pytest.raises(ValueError, match="one-dimensional"):
        xmr(np.ones((3, 2)))


def test_random_series_properties():
    rng = np.random.default_rng(20240601)
    for _ in range(200):
        n = int(rng.integers(1, 60))
        values = rng.poisson(rng.uniform(0, 20), size=n).astype(float)
        fix = int(rng.integers(2, 20)) if rng.random() < 0.3 else None
        df = xmr(values, fix_after_n_points=fix)
        assert len(df) == n and list(df["value"]) == list(values)
        if n >= 2:
            assert (df["lpl"] <= df["near_lpl"]).all() and (df["near_lpl"] <= df["mean"]).all()
            assert (df["mean"] <= df["near_upl"]).all() and (df["near_upl"] <= df["upl"]).all()
        assert set(df["rule"]) <= {"", OUT, TR, TWO, SH}
        assert ((df["rule"] == "") == (df["point_type"] == C)).all()


# --- describe_signal ---------------------------------------------------------

def test_describe_shift():
    df = fixed([12, 11, 12, 11, 12, 11, 12], improvement="decrease")
    assert describe_signal(df, "falls with harm") == \
        "falls with harm: 7 months in a row above average (concern)"


def test_describe_outside_and_unit():
    df = xmr(OUTSIDE, improvement="decrease")
    assert describe_signal(df, "falls with harm") == \
        "falls with harm: latest month above the expected range (concern)"
    assert describe_signal(df, "falls", unit="weeks") == \
        "falls: latest week above the expected range (concern)"


def test_describe_trend_and_two_in_three():
    df = fixed([10.5, 11, 12, 13, 14, 15, 15.3])  # 9 -> 15.3 over idx 11-18
    assert describe_signal(df, "near-miss reports") == \
        "near-miss reports: 8 months in a row, each higher than the one before (improvement)"
    df = fixed([14, 11, 14], improvement="neutral")
    assert describe_signal(df, "overdue actions") == \
        "overdue actions: 2 of the last 3 months close to the upper limit (no preferred direction)"


def test_describe_no_signal_and_trial():
    assert describe_signal(xmr(B), "near-miss reports") == \
        "near-miss reports: no signal (common cause variation)"
    assert describe_signal(xmr([1, 2, 3, 4, 5, 6]), "near-miss reports") == \
        "near-miss reports: no signal (common cause variation); trial limits (fewer than 12 points)"
    # latest point common cause even though earlier points were flagged
    assert describe_signal(xmr(OUTSIDE + [10]), "x") == "x: no signal (common cause variation)"
    assert describe_signal(xmr([]), "x") == "x: no data"


def test_rule_descriptions_cover_every_rule():
    assert set(spc.RULES) <= set(spc.RULE_DESCRIPTIONS)
    assert all(isinstance(v, str) and v for v in spc.RULE_DESCRIPTIONS.values())


def test_describe_two_in_three_counts_only_close_points():
    # last three: 14 (close), 16 (outside, not close), 14 (close)
    df = fixed([14, 16, 14])
    assert describe_signal(df, "x") == \
        "x: 2 of the last 3 months close to the upper limit (improvement)"
    # falling trend to the latest point, labelled from the trend's direction
    df = fixed([15.3, 14.5, 14, 13, 12, 11, 10.5], improvement="decrease")
    assert describe_signal(df, "falls") == \
        "falls: 7 months in a row, each lower than the one before (improvement)"
