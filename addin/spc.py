"""XmR statistical process control, "Making Data Count" style (see spc.md).

The numbers and special-cause rules follow the R package NHSRplotthedots
(nhs-r-community/NHSRplotthedots, MIT), so a measure read here gets the same
signals a board sees in the NHS-R tooling.  Where this module matches a detail
of that package, the comment names the R file.

Each rule is a small function over a numpy array so it can be tested alone;
:func:`xmr` splits a series into rebase segments, computes limits per segment
and labels every point.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

# --- Constants of the method (one place) -----------------------------------
LIMIT = 2.66                 # process limits: mean +/- LIMIT * MR-bar
NEAR_LIMIT = 2 * (LIMIT / 3)  # "near" limits; same float expression as ptd_spc_standard.R
SCREEN_FACTOR = 3.267        # moving ranges >= this * MR-bar are screened out
RUN_LENGTH = 7               # points in a trend or in a shift
WINDOW = 3                   # two-in-three window
TRIAL_POINTS = 12            # segments shorter than this have trial limits

IMPROVEMENTS = ("increase", "decrease", "neutral")
RULES = ("outside_limits", "trend", "two_in_three", "shift")  # labelling precedence

# Words a manager understands, one per rule (data, not logic).
RULE_DESCRIPTIONS = {
    "outside_limits": "a value outside the expected range (beyond the process limits)",
    "trend": "7 or more points in a row, each higher (or each lower) than the one before",
    "two_in_three": "2 out of 3 points in a row close to the edge of the expected range, "
                    "on the same side of the average",
    "shift": "7 or more points in a row on the same side of the average",
    "": "no signal (common cause variation)",
}

# (label when high, label when low) for each improvement direction.
_LABELS = {
    "increase": ("special_cause_improvement", "special_cause_concern"),
    "decrease": ("special_cause_concern", "special_cause_improvement"),
    "neutral": ("special_cause_neutral_high", "special_cause_neutral_low"),
}
_RULE_NAMES = np.array(["", *RULES])
_POINT_TYPES = {k: np.array(["common_cause", high, low]) for k, (high, low) in _LABELS.items()}
_COLUMNS = ["value", "mean", "lpl", "upl", "point_type", "rule",
            "near_lpl", "near_upl", "segment", "direction", "mr_bar", "trial"]


class Limits(NamedTuple):
    """Centre line, average moving range and limits of one baseline."""

    mean: float
    mr_bar: float
    lpl: float
    upl: float
    near_lpl: float
    near_upl: float


def limits(values, screen_outliers: bool = True) -> Limits:
    """Mean, average moving range and process/near limits of baseline ``values``.

    As in NHSRplotthedots ptd_spc_standard.R: moving ranges are
    ``|x[i] - x[i-1]|``; with screening, MRs ``>= 3.267 * MR-bar`` are dropped
    (kept only if strictly below) and MR-bar is recomputed from the rest.

    Edge cases: one value gives ``mean = value`` and NaN for everything else.
    When every MR is 0 (all values equal) screening is skipped, so the limits
    collapse onto the mean; NHSRplotthedots drops every MR there (0 >= 0) and
    returns NaN limits -- the point labels are the same (all common cause).
    """
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("limits() needs at least one value")
    mean = float(v.mean())
    if v.size < 2:
        return Limits(mean, *([float("nan")] * 5))
    mr = np.abs(np.diff(v))
    mr_bar = float(mr.mean())
    if screen_outliers and mr_bar > 0:
        mr_bar = float(mr[mr < SCREEN_FACTOR * mr_bar].mean())
    return Limits(mean, mr_bar, mean - LIMIT * mr_bar, mean + LIMIT * mr_bar,
                  mean - NEAR_LIMIT * mr_bar, mean + NEAR_LIMIT * mr_bar)


def _run_spans(mask) -> list[tuple[int, int]]:
    """(start, stop) of every maximal run of True in a boolean array."""
    padded = np.concatenate(([0], np.asarray(mask, dtype=int), [0]))
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def outside_limits(values, lpl: float, upl: float) -> np.ndarray:
    """True where a value is strictly above ``upl`` or strictly below ``lpl``.

    NaN limits compare False, so nothing is outside them.
    """
    v = np.asarray(values, dtype=float)
    return (v > upl) | (v < lpl)


def trend(values, length: int = RUN_LENGTH) -> tuple[np.ndarray, np.ndarray]:
    """Points in a run of ``length`` values each strictly above (below) the last.

    Returns ``(mask, direction)``; direction is +1 for a rising trend, -1 for a
    falling one and 0 elsewhere.  An equal value breaks the run.  A turning
    point shared by a rising and a falling trend takes the later trend's
    direction, as NHSRplotthedots ptd_calculate_point_type.R does ("use right
    side").
    """
    v = np.asarray(values, dtype=float)
    mask = np.zeros(v.size, dtype=bool)
    direction = np.zeros(v.size, dtype=int)
    steps = np.diff(v)
    runs = [(start, stop, sign)
            for sign, rising in ((1, steps > 0), (-1, steps < 0))
            for start, stop in _run_spans(rising)
            if stop - start >= length - 1]  # n points make n - 1 steps
    for start, stop, sign in sorted(runs):   # later runs overwrite a shared point
        mask[start:stop + 1] = True
        direction[start:stop + 1] = sign
    return mask, direction


def two_in_three(values, mean, near_lpl, near_upl, lpl, upl) -> np.ndarray:
    """Close points of any 3 consecutive points on one side with >= 2 close.

    "Close" means beyond a near limit but not outside the process limits
    (``near_upl < x <= upl`` or ``lpl <= x < near_lpl``), as ``close_to_limits``
    in NHSRplotthedots ptd_spc_standard.R.  All three points must be strictly
    on the same side of the mean; only the close ones are flagged
    (ptd_part_of_two_in_three in ptd_calculate_point_type.R).
    """
    v = np.asarray(values, dtype=float)
    close = ~outside_limits(v, lpl, upl) & ((v > near_upl) | (v < near_lpl))
    flagged = np.zeros(v.size, dtype=bool)
    if v.size < WINDOW:
        return flagged
    side, near = np.sign(v - mean), close.astype(int)
    if WINDOW == 3:  # the same sums as the sliding windows below, without their overhead (1,600 charts)
        side_sum = side[:-2] + side[1:-1] + side[2:]
        close_sum = near[:-2] + near[1:-1] + near[2:]
    else:
        side_sum = sliding_window_view(side, WINDOW).sum(axis=1)
        close_sum = sliding_window_view(near, WINDOW).sum(axis=1)
    for start in np.flatnonzero((np.abs(side_sum) == WINDOW) & (close_sum >= 2)):
        flagged[start:start + WINDOW] |= close[start:start + WINDOW]
    return flagged


def shift(values, mean: float, length: int = RUN_LENGTH) -> np.ndarray:
    """Points in a run of ``length`` or more strictly on one side of the mean.

    A point exactly on the mean is on neither side, so it breaks the run.
    """
    side = np.sign(np.asarray(values, dtype=float) - mean)
    mask = np.zeros(side.size, dtype=bool)
    for sign in (1, -1):
        for start, stop in _run_spans(side == sign):
            if stop - start >= length:
                mask[start:stop] = True
    return mask


def _segment(values: np.ndarray, screen_outliers, fix_after, improvement) -> dict:
    """Limits, rule and point type for one rebase segment."""
    baseline = values if fix_after is None else values[:fix_after]
    lim = limits(baseline, screen_outliers)
    out = outside_limits(values, lim.lpl, lim.upl)
    in_trend, trend_dir = trend(values)
    close = two_in_three(values, lim.mean, lim.near_lpl, lim.near_upl, lim.lpl, lim.upl)
    in_shift = shift(values, lim.mean)
    code = np.select([out, in_trend, close, in_shift], [1, 2, 3, 4], default=0)
    rule = _RULE_NAMES[code]
    # Trend points take the trend's direction; every other flagged point is
    # strictly above or below the mean (ptd_point_type in the R package).
    direction = np.where(rule == "", 0,
                         np.where(in_trend & ~out, trend_dir, np.sign(values - lim.mean)))
    point_type = _POINT_TYPES[improvement][np.where(code == 0, 0, np.where(direction > 0, 1, 2))]
    n = values.size
    columns = {name: np.full(n, getattr(lim, name)) for name in Limits._fields}
    return {**columns, "point_type": point_type, "rule": rule,
            "direction": direction.astype(int), "trial": np.full(n, n < TRIAL_POINTS)}


def _marked_runs(mask: np.ndarray, segment: np.ndarray, min_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Points in runs of True (within one segment) at least ``min_length`` long, and the runs' first points.

    Runs never cross a segment border: a False is put between segments before the runs are found.
    """
    n = mask.size
    slot = np.arange(n) + segment  # one empty slot before each segment after the first
    spread = np.zeros(n + (int(segment[-1]) if n else 0), dtype=bool)
    spread[slot] = mask
    marked = np.zeros(spread.size + 1, dtype=int)
    first = np.zeros(spread.size, dtype=bool)
    for start, stop in _run_spans(spread):
        if stop - start >= min_length:
            marked[start] += 1
            marked[stop] -= 1
            first[start] = True
    return np.cumsum(marked)[:-1][slot] > 0, first[slot]


def _segments_at_once(values: np.ndarray, bounds: list[int], screen_outliers: bool, improvement: str) -> dict:
    """``_segment`` of every rebase segment at once (no ``fix_after_n_points``): the same columns.

    Limits come from :func:`limits` segment by segment; the rules run once over all points, with
    runs, trends and windows kept within their segment, so a summary's 1,600 charts cost about
    what one long chart costs.
    """
    n = values.size
    sizes = np.diff(bounds)
    segment = np.repeat(np.arange(sizes.size), sizes)
    lims = [limits(values[lo:hi], screen_outliers) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
    kept = sizes[sizes > 0]
    per_point = {name: np.repeat(np.array([getattr(lim, name) for lim in lims], dtype=float), kept)
                 for name in Limits._fields}
    seg_of_point = np.repeat(np.arange(kept.size), kept)  # 0.. over non-empty segments
    mean, lpl, upl = per_point["mean"], per_point["lpl"], per_point["upl"]
    out = (values > upl) | (values < lpl)
    # trend: runs of steps within a segment, RUN_LENGTH points make RUN_LENGTH - 1 steps
    steps = np.diff(values)
    same = seg_of_point[1:] == seg_of_point[:-1]
    trend_mask = np.zeros(n, dtype=bool)
    trend_dir = np.zeros(n, dtype=int)
    starts_here = {}
    for sign, rising in ((1, (steps > 0) & same), (-1, (steps < 0) & same)):
        step_in, step_first = _marked_runs(rising, seg_of_point[1:], RUN_LENGTH - 1) if n > 1 else (
            np.zeros(0, dtype=bool), np.zeros(0, dtype=bool))
        points = np.zeros(n, dtype=bool)
        points[:-1] |= step_in  # a step i joins points i and i + 1
        points[1:] |= step_in
        first = np.zeros(n, dtype=bool)
        first[:-1] = step_first
        starts_here[sign] = first
        trend_mask |= points
        trend_dir = np.where(points & (trend_dir == 0), sign, trend_dir)
    # a point shared by a rising and a falling trend takes the later one's (the one starting there)
    shared = trend_mask & (trend_dir != 0)
    trend_dir = np.where(shared & starts_here[-1], -1, np.where(shared & starts_here[1], 1, trend_dir))
    # two in three
    close = ~out & ((values > per_point["near_upl"]) | (values < per_point["near_lpl"]))
    side = np.sign(values - mean)
    close_flag = np.zeros(n, dtype=bool)
    if n >= WINDOW:
        whole = seg_of_point[:-2] == seg_of_point[2:]
        side_sum = side[:-2] + side[1:-1] + side[2:]
        near = close.astype(int)
        close_sum = near[:-2] + near[1:-1] + near[2:]
        for start in np.flatnonzero(whole & (np.abs(side_sum) == WINDOW) & (close_sum >= 2)):
            close_flag[start:start + WINDOW] |= close[start:start + WINDOW]
    # shift
    in_shift = np.zeros(n, dtype=bool)
    for sign in (1, -1):
        in_shift |= _marked_runs(side == sign, seg_of_point, RUN_LENGTH)[0]
    code = np.select([out, trend_mask, close_flag, in_shift], [1, 2, 3, 4], default=0)
    rule = _RULE_NAMES[code]
    direction = np.where(rule == "", 0, np.where(trend_mask & ~out, trend_dir, np.sign(values - mean)))
    point_type = _POINT_TYPES[improvement][np.where(code == 0, 0, np.where(direction > 0, 1, 2))]
    trial = np.repeat(kept < TRIAL_POINTS, kept)
    return {**per_point, "point_type": point_type, "rule": rule, "direction": direction.astype(int),
            "trial": trial, "value": values, "segment": segment}


def _as_array(values) -> tuple[np.ndarray, pd.Index]:
    if np.ndim(values) != 1:
        raise ValueError("values must be one-dimensional (a list, array or Series)")
    series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    try:
        arr = series.to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"values must be numeric: {exc}") from None
    missing = np.flatnonzero(~np.isfinite(arr))
    if missing.size:
        raise ValueError("values must not be missing or infinite; found at positions "
                         f"{missing[:10].tolist()} -- fill or drop those periods first")
    return arr, series.index if isinstance(values, pd.Series) else pd.RangeIndex(arr.size)


def _validate_options(n, improvement, screen_outliers, fix_after_n_points, rebase_at) -> list[int]:
    if improvement not in IMPROVEMENTS:
        raise ValueError(f"improvement must be one of {IMPROVEMENTS}, got {improvement!r}")
    if not isinstance(screen_outliers, (bool, np.bool_)):
        raise ValueError(f"screen_outliers must be True or False, got {screen_outliers!r}")
    if fix_after_n_points is not None:
        if isinstance(fix_after_n_points, (bool, np.bool_)) or not isinstance(
                fix_after_n_points, (int, np.integer)) or fix_after_n_points < 2:
            raise ValueError("fix_after_n_points must be None or an integer >= 2, "
                             f"got {fix_after_n_points!r}")
    positions = [] if rebase_at is None else list(rebase_at)
    for p in positions:
        if isinstance(p, (bool, np.bool_)) or not isinstance(p, (int, np.integer)):
            raise ValueError(f"rebase_at positions must be integers, got {p!r}")
        if not 0 < p < n:
            raise ValueError(f"rebase_at position {p} is out of range: a new segment "
                             f"must start at a position from 1 to {n - 1}")
    if any(b <= a for a, b in zip(positions, positions[1:])):
        raise ValueError(f"rebase_at positions must be strictly increasing, got {positions}")
    return [int(p) for p in positions]


def xmr(values, *, improvement: str = "increase", screen_outliers: bool = True,
        fix_after_n_points: int | None = None, rebase_at=None) -> pd.DataFrame:
    """XmR chart of ``values`` with one labelled row per value, in input order.

    Columns: ``value, mean, lpl, upl, point_type, rule`` then ``near_lpl,
    near_upl, segment`` (0-based rebase segment), ``direction`` (+1 high, -1
    low, 0 common cause), ``mr_bar`` and ``trial`` (True in segments of fewer
    than 12 points).  A Series keeps its index.

    - ``improvement``: "increase" (higher is better), "decrease" or "neutral".
    - ``fix_after_n_points``: limits come from the first N points of each
      segment; later points are still labelled against them.
    - ``rebase_at``: 0-based positions where a new segment starts; limits are
      computed per segment and runs/trends never cross a segment border.
    - ``rule`` is the first rule that fired in the order outside_limits, trend,
      two_in_three, shift (the order of NHSRplotthedots'
      ptd_calculate_point_type.R), "" when none did.

    Missing values (None/NaN/inf) raise ValueError rather than being skipped:
    a gap would silently join the points either side into one moving range
    (NHSRplotthedots drops NAs from the mean and MRs instead).  A one-point
    segment has NaN limits and is common cause.  Other differences from
    NHSRplotthedots: all-equal values give limits on the mean rather than NaN
    (see :func:`limits`); a trial-limits flag is per segment (n < 12), as
    ptd_add_short_group_warnings.R.
    """
    arr, index = _as_array(values)
    starts = _validate_options(arr.size, improvement, screen_outliers,
                               fix_after_n_points, rebase_at)
    bounds = [0, *starts, arr.size]
    if arr.size and fix_after_n_points is None:  # every segment at once (the same numbers and labels)
        data = _segments_at_once(arr, bounds, screen_outliers, improvement)
        data = {c: data[c] for c in _COLUMNS}
    else:
        parts = []
        for seg, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            if hi > lo:
                part = _segment(arr[lo:hi], screen_outliers, fix_after_n_points, improvement)
                part.update(value=arr[lo:hi], segment=np.full(hi - lo, seg))
                parts.append(part)
        if not parts:
            return pd.DataFrame({c: [] for c in _COLUMNS}, index=index)
        data = {c: np.concatenate([p[c] for p in parts]) for c in _COLUMNS}
    data["point_type"] = data["point_type"].astype(str)
    data["rule"] = data["rule"].astype(str)
    return pd.DataFrame(data, index=index)[_COLUMNS]


def _trailing(flags) -> int:
    """How many True values end the sequence."""
    flags = np.asarray(flags, dtype=bool)[::-1]
    return flags.size if flags.all() else int(np.argmin(flags))


def describe_signal(df: pd.DataFrame, measure_label: str, *, unit: str = "months") -> str:
    """One plain-English line about the latest point of an :func:`xmr` frame.

    e.g. "falls with harm: 7 months in a row above average (concern)".  Counts
    run back from the latest point within its segment; "; trial limits (fewer
    than 12 points)" is added when the latest segment is that short.
    """
    if df.empty:
        return f"{measure_label}: no data"
    return describe_arrays({c: df[c].to_numpy() for c in _DESCRIBE_COLUMNS}, measure_label, unit=unit)


_DESCRIBE_COLUMNS = ("value", "segment", "trial", "rule", "direction", "upl", "lpl", "mean", "near_upl",
                     "near_lpl", "point_type")


def describe_arrays(chart, measure_label: str, *, unit: str = "months") -> str:
    """:func:`describe_signal` of an :func:`xmr` chart given as arrays (column -> array, in order).

    The same words; for many charts at once (a summary of 200 sites has 1,600) this skips
    building a DataFrame per chart.
    """
    segment = chart["segment"]
    n = len(segment)
    if n == 0:
        return f"{measure_label}: no data"
    last_i = n - 1
    in_segment = np.asarray(segment) == segment[last_i]
    one = unit[:-1] if unit.endswith("s") else unit
    note = f"; trial limits (fewer than {TRIAL_POINTS} points)" if chart["trial"][last_i] else ""
    rule = chart["rule"][last_i]
    if rule == "":
        return f"{measure_label}: no signal (common cause variation){note}"
    v = np.asarray(chart["value"], dtype=float)[in_segment]
    high = chart["direction"][last_i] > 0
    side = "above" if high else "below"
    if rule == "outside_limits":
        n_out = _trailing(v > chart["upl"][last_i]) if high else _trailing(v < chart["lpl"][last_i])
        what = (f"latest {one} {side} the expected range" if n_out == 1
                else f"{n_out} {unit} in a row {side} the expected range")
    elif rule == "trend":
        n_run = _trailing(np.diff(v) > 0 if high else np.diff(v) < 0) + 1
        what = f"{n_run} {unit} in a row, each {'higher' if high else 'lower'} than the one before"
    elif rule == "two_in_three":
        tail = v[-WINDOW:]
        near = ((tail > chart["near_upl"][last_i]) & (tail <= chart["upl"][last_i]) if high
                else (tail < chart["near_lpl"][last_i]) & (tail >= chart["lpl"][last_i]))
        what = (f"{int(near.sum())} of the last {WINDOW} {unit} close to the "
                f"{'upper' if high else 'lower'} limit")
    else:
        n_side = _trailing(v > chart["mean"][last_i] if high else v < chart["mean"][last_i])
        what = f"{n_side} {unit} in a row {side} average"
    verdict = str(chart["point_type"][last_i]).removeprefix("special_cause_")
    verdict = verdict if verdict in ("improvement", "concern") else "no preferred direction"
    return f"{measure_label}: {what} ({verdict}){note}"
