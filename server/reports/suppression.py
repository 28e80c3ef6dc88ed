"""Small-number suppression for copies of a return that leave the contract relationship.

The NHS Digital method (../shared/spec/security.md): 0 stays 0, 1-7 are shown as
``*``, 8 and over are rounded to the nearest 5, and totals must not let a hidden
cell be worked out by subtraction.

``threshold`` (the CLI's ``--suppress-below N``) generalises the first two steps:
counts from 1 to ``threshold - 1`` are hidden and counts of ``threshold`` or more
are rounded to the nearest 5 (8 -> 10, 12 -> 10, 13 -> 15).  The threshold is at
least 3, so a shown count never rounds to 0.
``--suppress`` is the NHS Digital standard, ``threshold = 8`` (1-7 hidden).

Secondary suppression (:func:`suppress_table`).  A table with totals is a set of
*lines*: each row with its row total, each column with its column total, the
totals row with the grand total and the totals column with the grand total.
The numbers of a line add up, so a line with exactly one hidden member would
give that member away (roughly, once rounded; exactly, in an unrounded copy).
The rule, applied until no line has exactly one hidden member:

    hide the smallest non-zero visible member of that line
    (a total is a member like any other; ties go to the first in reading order).

A hidden cell is never 0, so the line's total is non-zero and a candidate
always exists; hidden cells only ever grow, so the loop ends.  Zeros stay
``0``: a zero says nothing about a person.  Totals are the rounded true totals,
never sums of rounded cells, so rows may not add up exactly (the note on every
suppressed return says so).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

MIN_THRESHOLD = 3  # a shown count must round to at least 5, never to 0
NHS_DIGITAL_THRESHOLD = 8  # NHS Digital: 1-7 hidden, 8 and over rounded to the nearest 5
ROUND_TO = 5
HIDDEN = "*"
TOTAL = "Total"


def note(threshold: int) -> str:
    """The sentence printed on a suppressed return."""
    hidden = f"1 to {threshold - 1}"
    return (f"Small numbers are suppressed: counts of {hidden} are shown as {HIDDEN}, other counts are "
            f"rounded to the nearest {ROUND_TO}, and where a total would reveal a hidden count another "
            f"count is hidden too (NHS Digital method). Totals are rounded from the true totals, so they "
            f"may not equal the sum of the rounded counts; rates and percentages are worked out from the "
            f"rounded counts and are hidden where their count is hidden.")


def check_threshold(threshold: int) -> int:
    """The threshold, checked: a whole number of 3 or more (with 2, a shown count of 2 would round to 0)."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)) or threshold < MIN_THRESHOLD:
        raise ValueError(f"the suppression threshold must be a whole number of {MIN_THRESHOLD} or more "
                         f"(counts below it are hidden, the rest rounded to the nearest {ROUND_TO}), "
                         f"got {threshold!r}")
    return int(threshold)


def round5(n: int) -> int:
    """Nearest multiple of 5, halves up (only whole counts reach here, so there are no halves)."""
    return int(math.floor(n / ROUND_TO + 0.5) * ROUND_TO)


def is_hidden(n: int, threshold: int) -> bool:
    return 0 < n < threshold


def suppress_value(n: int, threshold: int = NHS_DIGITAL_THRESHOLD) -> int | str:
    """One count: 0 -> 0, 1..threshold-1 -> "*", otherwise rounded to the nearest 5."""
    check_threshold(threshold)
    n = _count(n)
    if n == 0:
        return 0
    if n < threshold:
        return HIDDEN
    return round5(n)


def secondary_mask(values: pd.DataFrame, hidden: pd.DataFrame, *, row_total: str | None = TOTAL,
                   col_total: str | None = TOTAL) -> pd.DataFrame:
    """``hidden`` (bool frame) grown by the secondary suppression rule over ``values``.

    ``row_total`` names the column holding each row's total and ``col_total`` the
    row (index label) holding each column's total; either may be None when the
    table has no such total.  Without any total nothing can be derived and the
    mask is returned unchanged.
    """
    hidden = hidden.copy().astype(bool)
    lines = list(_lines(values, row_total, col_total))
    if not lines:
        return hidden
    changed = True
    while changed:
        changed = False
        for line in lines:
            if sum(bool(hidden.at[r, c]) for r, c in line) != 1:
                continue
            visible = [(values.at[r, c], i, (r, c)) for i, (r, c) in enumerate(line)
                       if not hidden.at[r, c] and values.at[r, c] != 0]
            if not visible:  # cannot happen for consistent totals; leave the line as it is
                continue
            _, _, cell = min(visible, key=lambda v: (v[0], v[1]))
            hidden.at[cell] = True
            changed = True
    return hidden


def suppress_table(values: pd.DataFrame, threshold: int = NHS_DIGITAL_THRESHOLD, *,
                   row_total: str | None = TOTAL, col_total: str | None = TOTAL) -> pd.DataFrame:
    """A table of whole counts made safe to publish: object frame of ints and ``"*"``.

    Primary suppression hides counts of 1 to ``threshold - 1``; secondary
    suppression (module docstring) hides more until no line of the table, with
    its total, has exactly one hidden member; every shown count is rounded to the
    nearest 5.  ``row_total``/``col_total`` as :func:`secondary_mask`; a name
    not in the frame counts as absent.
    """
    check_threshold(threshold)
    counts = values.map(_count)
    row_total = row_total if row_total in counts.columns else None
    col_total = col_total if col_total in counts.index else None
    hidden = secondary_mask(counts, counts.map(lambda n: is_hidden(n, threshold)),
                            row_total=row_total, col_total=col_total)
    out = counts.map(round5).astype(object)
    out[hidden] = HIDDEN
    return out


def _lines(values: pd.DataFrame, row_total, col_total) -> Iterable[list[tuple]]:
    rows = [r for r in values.index if r != col_total]
    cols = [c for c in values.columns if c != row_total]
    if row_total is not None:
        for r in values.index:  # each row (the totals row too) with its total
            yield [(r, c) for c in cols] + [(r, row_total)]
    if col_total is not None:
        for c in values.columns:  # each column (the totals column too) with its total
            yield [(r, c) for r in rows] + [(col_total, c)]


def _count(n) -> int:
    if n is None or (isinstance(n, float) and math.isnan(n)) or n is pd.NA:
        return 0
    if isinstance(n, bool) or float(n) != int(n) or n < 0:
        raise ValueError(f"only whole counts of 0 or more can be suppressed, got {n!r}")
    return int(n)
