"""server.ingest: reading in a worker process, normalising values, the content hash, the demo loader."""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from server import ingest
from server.db import get_db
from server.demo import DEMO_SITES, load_demo
from server.models import AuditEvent, Incident, Submission, Token
from workbook_templates.contract import INCIDENTS

from .support import bearer, count_rows, site_token, upload

LIMITS = ingest.Isolation(timeout_s=20, memory_mb=2048)


def _abort() -> None:
    os.abort()  # as calamine does on a hostile sheet: no exception, the process just dies


def _allocate() -> bytes:
    return bytes(8 * 1024**3)  # 8 GB: over the cap


def _sleep() -> None:
    time.sleep(30)


def _refuse() -> None:
    raise ingest.NotAWorkbook("not a log")


def _bug() -> None:
    raise KeyError("a bug")


def test_worker_returns_its_result() -> None:
    assert ingest.run_isolated(pow, 2, 10, isolation=LIMITS) == 1024


@pytest.mark.parametrize("fn, words", [(_abort, "stopped the reader"), (_allocate, "memory"),
                                       (_refuse, "not a log")], ids=["abort", "memory", "refused"])
def test_a_dying_worker_is_a_refusal_not_a_crash(fn, words: str) -> None:  # noqa: ANN001
    with pytest.raises(ingest.NotAWorkbook, match=words):
        ingest.run_isolated(fn, isolation=LIMITS)


def test_a_slow_worker_is_stopped() -> None:
    started = time.monotonic()
    with pytest.raises(ingest.NotAWorkbook, match="longer than"):
        ingest.run_isolated(_sleep, isolation=ingest.Isolation(timeout_s=1, memory_mb=2048))
    assert time.monotonic() - started < 20  # not the 30 s the worker asked for


def test_a_bug_in_the_worker_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="KeyError"):
        ingest.run_isolated(_bug, isolation=LIMITS)


@pytest.mark.fresh_parse
def test_upload_read_in_a_worker_process(app: Flask, client: FlaskClient, workbooks, tmp_path: Path) -> None:  # noqa: ANN001
    assert app.config["PARSE_ISOLATED"] is True
    token = site_token(app)
    path, records = workbooks.get("OAK", seed=1)
    first = upload(client, token, path)
    assert first.status_code == 201
    assert first.get_json()["counts"]["incidents"] == len(records.incidents)
    copy = tmp_path / "resaved.xlsx"
    openpyxl.load_workbook(path).save(copy)
    again = upload(client, token, copy)  # read for real again: the content hash matches
    assert again.status_code == 200 and again.get_json()["duplicate"] is True


def test_unreadable_cells_are_kept_as_raw_text(app: Flask, client: FlaskClient, workbooks,  # noqa: ANN001
                                               tmp_path: Path) -> None:
    workbook = openpyxl.load_workbook(workbooks.path("OAK", seed=1))
    log = workbook[INCIDENTS.sheet]
    log[f"{INCIDENTS.column_letter('occurred_at')}2"] = "last Tuesday"
    log[f"{INCIDENTS.column_letter('consequence')}3"] = "high"
    workbook.save(tmp_path / "typed.xlsx")
    response = upload(client, site_token(app), tmp_path / "typed.xlsx")
    assert response.status_code == 201
    rules = {(f["incident_ref"], f["rule"]) for f in response.get_json()["findings"] if f["sheet"] == "Log"}
    with get_db(app).sessions() as session:
        rows = session.scalars(select(Incident).order_by(Incident.excel_row)).all()
    assert rows[0].occurred_at is None and rows[0].raw_values == {"occurred_at": "last Tuesday"}
    assert rows[1].consequence is None and rows[1].raw_values == {"consequence": "high"}
    assert rows[2].raw_values is None
    assert (rows[0].incident_ref, "NM005") in rules  # flagged: "'last Tuesday' is not a date"


def test_normalise_value() -> None:
    n = ingest.normalise_value
    assert n(pd.Timestamp("2026-03-04 13:00"), "date") == dt.date(2026, 3, 4)
    assert n("2026-03-04", "date") == dt.date(2026, 3, 4)
    assert n("next week", "date") is None
    assert n(pd.NaT, "date") is None and n(float("nan"), "text") is None and n("  ", "text") is None
    assert n(3.0, "int") == 3 and n("4", "int") == 4 and n(2.5, "int") is None and n(10**12, "int") is None
    assert n(True, "int") is None and n(float("inf"), "number") is None and n("1.5", "number") == 1.5
    assert n(dt.time(9, 5), "time") == "09:05" and n(0.5, "time") == "12:00" and n("14:30", "time") == "14:30"
    assert n(123, "text") == "123" and n("a\x00b", "text") == "ab"


def test_content_hash_ignores_the_file_but_not_the_rows(workbooks, tmp_path: Path) -> None:  # noqa: ANN001
    path = workbooks.path("OAK", seed=1)
    copy = tmp_path / "copy.xlsx"
    openpyxl.load_workbook(path).save(copy)
    a = ingest.read_and_validate(path.read_bytes(), name="a.xlsx")
    b = ingest.read_and_validate(copy.read_bytes(), name="b.xlsx")
    assert a.content_sha256 == b.content_sha256
    other = ingest.read_and_validate(workbooks.path("OAK", seed=2).read_bytes(), name="a.xlsx")
    assert other.content_sha256 != a.content_sha256


def test_clean_name() -> None:
    assert ingest.clean_name("C:\\Users\\me\\log.xlsx") == "log.xlsx"
    assert ingest.clean_name("../../etc/passwd") == "passwd"
    assert ingest.clean_name("事故.xlsx") == "事故.xlsx"
    assert ingest.clean_name("") == "workbook.xlsx"
    assert len(ingest.clean_name("x" * 1000)) == 255


def test_demo_loads_sites_through_the_upload_path(app: Flask, client: FlaskClient,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from server import demo

    sites = [d for d in DEMO_SITES if d.code in ("OAK", "BIR")]  # one site of each area: fewer logs to build
    monkeypatch.setattr(demo, "DEMO_SITES", tuple(sites))
    result = load_demo(app, today=dt.date(2026, 10, 31), months=2)
    assert [s.code for s, _ in result.sites] == [d.code for d in sites]
    assert all(answer["counts"]["incidents"] > 0 for _, answer in result.sites)
    tokens = dict(result.tokens)
    rows = client.get("/api/v1/incidents.csv", headers=bearer(tokens["area lead North"]))
    assert rows.status_code == 200
    assert {line.split(",")[1] for line in rows.data.decode().splitlines()[1:]} == {"OAK"}
    lines = result.lines("http://127.0.0.1:5000")
    assert any(line.strip().startswith("demo-north") for line in lines)
    first = count_rows(app)["submissions"]

    again = load_demo(app, today=dt.date(2026, 10, 31), months=2)  # the same data again: nothing new stored
    assert all(answer["duplicate"] for _, answer in again.sites)
    assert count_rows(app)["submissions"] == first
    old = client.get("/api/v1/incidents.csv", headers=bearer(tokens["area lead North"]))
    assert old.status_code == 401  # the previous demo tokens are revoked
    with get_db(app).sessions() as session:
        live = session.scalars(select(Token).where(Token.revoked_at.is_(None))).all()
        assert len(live) == len(again.tokens)
        revoked = session.scalars(select(AuditEvent.what).where(AuditEvent.action == "token.revoke")).all()
        assert len(revoked) == len(result.tokens)  # each old demo token's revocation is in the audit log
        assert session.scalar(select(Submission).where(Submission.is_current.is_(True))) is not None


def test_the_reader_fork_server_preloads_and_warms_up_without_error() -> None:
    """Every module the workers' fork server preloads imports cleanly; the warm-up reads its log and
    freezes what it made (a failure there would only be logged, so it is looked for here)."""
    import subprocess
    import sys

    code = ("import gc, logging, sys; logging.basicConfig(level=logging.ERROR); "
            f"[__import__(m) for m in {ingest.PRELOAD!r}]; print(gc.get_freeze_count())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "warming up the reader workers failed" not in done.stderr, done.stderr
    assert int(done.stdout.strip()) > 10_000  # pandas, pyarrow and the reader's objects, kept out of the collector


def _pid() -> int:
    return os.getpid()


def test_a_worker_reads_many_uploads_but_never_after_a_failure() -> None:
    first = ingest.run_isolated(_pid, isolation=LIMITS)
    assert first != os.getpid() and ingest.run_isolated(_pid, isolation=LIMITS) == first  # reused: warm
    with pytest.raises(ingest.NotAWorkbook, match="not a log"):  # a refusal is an answer: still reused
        ingest.run_isolated(_refuse, isolation=LIMITS)
    assert ingest.run_isolated(_pid, isolation=LIMITS) == first
    with pytest.raises(RuntimeError, match="KeyError"):
        ingest.run_isolated(_bug, isolation=LIMITS)
    assert ingest.run_isolated(_pid, isolation=LIMITS) != first  # a failure ends the worker


def test_a_worker_makes_way_after_its_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "READS_PER_WORKER", 2)
    ingest._IDLE.clear()
    pids = [ingest.run_isolated(_pid, isolation=LIMITS) for _ in range(4)]
    assert pids[0] == pids[1] != pids[2] == pids[3]


def test_each_read_reports_its_own_peak_memory(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="server.ingest")
    ingest._IDLE.clear()
    ingest.run_isolated(_hold, 300, isolation=LIMITS)
    ingest.run_isolated(_pid, isolation=LIMITS)
    big, small = [r.worker_usage for r in caplog.records if hasattr(r, "worker_usage")]
    assert big["peak_mb"] - big["start_mb"] >= 250
    assert small["peak_mb"] - small["start_mb"] < 100  # the same worker; its peak started again


def _hold(mb: int) -> int:
    block = bytearray(mb * 2**20)
    block[::4096] = b"x" * len(block[::4096])  # touched, so resident
    return len(block)


def test_a_waiting_worker_that_died_makes_way_for_a_fresh_one() -> None:
    ingest._IDLE.clear()
    first = ingest.run_isolated(_pid, isolation=LIMITS)
    waiting = ingest._IDLE.take(LIMITS.memory_mb)
    assert waiting.process.pid == first
    os.kill(first, 9)  # killed from outside while it waited for the next upload ...
    waiting.process.join(5)
    waiting.process.is_alive = lambda: True  # ... just after the pool last saw it alive
    ingest._IDLE.put(waiting)
    assert ingest.run_isolated(pow, 2, 10, isolation=LIMITS) == 1024  # read by a fresh one, not refused as a crash
    assert ingest.run_isolated(_pid, isolation=LIMITS) != first


def _unpicklable() -> object:
    return lambda: None


def test_a_result_that_cannot_be_sent_back_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="pickle"):
        ingest.run_isolated(_unpicklable, isolation=LIMITS)
