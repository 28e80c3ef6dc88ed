"""XmR statistical process control, "Making Data Count" style (see spc.md).

The numbers and special-cause rules follow the R package NHSRplotthedots
(nhs-r-community/NHSRplotthedots, MIT), so a measure read here gets the same
signals a board sees in the NHS-R tooling.  Where this module matches a detail
of that package, the comment names the R file.

Each rule is a small function over a numpy array so it can be tested alone;
given a segment id per point it checks many segments (a summary's charts of
every site) in one pass, never across a segment border.  :func:`xmr` splits a
series into rebase segments, computes limits per segment and labels every point.
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
    lim = _segment_limits(v, np.array([0]), np.array([v.size]), screen_outliers)
    return Limits(*(float(column[0]) for column in lim))


def _segment_limits(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray, screen_outliers: bool) -> Limits:
    """:func:`limits` of the baselines ``values[start:start + length]`` (each length >= 1), as arrays.

    Baselines of one length are stacked into a matrix and reduced along its rows: numpy sums a
    row as it sums the same values alone, so every mean is the one ``limits`` of that baseline
    alone gives, to the last bit.
    """
    mean = np.empty(lengths.size)
    mr_bar = np.full(lengths.size, np.nan)
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        block = values[starts[rows, None] + np.arange(length)]
        mean[rows] = block.mean(axis=1)
        if length > 1:
            mr_bar[rows] = _mr_bar(np.abs(np.diff(block, axis=1)), screen_outliers)
    return Limits(mean, mr_bar, mean - LIMIT * mr_bar, mean + LIMIT * mr_bar,
                  mean - NEAR_LIMIT * mr_bar, mean + NEAR_LIMIT * mr_bar)


def _mr_bar(mr: np.ndarray, screen_outliers: bool) -> np.ndarray:
    """MR-bar of each row of moving ranges, screened: the mean of the MRs below 3.267 x their mean.

    A row whose MRs are all 0 is left unscreened (see :func:`limits`); a row that drops some
    has its kept MRs packed to the front and averaged with the other rows keeping as many.
    """
    bar = mr.mean(axis=1)
    if not screen_outliers:
        return bar
    keep = mr < SCREEN_FACTOR * bar[:, None]
    kept = keep.sum(axis=1)
    redo = (bar > 0) & (kept < mr.shape[1])
    if redo.any():
        packed = np.take_along_axis(mr, np.argsort(~keep, axis=1, kind="stable"), axis=1)
        for count in np.unique(kept[redo]):
            rows = redo & (kept == count)
            bar[rows] = np.ascontiguousarray(packed[rows, :count]).mean(axis=1)
    return bar


def _runs(mask: np.ndarray, segment: np.ndarray, min_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Points in runs of True at least ``min_length`` long, and the first point of each such run.

    A run never crosses from one segment (``segment`` ids, one per point) into the next.
    """
    first = mask.copy()
    first[1:] &= ~mask[:-1] | (segment[1:] != segment[:-1])
    run = np.cumsum(first) - 1  # the run of each True point
    length = np.bincount(run[mask], minlength=int(first.sum()))
    in_run = mask.copy()
    in_run[mask] = length[run[mask]] >= min_length
    return in_run, first & in_run


def _segments_of(values: np.ndarray, segment) -> np.ndarray:
    return np.zeros(values.size, dtype=np.int64) if segment is None else np.asarray(segment)


def outside_limits(values, lpl, upl) -> np.ndarray:
    """True where a value is strictly above ``upl`` or strictly below ``lpl`` (scalars or one per point).

    NaN limits compare False, so nothing is outside them.
    """
    v = np.asarray(values, dtype=float)
    return (v > upl) | (v < lpl)


def trend(values, length: int = RUN_LENGTH, *, segment=None) -> tuple[np.ndarray, np.ndarray]:
    """Points in a run of ``length`` values each strictly above (below) the last.

    Returns ``(mask, direction)``; direction is +1 for a rising trend, -1 for a
    falling one and 0 elsewhere.  An equal value breaks the run.  A turning
    point shared by a rising and a falling trend takes the later trend's
    direction, as NHSRplotthedots ptd_calculate_point_type.R does ("use right
    side").  ``segment`` (an id per point) keeps each trend within its segment.
    """
    v = np.asarray(values, dtype=float)
    seg = _segments_of(v, segment)
    steps = np.diff(v)
    same = seg[1:] == seg[:-1]
    mask = np.zeros(v.size, dtype=bool)
    direction = np.zeros(v.size, dtype=int)
    for sign, moving in ((1, (steps > 0) & same), (-1, (steps < 0) & same)):
        in_run, first = _runs(moving, seg[1:], length - 1)  # n points make n - 1 steps
        points = np.zeros(v.size, dtype=bool)
        points[:-1] |= in_run  # step i joins points i and i + 1
        points[1:] |= in_run
        starts = np.zeros(v.size, dtype=bool)
        starts[:-1] = first
        direction[points & ~mask] = sign
        direction[points & mask & starts] = sign  # a shared turning point: the run starting there
        mask |= points
    return mask, direction


def two_in_three(values, mean, near_lpl, near_upl, lpl, upl, *, segment=None) -> np.ndarray:
    """Close points of any 3 consecutive points on one side with >= 2 close.

    "Close" means beyond a near limit but not outside the process limits
    (``near_upl < x <= upl`` or ``lpl <= x < near_lpl``), as ``close_to_limits``
    in NHSRplotthedots ptd_spc_standard.R.  All three points must be strictly
    on the same side of the mean, and in one ``segment``; only the close ones are
    flagged (ptd_part_of_two_in_three in ptd_calculate_point_type.R).  The mean
    and limits are scalars or one per point.
    """
    v = np.asarray(values, dtype=float)
    close = ~outside_limits(v, lpl, upl) & ((v > near_upl) | (v < near_lpl))
    if v.size < WINDOW:
        return np.zeros(v.size, dtype=bool)
    seg = _segments_of(v, segment)
    side_sum = sliding_window_view(np.sign(v - mean), WINDOW).sum(axis=1)
    close_sum = sliding_window_view(close.astype(int), WINDOW).sum(axis=1)
    window = (seg[:1 - WINDOW] == seg[WINDOW - 1:]) & (np.abs(side_sum) == WINDOW) & (close_sum >= 2)
    covered = np.zeros(v.size, dtype=bool)
    for offset in range(WINDOW):  # each point of a qualifying window
        covered[offset:v.size - WINDOW + 1 + offset] |= window
    return close & covered


def shift(values, mean, length: int = RUN_LENGTH, *, segment=None) -> np.ndarray:
    """Points in a run of ``length`` or more strictly on one side of the mean (a scalar or one per point).

    A point exactly on the mean is on neither side, so it breaks the run; so does
    a new ``segment``.
    """
    v = np.asarray(values, dtype=float)
    seg = _segments_of(v, segment)
    side = np.sign(v - mean)
    return _runs(side == 1, seg, length)[0] | _runs(side == -1, seg, length)[0]


def _chart(values: np.ndarray, bounds: list[int], screen_outliers: bool, fix_after: int | None,
           improvement: str) -> dict:
    """Limits, rules and labels of every rebase segment at once (the columns of :func:`xmr`).

    Limits come segment by segment (from each one's first ``fix_after`` points, or all); the
    rules run once over all points with their segment ids, so runs, trends and windows stay
    within a segment and a summary's 1,600 charts cost about what one long chart costs.
    """
    sizes = np.diff(bounds)
    kept = sizes > 0  # (every segment has points; only no values at all make one of none)
    starts, sizes = np.asarray(bounds[:-1])[kept], sizes[kept]
    baseline = sizes if fix_after is None else np.minimum(sizes, fix_after)
    lim = _segment_limits(values, starts, baseline, screen_outliers)
    per_point = {name: np.repeat(getattr(lim, name), sizes) for name in Limits._fields}
    seg = np.repeat(np.arange(sizes.size), sizes)
    mean = per_point["mean"]
    out = outside_limits(values, per_point["lpl"], per_point["upl"])
    in_trend, trend_dir = trend(values, segment=seg)
    close = two_in_three(values, mean, per_point["near_lpl"], per_point["near_upl"], per_point["lpl"],
                         per_point["upl"], segment=seg)
    in_shift = shift(values, mean, segment=seg)
    code = np.select([out, in_trend, close, in_shift], [1, 2, 3, 4], default=0)
    # Trend points take the trend's direction; every other flagged point is
    # strictly above or below the mean (ptd_point_type in the R package).
    direction = np.where(code == 0, 0, np.where(in_trend & ~out, trend_dir, np.sign(values - mean))).astype(int)
    point_type = _POINT_TYPES[improvement][np.where(code == 0, 0, np.where(direction > 0, 1, 2))]
    return {**per_point, "point_type": point_type, "rule": _RULE_NAMES[code], "direction": direction,
            "trial": np.repeat(sizes < TRIAL_POINTS, sizes), "value": values, "segment": seg}


def _as_array(values) -> tuple[np.ndarray, pd.Index]:
    if np.ndim(values) != 1:
        raise ValueError("values must be one-dimensional (a list, array or Series)")
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":  # (many charts at once: no object Series)
        arr, index = values.astype(float, copy=False), None
    else:
        series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
        try:
            arr = series.to_numpy(dtype=float, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"values must be numeric: {exc}") from None
        index = series.index if isinstance(values, pd.Series) else None
    missing = np.flatnonzero(~np.isfinite(arr))
    if missing.size:
        raise ValueError("values must not be missing or infinite; found at positions "
                         f"{missing[:10].tolist()} -- fill or drop those periods first")
    return arr, pd.RangeIndex(arr.size) if index is None else index


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
    columns = _columns(arr, improvement, screen_outliers, fix_after_n_points, rebase_at)
    return pd.DataFrame(columns if arr.size else {c: [] for c in _COLUMNS}, index=index)


def xmr_columns(values, *, improvement: str = "increase", screen_outliers: bool = True,
                fix_after_n_points: int | None = None, rebase_at=None) -> dict[str, np.ndarray]:
    """:func:`xmr`'s columns (in its order) as numpy arrays: the same numbers and labels without a
    DataFrame, for a summary's many charts at once."""
    return _columns(_as_array(values)[0], improvement, screen_outliers, fix_after_n_points, rebase_at)


def _columns(arr: np.ndarray, improvement, screen_outliers, fix_after_n_points, rebase_at) -> dict[str, np.ndarray]:
    """The options checked, then :func:`xmr`'s columns of the values ``arr`` (from :func:`_as_array`)."""
    starts = _validate_options(arr.size, improvement, screen_outliers, fix_after_n_points, rebase_at)
    chart = _chart(arr, [0, *starts, arr.size], screen_outliers, fix_after_n_points, improvement)
    return {c: chart[c] for c in _COLUMNS}


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
