"""nearmiss worksheet functions (xlwings UDFs; Windows Excel only, as all xlwings UDFs).

    =NEARMISS_SPC(B2:B25, "decrease")   XmR table, spilled: header + value, mean, lpl, upl, point_type, rule
    =NEARMISS_CHECK(Log!A14:AN14)       the row's findings, one per line ("NM020: ..."), or OK
    =NEARMISS_RATE(D5, G5)              count per 1,000 exposure units; "" when exposure is blank or 0

Each is a thin wrapper over :mod:`addin.xl.functions` (tested on Linux, where the xlwings
decorators pass the function through unchanged and no converter runs).  So the wrappers take
exactly what Excel passes with ``ndim=2`` and convert nothing themselves.  A bad argument
shows as text in the cell ("NEARMISS_SPC: value 3 is not a number: 'n/a'") rather than a
Python traceback.

Settings: ``UDF Modules`` = ``addin.xl.udfs`` (the add-in's conf sheet has it), then
"Import Functions" (see docs/excel-addin.md).
"""

from __future__ import annotations

import datetime as dt

import xlwings as xw

from . import functions


@xw.func
@xw.arg("values", ndim=2, doc="One column or row of numbers, oldest first (e.g. a count per month).")
@xw.arg("improvement", doc='"increase" (higher is better), "decrease" or "neutral" (default).')
def NEARMISS_SPC(values, improvement="neutral"):
    """XmR chart table ("Making Data Count"): value, mean, lpl, upl, point_type, rule for each point."""
    try:
        return functions.spc_table(values, improvement)
    except ValueError as exc:
        return [[functions.error_text("NEARMISS_SPC", exc)]]


@xw.func
@xw.arg("row", ndim=2, doc="One whole row of the Log sheet, columns A to AN.")
def NEARMISS_CHECK(row):
    """The checks for one Log row: one line per finding ("NM020: ..."), or OK."""
    try:
        return functions.column(functions.check_row(row, today=dt.date.today()))
    except ValueError as exc:
        return [[functions.error_text("NEARMISS_CHECK", exc)]]


@xw.func
@xw.arg("count", doc="Number of reports (or incidents) in the period.")
@xw.arg("exposure", doc="Occupied bed days or care hours in the same period.")
def NEARMISS_RATE(count, exposure):
    """Reports per 1,000 exposure units (bed days or care hours); blank when exposure is blank or 0."""
    try:
        return functions.rate(count, exposure)
    except ValueError as exc:
        return functions.error_text("NEARMISS_RATE", exc)
