"""server.snapshots: the current rows kept as Arrow tables give exactly what the database gives."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import openpyxl

import pandas as pd
import pyarrow as pa
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from server import create_app
from server.db import get_db
from server import snapshots
from server.queries import (
    _EMPTY, _rows_frame, current_frames, stored_tables, submission_frames, wait_for_snapshots,
)
from server.snapshots import FOLDER

from .support import send_three_sites, site_token, upload

TABLES = ("incidents", "actions", "exposure")
SCOPES = ({}, {"area": "North"}, {"area": "South"}, {"site": "OAK"}, {"site": "oak"}, {"site": "NEW"})


def from_snapshots(app: Flask, **scope) -> tuple[pd.DataFrame, ...]:  # noqa: ANN003
    wait_for_snapshots(app)  # the uploads' own snapshots (made from the rows they stored), not loaded here
    with app.app_context(), get_db(app).sessions() as session:
        return current_frames(session, **scope)[:3]


def from_database(app: Flask, **scope) -> tuple[pd.DataFrame, ...]:  # noqa: ANN003
    with get_db(app).sessions() as session:  # no app context: no snapshot store, rows straight from SQL
        return tuple(_rows_frame(session, table, **scope) for table in TABLES)


def assert_same(app: Flask) -> None:
    for scope in SCOPES:
        for table, kept, direct in zip(TABLES, from_snapshots(app, **scope), from_database(app, **scope)):
            pd.testing.assert_frame_equal(kept.reset_index(drop=True), direct.reset_index(drop=True),
                                          obj=f"{table} {scope}")


def row_queries(app: Flask, read: Callable[[], object]) -> list[str]:
    """The SELECTs of the row tables that ``read()`` makes."""
    wait_for_snapshots(app)  # (uploads make their snapshots in the background: not what is counted)
    seen: list[str] = []
    engine = get_db(app).engine
    listener = lambda *args: seen.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        read()
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    return [s for s in seen if any(f"FROM {t}" in s for t in ("incidents", "actions", "exposure_months"))]


def test_snapshots_equal_the_database_before_and_after_a_newer_log(app: Flask, client: FlaskClient,
                                                                   workbooks) -> None:  # noqa: ANN001
    send_three_sites(app, client, workbooks)
    assert_same(app)
    assert upload(client, site_token(app, "OAK"), workbooks.path("OAK", seed=2)).status_code == 201  # supersedes
    assert_same(app)
    incidents = from_snapshots(app, site="OAK")[0]
    assert len(incidents) == len(workbooks.records("OAK", seed=2).incidents)

    # Kept in memory: a second read of the rows asks the database for none of them.
    assert row_queries(app, lambda: from_snapshots(app)) == []


def test_files_are_private_and_only_current_submissions_keep_one(app: Flask, client: FlaskClient,
                                                                   workbooks) -> None:  # noqa: ANN001
    send_three_sites(app, client, workbooks)
    from_snapshots(app)
    folder = app.instance_path + "/" + FOLDER
    first = {p.name for p in _files(app)}
    assert len(first) == 3 * len(TABLES)  # three current submissions, three tables each
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in _files(app)), folder

    assert upload(client, site_token(app, "OAK"), workbooks.path("OAK", seed=2)).status_code == 201
    wait_for_snapshots(app)
    assert len(_files(app)) == 3 * len(TABLES)  # the replaced log's snapshot went with the upload itself
    from_snapshots(app)
    second = {p.name for p in _files(app)}
    assert len(second) == 3 * len(TABLES)
    assert len(first - second) == len(TABLES)  # the superseded log's files are gone


def _files(app: Flask) -> list:
    from pathlib import Path

    return sorted((Path(app.instance_path) / FOLDER).glob("*.arrow"))


def test_a_restarted_server_reads_the_files_and_remakes_a_damaged_one(app: Flask, client: FlaskClient, workbooks,
                                                                      make_app) -> None:  # noqa: ANN001
    send_three_sites(app, client, workbooks)
    expected = from_snapshots(app)

    restarted = make_app()  # same instance folder and database, empty memory
    assert row_queries(restarted, lambda: from_snapshots(restarted)) == []  # all from the files
    for kept, want in zip(from_snapshots(restarted), expected):
        pd.testing.assert_frame_equal(kept, want)

    damaged = next(p for p in _files(app) if ".incidents." in p.name)
    damaged.write_bytes(b"not arrow at all")
    again = make_app()
    assert len(row_queries(again, lambda: from_snapshots(again))) == len(TABLES)  # one submission re-read
    for kept, want in zip(from_snapshots(again), expected):
        pd.testing.assert_frame_equal(kept, want)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_new_database_in_the_same_instance_never_gets_the_old_rows(app: Flask, client: FlaskClient, workbooks,
                                                                      instance, monkeypatch) -> None:  # noqa: ANN001
    token = site_token(app, "OAK")
    assert upload(client, token, workbooks.path("OAK", seed=1)).status_code == 201
    old = from_snapshots(app)[0]
    get_db(app).dispose()

    # The same folder with another database file: submission 1 is now another log of the same site.
    monkeypatch.setenv("NEARMISS_DATABASE_URL", f"sqlite:///{instance}/other.db")
    other = create_app({"TESTING": True})
    try:
        other_client = other.test_client()
        assert upload(other_client, site_token(other, "OAK"), workbooks.path("OAK", seed=2)).status_code == 201
        new = from_snapshots(other)[0]
        assert len(new) == len(workbooks.records("OAK", seed=2).incidents) != len(old)
        pd.testing.assert_frame_equal(new.reset_index(drop=True),
                                      from_database(other)[0].reset_index(drop=True))
    finally:
        get_db(other).dispose()


def test_an_upload_makes_its_snapshot_in_the_background(app: Flask, client: FlaskClient, workbooks) -> None:  # noqa: ANN001
    send_three_sites(app, client, workbooks)
    wait_for_snapshots(app)
    assert len(_files(app)) == 3 * len(TABLES)  # made after each upload, before any summary asked
    assert row_queries(app, lambda: from_snapshots(app)) == []
    assert_same(app)


def stored_frames(site_code: str, tables) -> dict[str, pd.DataFrame] | None:  # noqa: ANN001
    """The snapshot tables made from just-stored rows, as the frames ``submission_frames`` gives."""
    arrow = stored_tables(site_code, tables)
    return None if arrow is None else {t: arrow[t].to_pandas().astype(_EMPTY[t].dtypes.to_dict()) for t in arrow}


def _odd_cells(path: Path, out: Path) -> Path:
    """The workbook with cells the reader keeps as raw text, blanks, padded text and a number too big for SQL."""
    book = openpyxl.load_workbook(path)
    log = book["Log"]
    headers = {cell.value: cell.column for cell in log[1]}
    log.cell(2, headers["Date occurred"]).value = "31/02/2026"  # no such date: NULL, raw text kept
    log.cell(3, headers["Consequence (1-5)"]).value = 3_000_000_000  # beyond SQL INTEGER: NULL
    log.cell(4, headers["What happened"]).value = "   "  # only spaces: blank
    log.cell(5, headers["Notes"]).value = "  kept as typed  "  # long text keeps its spaces
    log.cell(6, headers["Time occurred"]).value = "half past two"  # unreadable time: raw text kept
    book.save(out)
    return out


@pytest.mark.fresh_parse
def test_the_snapshot_made_from_the_stored_rows_equals_reading_them_back(app: Flask, client: FlaskClient,
                                                                         workbooks, tmp_path: Path) -> None:  # noqa: ANN001
    path = _odd_cells(workbooks.path("OAK"), tmp_path / "odd.xlsx")
    response = upload(client, site_token(app, "OAK"), path)
    assert response.status_code == 201, response.get_json()
    from server import ingest

    parsed = ingest.read_and_validate(path.read_bytes(), name="odd.xlsx")
    assert any(raw for raw in parsed.incidents.columns["raw_values"])  # the odd cells are there
    made = stored_frames("OAK", parsed.tables())
    with get_db(app).sessions() as session:
        read_back = submission_frames(session, response.get_json()["submission_id"])
    assert made is not None and set(made) == set(read_back) == set(TABLES)
    tables = stored_tables("OAK", parsed.tables())
    for table in TABLES:
        pd.testing.assert_frame_equal(made[table], read_back[table], obj=table)
        # and the Arrow table the snapshot keeps is what the database's rows make, metadata and all
        expected = snapshots._to_arrow(read_back[table])
        assert tables[table].equals(expected, check_metadata=True), table
    assert_same(app)


def test_rows_stored_out_of_order_are_kept_in_excel_row_order_stably() -> None:
    from server import ingest
    from workbook_templates.contract import EXPOSURE_FIELDS

    frame = pd.DataFrame({"month": pd.to_datetime(["2026-01-01", "2026-02-01", "2026-03-01", "2026-04-01"]),
                          "_row": pd.array([9, 7, 7, 3], dtype="Int64")})
    rows = ingest.normalise_frame(frame, EXPOSURE_FIELDS)
    table = stored_tables("OAK", {"exposure": rows})["exposure"]
    assert table["_row"].to_pylist() == [3, 7, 7, 9]
    assert [d.month for d in table["month"].to_pylist()] == [4, 2, 3, 1]  # the two row 7s as they came
    assert table.schema.equals(snapshots._to_arrow(stored_frames("OAK", {"exposure": rows})["exposure"]).schema,
                               check_metadata=True)
    rows.arrays["excel_row"] = pa.array([9, None, 7, 3])
    assert stored_tables("OAK", {"exposure": rows}) is None  # a row without its excel row: read back instead
