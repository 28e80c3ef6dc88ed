"""Reading the current (not superseded) rows from the database into pandas.

Summaries, returns and CSV downloads are computed from these frames, never by re-reading
workbooks.  Each frame is one SQL query over all the sites asked for (not one per site), with
columns named as in the contract and typed as ``SiteRecords`` types them: dates as
``datetime64`` (NaT when blank), whole numbers as nullable ``Int64``, numbers as ``float64``,
text (codes, refs and times "HH:MM") as ``str``.  ``site_code`` is the site that sent the
workbook; ``_row`` is the Excel row each record came from.
"""

from __future__ import annotations

import datetime as dt
import io

import pandas as pd
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from workbook_templates.contract import ACTIONS, EXPOSURE_FIELDS, INCIDENTS, SITE_FIELDS, Field, TableSheet
from workbook_templates.text_safety import FORMULA_TRIGGERS, csv_cell  # noqa: F401 - FORMULA_TRIGGERS re-exported

from .models import (
    Action, Area, ExposureMonth, Incident, Site, SiteSheet, Submission, stored_fields,
)

DATE_DTYPE = "datetime64[us]"
PANDAS_TYPES = {"date": DATE_DTYPE, "int": "Int64", "number": "float64"}  # everything else: str
SITE_COLUMNS = ["site_code", "site_name", "area", "setting"]
SITE_SHEET_COLUMNS = ["provider", "cqc_location_id", "commissioners", "people_supported"]
SUBMISSION_COLUMNS = ["submission_id", "received_at", "original_name", "n_incidents", "n_actions", "n_errors",
                      "n_warnings"]


def pandas_dtype(f: Field) -> str:
    return PANDAS_TYPES.get(f.type, "str")


def typed_frame(rows: list, columns: list[str], dtypes: dict[str, str]) -> pd.DataFrame:
    """A frame of ``rows`` (tuples in ``columns`` order) with each column cast to its dtype."""
    raw = pd.DataFrame.from_records(rows, columns=columns) if rows else pd.DataFrame(columns=columns)
    out = {}
    for name in columns:
        col = raw[name]
        dtype = dtypes.get(name, "str")
        if dtype.startswith("datetime64"):
            out[name] = pd.to_datetime(col, utc=dtype.endswith("UTC]")).astype(dtype)
        elif dtype == "str":
            out[name] = col.astype("object").where(col.notna(), None).astype("str")
        else:
            out[name] = col.astype("object").where(col.notna(), None).astype(dtype)
    return pd.DataFrame(out, columns=columns)


def _scope(query: Select, *, area: str | None, site: str | None) -> Select:
    if area is not None:
        query = query.where(Area.name == area)
    if site is not None:
        query = query.where(Site.code == site.strip().upper())
    return query


def _rows_frame(session: Session, model: type, fields: tuple[Field, ...], *, area: str | None, site: str | None,
                site_first: bool) -> pd.DataFrame:
    stored = stored_fields(fields)
    names = [f.name for f in stored if f.name != "site_code"]
    query = (select(Site.code, *(getattr(model, n) for n in names), model.excel_row)
             .join(Submission, model.submission_id == Submission.id)
             .join(Site, model.site_id == Site.id)
             .join(Area, Site.area_id == Area.id)
             .where(Submission.is_current.is_(True))
             .order_by(Site.code, model.excel_row, model.id))
    rows = session.execute(_scope(query, area=area, site=site)).all()
    frame = typed_frame(rows, ["site_code", *names, "_row"],
                        {f.name: pandas_dtype(f) for f in stored} | {"_row": "Int64"})
    order = [f.name for f in stored]
    if "site_code" not in order or site_first:
        order = ["site_code", *[n for n in order if n != "site_code"]]
    return frame[[*order, "_row"]]


def incidents_frame(session: Session, *, area: str | None = None, site: str | None = None) -> pd.DataFrame:
    """Current incident rows: the contract's stored fields in contract order, then ``_row``."""
    return _rows_frame(session, Incident, INCIDENTS.fields, area=area, site=site, site_first=False)


def actions_frame(session: Session, *, area: str | None = None, site: str | None = None) -> pd.DataFrame:
    """Current action rows: ``site_code``, the contract's stored fields in contract order, ``_row``."""
    return _rows_frame(session, Action, ACTIONS.fields, area=area, site=site, site_first=True)


def exposure_frame(session: Session, *, area: str | None = None, site: str | None = None) -> pd.DataFrame:
    """Current exposure months: ``site_code`` and the contract's exposure fields, ``_row``."""
    return _rows_frame(session, ExposureMonth, EXPOSURE_FIELDS, area=area, site=site, site_first=True)


def sites_frame(session: Session, *, area: str | None = None, site: str | None = None) -> pd.DataFrame:
    """One row per registered site (with or without a current submission).

    ``site_code``, ``site_name``, ``area``, ``setting`` are the registry's (``nearmiss admin``);
    provider, CQC location id, commissioners and people supported come from the current
    workbook's Site sheet; then the current submission's id, time, file name and counts.
    """
    sheet_cols = [getattr(SiteSheet, n) for n in SITE_SHEET_COLUMNS]
    query = (select(Site.code, Site.name, Area.name, Site.setting, *sheet_cols,
                    Submission.id, Submission.received_at, Submission.original_name, Submission.n_incidents,
                    Submission.n_actions, Submission.n_errors, Submission.n_warnings)
             .join(Area, Site.area_id == Area.id)
             .outerjoin(Submission, (Submission.site_id == Site.id) & Submission.is_current.is_(True))
             .outerjoin(SiteSheet, SiteSheet.submission_id == Submission.id)
             .order_by(Area.name, Site.code))
    rows = session.execute(_scope(query, area=area, site=site)).all()
    sheet_types = {f.name: pandas_dtype(f) for f in SITE_FIELDS}
    dtypes = {n: sheet_types[n] for n in SITE_SHEET_COLUMNS} | {
        "submission_id": "Int64", "received_at": "datetime64[us, UTC]", "n_incidents": "Int64",
        "n_actions": "Int64", "n_errors": "Int64", "n_warnings": "Int64"}
    rows = [(*r[:9], _utc(r[9]), *r[10:]) for r in rows]
    return typed_frame(rows, [*SITE_COLUMNS, *SITE_SHEET_COLUMNS, *SUBMISSION_COLUMNS], dtypes)


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    if moment is not None and moment.tzinfo is None:  # SQLite returns the stored UTC time naive
        return moment.replace(tzinfo=dt.UTC)
    return moment


def current_frames(session: Session, *, area: str | None = None, site: str | None = None,
                   ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(incidents, actions, exposure, sites)`` of the current submissions, all sites or one area/site.

    ``area`` is an area name, ``site`` a site code.  Four queries in all, whatever the number of sites.
    """
    return (incidents_frame(session, area=area, site=site), actions_frame(session, area=area, site=site),
            exposure_frame(session, area=area, site=site), sites_frame(session, area=area, site=site))


# --- CSV -------------------------------------------------------------------------------------------

# The rule lives in workbook_templates.text_safety; kept under this name for the callers of this module.
neutralise_cell = csv_cell


def with_derived(frame: pd.DataFrame, sheet: TableSheet, *, today: dt.date | None = None) -> pd.DataFrame:
    """The frame with the sheet's derived columns worked out (never read from the workbook), in contract order.

    Incidents get ``risk_score`` and ``risk_band`` (NPSA 5x5), actions ``overdue`` (as of ``today``),
    computed as the reader computes them.  Columns come out as ``site_code`` (first, when it is
    not a contract field) and then the contract's fields.
    """
    from addin.reader import overdue, risk_bands, risk_scores

    out = frame.copy()
    if sheet.key == "incidents":
        out["risk_score"] = risk_scores(out)
        out["risk_band"] = risk_bands(out)
    if sheet.key == "actions":
        late = overdue(out, today or dt.date.today())
        out["overdue"] = pd.Series(["overdue" if x else None for x in late], index=out.index, dtype="str")
    columns = sheet.names if "site_code" in sheet.names else ["site_code", *sheet.names]
    return out[columns]


def frame_to_csv(frame: pd.DataFrame) -> str:
    """CSV text: dates ISO 8601 (yyyy-mm-dd), blanks empty, every text cell and header neutralised (``csv_cell``)."""
    out = pd.DataFrame(index=frame.index)
    for name in frame.columns:
        col = frame[name]
        if pd.api.types.is_datetime64_any_dtype(col):
            out[name] = col.dt.strftime("%Y-%m-%d").astype("object").where(col.notna(), "")
        elif pd.api.types.is_integer_dtype(col) or pd.api.types.is_float_dtype(col):
            out[name] = col
        else:
            out[name] = col.astype("object").where(col.notna(), "").map(neutralise_cell)
    out.columns = [csv_cell(str(name)) for name in frame.columns]
    buffer = io.StringIO()
    out.to_csv(buffer, index=False, lineterminator="\r\n")
    return buffer.getvalue()
