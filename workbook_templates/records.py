"""The plain-data form of one site workbook, shared by the builder and the reader."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .contract import ACTIONS, EXPOSURE_FIELDS, INCIDENTS, SITE_FIELDS


@dataclass
class SiteRecords:
    """One site's log: the Site sheet, the exposure table, the log and the action tracker.

    Frames use the contract's field names as columns.  Dates are pandas
    Timestamps (NaT when blank), integers are nullable ``Int64``, text is
    ``str`` or missing.  The reader adds ``_row``: the Excel row each record came from.
    """

    site: dict = field(default_factory=dict)
    incidents: pd.DataFrame = field(default_factory=lambda: empty_frame("incidents"))
    actions: pd.DataFrame = field(default_factory=lambda: empty_frame("actions"))
    exposure: pd.DataFrame = field(default_factory=lambda: empty_frame("exposure"))


def field_names(kind: str) -> list[str]:
    if kind == "incidents":
        return [f.name for f in INCIDENTS.input_fields]
    if kind == "actions":
        return [f.name for f in ACTIONS.input_fields]
    if kind == "exposure":
        return [f.name for f in EXPOSURE_FIELDS]
    if kind == "site":
        return [f.name for f in SITE_FIELDS]
    raise KeyError(kind)


def empty_frame(kind: str) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype="object") for name in field_names(kind)})
