"""An upload's rows as the reader process hands them over (``ingest.Rows``): typed Arrow columns made a
column at a time, which must hold exactly what ``normalise_row`` makes of each record, and hash as the
content hash always has (a re-sent log is recognised by it, so its format must not drift)."""

from __future__ import annotations

import datetime as dt
import pickle
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from server import ingest
from server.db import _writes_iso_dates, python_values
from workbook_templates.builder import build_workbook
from workbook_templates.contract import ACTIONS, EXPOSURE_FIELDS, INCIDENTS, Field
from workbook_templates.synthetic import make_site

STR = pd.StringDtype("pyarrow", na_value=np.nan)  # the reader's text dtype ("str")
ODD_TEXT = ["plain", None, "  padded  ", "", "   ", "\x00", "a\x00b", "\x00 ", " \x1c", "\u3000", "\u3000x",
            "\x1f\x1e", "\xa0", "caf\xe9 \u2019s", "\t\n", "x\t", np.nan]
N = len(ODD_TEXT)
STAMPS = pd.to_datetime(["1960-01-01 13:00", "1969-12-31 23:59", None, "2026-03-04 00:00", "1900-03-01 12:00",
                         "2199-12-31 23:59", "2026-03-04 09:30"] + ["2025-01-01 00:00"] * (N - 7))
INTS = [1, None, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 0, 10**12] + [5] * (N - 8)
FLOATS = [1.5, np.nan, np.inf, -np.inf, 0.0, -2.25, 1e16, 1e-5] + [3.0] * (N - 8)


def _fields() -> tuple[Field, ...]:
    """One stored field of each kind from the incidents sheet."""
    by_kind: dict[str, Field] = {}
    for f in INCIDENTS.fields:
        if f.type != "derived":
            by_kind.setdefault(f.type, f)
    assert {"date", "int", "text", "code"} <= set(by_kind)
    return tuple(by_kind.values())


def _odd_frame(fields: tuple[Field, ...], *, as_objects: bool = False) -> pd.DataFrame:
    """A frame in the reader's dtypes (or all object columns, as a hand-built frame has) with odd values."""
    columns: dict[str, object] = {}
    for f in fields:
        if f.type == "date":
            columns[f.name] = STAMPS
        elif f.type == "int":
            columns[f.name] = pd.array(INTS, dtype="Int64")
        elif f.type == "number":
            columns[f.name] = FLOATS
        else:
            columns[f.name] = pd.array(ODD_TEXT, dtype=STR)
    frame = pd.DataFrame(columns)
    frame["_row"] = pd.array(list(range(2, N + 2)), dtype="Int64")
    text_field = next(f for f in fields if f.type == "text")
    frame[f"_raw_{text_field.name}"] = [None, "last Tuesday", np.nan, "  ", None, 17.0, *([None] * (N - 6))]
    date_field = next(f for f in fields if f.type == "date")
    frame[f"_raw_{date_field.name}"] = ["soon", *([None] * (N - 1))]
    return frame.astype(object) if as_objects else frame


def _records_of(rows: ingest.Rows) -> list[dict]:
    return [{name: values[i] for name, values in rows.columns.items()} for i in range(len(rows))]


@pytest.mark.parametrize("as_objects", [False, True], ids=["reader dtypes", "object columns"])
def test_rows_hold_what_normalise_row_makes_of_each_record(as_objects: bool) -> None:
    fields = _fields()
    frame = _odd_frame(fields, as_objects=as_objects)
    rows = ingest.normalise_frame(frame, fields)
    expected = []
    for record in frame.to_dict("records"):
        row = ingest.normalise_row(record, fields)
        row["excel_row"] = ingest.normalise_value(record["_row"], "int")
        expected.append(row)
    got = _records_of(rows)
    assert got == expected
    for mine, theirs in zip(got, expected):  # == says 1 == 1.0 == True; the stored types must match too
        assert {k: type(v) for k, v in mine.items()} == {k: type(v) for k, v in theirs.items()}
    assert any(r["raw_values"] for r in got) and rows.columns["raw_values"][1] is not None


def test_every_character_strip_removes_is_looked_at() -> None:
    spaces = [c for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    assert max(spaces) <= 0x3000  # _SPACES is built from the characters up to U+3000
    assert set(ingest._SPACES.to_pylist()) == {"", *map(chr, spaces)}


def test_missing_columns_are_null_columns_of_their_type() -> None:
    rows = ingest.normalise_frame(pd.DataFrame({"_row": pd.array([2, 3], dtype="Int64")}), EXPOSURE_FIELDS)
    assert len(rows) == 2 and rows.columns["raw_values"] == [None, None]
    for f in EXPOSURE_FIELDS:
        if f.type != "derived":
            assert rows.columns[f.name] == [None, None]
            assert rows.arrays[f.name].type == ingest.ARROW_TYPES.get(f.type, pa.string())


def test_rows_are_sent_as_arrow_buffers_and_give_the_same_lists_after() -> None:
    fields = _fields()
    rows = ingest.normalise_frame(_odd_frame(fields), fields)
    before = rows.columns
    sent = pickle.dumps(rows)
    back = pickle.loads(sent)
    assert set(vars(back)) == {"arrays", "raw_values"}  # no lists were sent: they are made on the other side
    assert back.columns == before and back.arrays.keys() == rows.arrays.keys()
    assert back == rows and back != ingest.normalise_frame(_odd_frame(fields).iloc[:3], fields)  # compared by content


# Content hashes of two synthetic logs, worked out by the code before the rows became Arrow columns: a
# log sent again must still be recognised by its rows.
PINNED = {("OAK", 7, 0.0): ("58e16a3073166ca11a1436d02a53c099b5e009fa897f190ccdf906b1d4398b64", 361),
          ("ELM", 11, 0.15): ("a4f743042440bf0ccbc3cecabe766e8939a5f39573361ef105e330be363cbae8", 327)}


@pytest.mark.parametrize("key", list(PINNED), ids=[k[0] for k in PINNED])
def test_the_content_hash_has_not_changed(key: tuple, tmp_path) -> None:  # noqa: ANN001
    code, seed, flaws = key
    records = make_site(code, f"Site {code}", months=12, reports_per_month=20, end=dt.date(2026, 6, 30),
                        seed=seed, flaw_rate=flaws)
    path = build_workbook(tmp_path / f"{code}.xlsx", records)
    parsed = ingest.read_and_validate(path.read_bytes(), name=path.name)
    assert (parsed.content_sha256, sum(len(rows) for rows in parsed.tables().values())) == PINNED[key]


def test_the_hash_sees_dates_as_iso_text() -> None:
    rows = ingest.Rows({"when": pa.array([dt.date(1, 1, 1), dt.date(999, 12, 31), None, dt.date(2026, 3, 4)]),
                        "excel_row": pa.array([2, 3, 4, 5])}, [None] * 4)
    assert ingest._hashed_columns(rows)["when"] == [
        None if d is None else ingest._json_default(d) for d in rows.columns["when"]]


def test_actions_of_a_real_log_are_rows_of_their_types(tmp_path) -> None:  # noqa: ANN001
    records = make_site("ASH", "Ash", months=6, reports_per_month=15, end=dt.date(2026, 6, 30), seed=3)
    path = build_workbook(tmp_path / "ASH.xlsx", records)
    parsed = ingest.read_and_validate(path.read_bytes(), name=path.name)
    for f in ACTIONS.fields:
        if f.type in ingest.ARROW_TYPES:
            assert parsed.actions.arrays[f.name].type == ingest.ARROW_TYPES[f.type]
    assert all(isinstance(d, dt.date) for d in parsed.actions.columns["raised_date"] if d is not None)


def test_dates_become_python_values_as_to_pylist_gives_them() -> None:
    days = pa.array([dt.date(1, 1, 1), None, dt.date(1969, 12, 31), dt.date(2026, 3, 4), dt.date(9999, 12, 31)])
    assert python_values(days) == days.to_pylist()
    assert [type(v) for v in python_values(days)] == [type(v) for v in days.to_pylist()]


def test_sqlite_dates_are_written_as_the_iso_text_its_bind_processor_makes() -> None:
    from sqlalchemy import Date
    from sqlalchemy.dialects import postgresql, sqlite

    lite = sqlite.dialect()
    process = Date().dialect_impl(lite).bind_processor(lite)
    assert _writes_iso_dates(process)
    days = pa.array([dt.date(1, 1, 1), None, dt.date(2026, 3, 4), dt.date(9999, 12, 31)])
    assert python_values(days.cast(pa.string())) == [None if d is None else process(d) for d in days.to_pylist()]
    assert not _writes_iso_dates(lambda day: day.strftime("%d/%m/%Y"))
    pg = postgresql.psycopg.dialect()
    assert Date().dialect_impl(pg).bind_processor(pg) is None  # psycopg takes the date objects themselves
