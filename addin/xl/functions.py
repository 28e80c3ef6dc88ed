"""The plain functions behind the worksheet functions (:mod:`.udfs`), tested without Excel.

They take what Excel hands a UDF (xlwings on Windows with ``ndim=2``): a list of rows of
cell values, ``None`` for a blank cell, ``float`` for every number, ``datetime`` for a
date-formatted cell, ``str`` for text and ``bool`` for TRUE/FALSE.  They return what a
cell or a spilled range can show: numbers, text, ``""`` for nothing; never NaN.

- :func:`spc_table`: the XmR table of a series (``addin.spc.xmr``) with a header row;
- :func:`check_row`: the row-level findings of one Log row (``addin.validate.validate_records``);
- :func:`rate`: a count per 1,000 exposure units (``addin.trends.rates``).

Bad input raises ``ValueError`` with a message for the person who typed the formula; the UDF
wrappers show that message in the cell.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

SPC_HEADER = ["value", "mean", "lpl", "upl", "point_type", "rule"]
# Findings that need other rows or sheets (duplicate refs, the Site sheet, linked actions):
# one row on its own cannot be judged on them, so NEARMISS_CHECK leaves them to Check log.
CROSS_ROW_RULES = frozenset({"NM003", "NM004", "NM022"})
OK = "OK"


def as_rows(value: Any) -> list[list[Any]]:
    """Whatever Excel passed (a scalar, a 1-D or a 2-D list) as a list of rows."""
    if not isinstance(value, (list, tuple)):
        return [[value]]
    if not value:
        return []
    if not isinstance(value[0], (list, tuple)):
        return [list(value)]
    return [list(r) for r in value]


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip()) or (isinstance(v, float) and math.isnan(v))


def series_values(values: Any) -> list[float]:
    """A column or a row of numbers as a list of floats; blank cells at the end are ignored.

    A blank or text cell among the numbers is a ValueError naming its position (1-based),
    so a gap never silently joins two months into one moving range.
    """
    rows = as_rows(values)
    if len(rows) == 1:
        cells = rows[0]
    elif all(len(r) == 1 for r in rows):
        cells = [r[0] for r in rows]
    else:
        raise ValueError("give one column or one row of numbers")
    while cells and _blank(cells[-1]):
        cells = cells[:-1]
    out = []
    for i, v in enumerate(cells, start=1):
        if _blank(v):
            raise ValueError(f"value {i} is blank; fill it (0 if nothing happened) or shorten the range")
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"value {i} is not a number: {str(v)[:30]!r}")
        if not math.isfinite(float(v)):
            raise ValueError(f"value {i} is not a finite number")
        out.append(float(v))
    if not out:
        raise ValueError("the range holds no numbers")
    return out


def _cell(v: Any) -> Any:
    """A table value as a cell shows it: NaN as "", numpy scalars as Python."""
    if hasattr(v, "item") and not isinstance(v, str):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return ""
    return v


def spc_table(values: Any, improvement: Any = "neutral") -> list[list[Any]]:
    """``NEARMISS_SPC``: header row then one row per point (value, mean, lpl, upl, point_type, rule).

    ``improvement`` is "increase", "decrease" or "neutral" (blank means neutral).  Limits
    that do not exist (a one-point series) are "".
    """
    from addin.spc import IMPROVEMENTS, xmr

    direction = "neutral" if _blank(improvement) else str(improvement).strip().lower()
    if direction not in IMPROVEMENTS:
        raise ValueError(f"improvement must be one of {', '.join(IMPROVEMENTS)}, not {str(improvement)[:20]!r}")
    chart = xmr(series_values(values), improvement=direction)
    body = chart[SPC_HEADER].itertuples(index=False, name=None)
    return [list(SPC_HEADER)] + [[_cell(v) for v in row] for row in body]


def rate(count: Any, exposure: Any) -> float | str:
    """``NEARMISS_RATE``: ``count`` per 1,000 ``exposure`` units; "" when exposure is blank, 0 or less.

    A blank count is "" too (nothing to show yet).
    """
    import pandas as pd

    from addin.trends import PER, rates

    if _blank(exposure) or _blank(count):
        return ""
    for name, v in (("count", count), ("exposure", exposure)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            raise ValueError(f"{name} must be a number, not {str(v)[:30]!r}")
    if count < 0:
        raise ValueError("count must not be negative")
    value = rates(pd.Series([float(count)]), pd.Series([float(exposure)]), per=PER).iloc[0]
    return "" if not math.isfinite(value) else float(value)


def row_record(row: Any):
    """One Log row (cells in the contract's column order, derived columns included) as SiteRecords.

    The Site sheet is left empty on purpose: the row is judged on its own.
    """
    import pandas as pd

    from workbook_templates.contract import INCIDENTS
    from workbook_templates.records import SiteRecords

    rows = as_rows(row)
    if len(rows) != 1:
        raise ValueError("give one Log row (a range one row high)")
    cells = rows[0]
    expected = len(INCIDENTS.fields)
    if len(cells) != expected:
        last = INCIDENTS.column_letter(INCIDENTS.fields[-1].name)
        raise ValueError(f"give the whole Log row, columns A to {last} ({expected} cells); got {len(cells)}")
    raw = {f.name: (None if _blank(v) else v) for f, v in zip(INCIDENTS.fields, cells) if f.type != "derived"}
    if all(v is None for v in raw.values()):
        return None
    frame = pd.DataFrame([raw], dtype=object)
    return SiteRecords(site={}, incidents=frame)


def check_row(row: Any, today: dt.date | None = None) -> list[str]:
    """``NEARMISS_CHECK``: "NM0xx: message" for each row-level finding of one Log row, or ["OK"].

    A blank row gives [""] (so the formula can be filled down past the last record).
    Rules that need other rows or sheets (:data:`CROSS_ROW_RULES`) are left to Check log.
    """
    from addin.validate import validate_records

    records = row_record(row)
    if records is None:
        return [""]
    found = validate_records(records, today=today)
    lines = [f"{f.rule}: {f.message}" for f in found
             if f.sheet == "Log" and f.rule not in CROSS_ROW_RULES]
    return lines or [OK]


def column(lines: Sequence[Any]) -> list[list[Any]]:
    """A list as one column for Excel to spill downwards."""
    return [[v] for v in lines]


def error_text(function: str, exc: Exception) -> str:
    return f"{function}: {exc}"
