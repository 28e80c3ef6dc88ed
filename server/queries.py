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
from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
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
    values = list(zip(*rows)) if rows else [()] * len(columns)
    return typed_columns(dict(zip(columns, map(list, values))), dtypes)


def typed_columns(data: Mapping[str, list], dtypes: dict[str, str]) -> pd.DataFrame:
    """A frame of ``data`` (a list of values per column, in order) with each column cast to its dtype."""
    return pd.DataFrame({name: _typed(values, dtypes.get(name, "str")) for name, values in data.items()},
                        columns=list(data))


def _typed(values: list, dtype: str) -> pd.Series:
    """One column of plain Python values (None when missing) as ``dtype``."""
    try:
        if dtype == DATE_DTYPE:  # dates (or datetimes) built in Arrow: pandas parses a list of them one by one
            kinds = set(map(type, values)) - {type(None)}
            if kinds <= {dt.date} or kinds == {dt.datetime}:  # all dates, or all datetimes (naive: checked)
                stamps = pa.array(values, pa.date32() if kinds <= {dt.date} else None)
                if not pa.types.is_timestamp(stamps.type) or stamps.type.tz is None:
                    stamps = stamps.cast(pa.timestamp("us"))
                    return pd.Series(stamps.to_numpy(zero_copy_only=False), dtype=DATE_DTYPE)
        if dtype in ("str", "Int64", "float64"):
            return pd.Series(pd.array(values, dtype=dtype))
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        pass  # anything else (text in a date column, say) as pandas converts it
    col = pd.Series(values, dtype="object")
    if dtype.startswith("datetime64"):
        return pd.to_datetime(col, utc=dtype.endswith("UTC]")).astype(dtype)
    return col.where(col.notna(), None).astype(dtype)


def _scope(query: Select, *, area: str | None, site: str | None) -> Select:
    if area is not None:
        query = query.where(Area.name == area)
    if site is not None:
        query = query.where(Site.code == site.strip().upper())
    return query


_TABLE_OF = {"incidents": (Incident, INCIDENTS.fields, False), "actions": (Action, ACTIONS.fields, True),
             "exposure": (ExposureMonth, EXPOSURE_FIELDS, True)}  # model, fields, site_code first


def _layout(table: str) -> tuple[list[str], list[str], dict[str, str]]:
    """The database columns read (after ``site_code``), the frame's columns in order, and their dtypes."""
    _, fields, site_first = _TABLE_OF[table]
    stored = stored_fields(fields)
    names = [f.name for f in stored if f.name != "site_code"]
    order = [f.name for f in stored]
    if "site_code" not in order or site_first:
        order = ["site_code", *[n for n in order if n != "site_code"]]
    return names, [*order, "_row"], {f.name: pandas_dtype(f) for f in stored} | {"_row": "Int64"}


def empty_rows_frame(table: str) -> pd.DataFrame:
    """The typed frame of ``table`` with no rows."""
    names, order, dtypes = _layout(table)
    return typed_frame([], ["site_code", *names, "_row"], dtypes)[order]


def _rows_frame(session: Session, table: str, *, area: str | None = None, site: str | None = None,
                submission_id: int | None = None) -> pd.DataFrame:
    """Rows of ``table`` ("incidents", "actions", "exposure") of the current submissions in scope,
    or of one submission (current or not), typed, straight from the database."""
    model = _TABLE_OF[table][0]
    names, order, dtypes = _layout(table)
    query = (select(Site.code, *(getattr(model, n) for n in names), model.excel_row)
             .join(Submission, model.submission_id == Submission.id)
             .join(Site, model.site_id == Site.id)
             .join(Area, Site.area_id == Area.id)
             .order_by(Site.code, model.excel_row, model.id))
    if submission_id is None:
        query = _scope(query.where(Submission.is_current.is_(True)), area=area, site=site)
    else:
        query = query.where(Submission.id == submission_id)
    rows = session.execute(query).all()
    return typed_frame(rows, ["site_code", *names, "_row"], dtypes)[order]


def submission_frames(session: Session, submission_id: int) -> dict[str, pd.DataFrame]:
    """The typed frames of one submission: {"incidents", "actions", "exposure"}."""
    return {table: _rows_frame(session, table, submission_id=submission_id) for table in _TABLE_OF}


def stored_tables(site_code: str, tables: Mapping) -> dict[str, pa.Table] | None:  # noqa: ANN001
    """The Arrow tables a snapshot keeps of a submission (what ``pa.Table.from_pandas`` makes of
    :func:`submission_frames`, schema and pandas metadata included), worked out from the rows just stored
    (``server.ingest.Rows`` by table) without reading them back: the same values, types and order (excel
    row, then as inserted), and without pandas in between.

    None when a row has no excel row (the database's order of those differs between backends).
    """
    out = {}
    for table, rows in tables.items():
        names, order, _ = _layout(table)
        excel_rows = rows.arrays["excel_row"]
        if excel_rows.null_count:
            return None
        schema = _SNAPSHOT_SCHEMA[table]
        given = {"site_code": pa.array([site_code] * len(rows), pa.string()), **{n: rows.arrays[n] for n in names},
                 "_row": excel_rows}
        data = pa.Table.from_arrays([given[name].cast(schema.field(name).type) for name in order], schema=schema)
        if (np.diff(excel_rows.to_numpy()) < 0).any():  # stable, as sort_values(kind="stable") is
            data = data.take(pa.array(np.argsort(data["_row"].to_numpy(), kind="stable")))
        out[table] = data
    return out


def _current_rows(session: Session, wanted: Mapping[str, list[str] | None], *, area: str | None,
                  site: str | None) -> dict[str, pd.DataFrame]:
    """The current rows in scope of each table named in ``wanted`` (with the columns it names, or all),
    in site order: from the app's snapshots when there is an app, else straight from SQL."""
    store = _store()
    if store is None:
        frames = {t: _rows_frame(session, t, area=area, site=site) for t in wanted}
        return {t: frame if wanted[t] is None else frame[wanted[t]] for t, frame in frames.items()}
    from .snapshots import concat_frames

    query = (select(Submission.id, Submission.content_sha256, Site.code, Area.name)
             .join(Site, Submission.site_id == Site.id).join(Area, Site.area_id == Area.id)
             .where(Submission.is_current.is_(True)).order_by(Site.code))
    current = session.execute(query).all()  # every site's (a few hundred rows): in scope, and what to keep
    store.forget_except([(sid, sha) for sid, sha, _, _ in current])
    in_scope = [(sid, sha) for sid, sha, code, area_name in current
                if (area is None or area_name == area) and (site is None or code == site.strip().upper())]
    kept = store.tables(in_scope, lambda sid: submission_frames(session, sid))
    return {t: concat_frames([k[t] for k in kept], _EMPTY[t], columns) for t, columns in wanted.items()}


def warm_snapshot(result) -> None:  # noqa: ANN001 - server.ingest.IngestResult
    """After an upload is answered: make its snapshot in the background (the next summary then reads it),
    and drop the snapshot of the submission it replaced (a copy of health data no longer needed)."""
    from flask import current_app

    store = _store()
    if store is None:
        return
    if result.replaced is not None:
        store.forget(result.replaced["submission_id"])
    submission = result.submission
    db = current_app.extensions["nearmiss_db"]

    site_code = submission.site.code  # here, in the request: the background thread has no session

    def load(sid: int) -> dict[str, pd.DataFrame | pa.Table]:
        if result.stored is not None:  # just stored: made from the rows in hand, not read back
            tables = stored_tables(site_code, result.stored.tables())
            if tables is not None:
                return tables
        with db.sessions() as session:
            return submission_frames(session, sid)

    store.warm_later((submission.id, submission.content_sha256), load)


def wait_for_snapshots(app) -> None:  # noqa: ANN001 - a Flask app
    """Wait for the app's background snapshots (see :func:`warm_snapshot`) to be made."""
    store = app.extensions.get("nearmiss_snapshots")
    if store is not None:
        store.wait_idle()


def _store():  # noqa: ANN202 - server.snapshots.SnapshotStore | None
    """The app's snapshot store (made on first use, in the instance folder), or None outside an app."""
    from flask import current_app, has_app_context

    if not has_app_context():
        return None
    store = current_app.extensions.get("nearmiss_snapshots")
    if store is None:
        from pathlib import Path

        from .snapshots import FOLDER, SnapshotStore

        store = current_app.extensions.setdefault(
            "nearmiss_snapshots", SnapshotStore(Path(current_app.instance_path) / FOLDER))
    return store


_EMPTY = {table: empty_rows_frame(table) for table in _TABLE_OF}  # (concat_frames copies, never changes them)
_SNAPSHOT_SCHEMA = {table: pa.Schema.from_pandas(frame, preserve_index=False) for table, frame in _EMPTY.items()}


def incidents_frame(session: Session, *, area: str | None = None, site: str | None = None,
                    columns: list[str] | None = None) -> pd.DataFrame:
    """Current incident rows: the contract's stored fields in contract order, then ``_row`` (or ``columns``)."""
    return _current_rows(session, {"incidents": columns}, area=area, site=site)["incidents"]


def actions_frame(session: Session, *, area: str | None = None, site: str | None = None,
                  columns: list[str] | None = None) -> pd.DataFrame:
    """Current action rows: ``site_code``, the contract's stored fields in contract order, ``_row``."""
    return _current_rows(session, {"actions": columns}, area=area, site=site)["actions"]


def exposure_frame(session: Session, *, area: str | None = None, site: str | None = None,
                   columns: list[str] | None = None) -> pd.DataFrame:
    """Current exposure months: ``site_code`` and the contract's exposure fields, ``_row``."""
    return _current_rows(session, {"exposure": columns}, area=area, site=site)["exposure"]


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
                   columns: Mapping[str, list[str]] | None = None,
                   ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(incidents, actions, exposure, sites)`` of the current submissions, all sites or one area/site.

    ``area`` is an area name, ``site`` a site code; ``columns`` may name, per table, the only columns
    wanted.  The rows come from the snapshots of the current submissions (:mod:`server.snapshots`).
    """
    columns = columns or {}
    rows = _current_rows(session, {t: columns.get(t) for t in _TABLE_OF}, area=area, site=site)
    return rows["incidents"], rows["actions"], rows["exposure"], sites_frame(session, area=area, site=site)


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
