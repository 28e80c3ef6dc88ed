"""POST /api/v1/submissions: every answer, and what is (or is not) stored."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import openpyxl
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from server.db import get_db
from server.models import AuditEvent, FindingRow, Incident, Submission

from .support import admin_token, area_token, bearer, count_rows, site_token, upload


def resave(path: Path, out: Path) -> Path:
    """The same workbook saved again by another program: different bytes, same rows."""
    workbook = openpyxl.load_workbook(path)
    workbook.properties.title = "saved again"
    workbook.save(out)
    return out


def audit_actions(app: Flask) -> list[str]:
    with get_db(app).sessions() as session:
        return session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()


def test_upload_is_stored_with_counts_and_findings(app: Flask, client: FlaskClient, workbooks) -> None:  # noqa: ANN001
    token = site_token(app)
    path, records = workbooks.get("OAK", seed=1, flaw_rate=0.08, tag="flawed")
    response = upload(client, token, path, name="../../Oakview log (March).xlsx")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["site_code"] == "OAK" and body["duplicate"] is False and body["is_current"] is True
    assert body["counts"] == {"incidents": len(records.incidents), "actions": len(records.actions)}
    errors = [f for f in body["findings"] if f["severity"] == "error"]
    assert body["errors"] == len(errors) > 0  # the flaws are found ...
    assert body["warnings"] == len(body["findings"]) - len(errors)
    assert {"file", "sheet", "cell", "rule", "severity", "message"} <= set(body["findings"][0])
    assert any(f["rule"] == "NM020" for f in body["findings"])  # a near miss with harm

    with get_db(app).sessions() as session:  # ... and the data is stored anyway, flagged
        submission = session.get(Submission, body["submission_id"])
        assert (submission.n_incidents, submission.n_actions) == (len(records.incidents), len(records.actions))
        assert submission.n_errors == body["errors"] and submission.is_current
        assert submission.original_name == "Oakview log (March).xlsx"  # metadata only
        assert submission.file_sha256 and submission.content_sha256 and submission.size == len(path.read_bytes())
        rows = session.scalars(select(Incident).where(Incident.submission_id == submission.id)
                               .order_by(Incident.excel_row)).all()
        assert [r.incident_ref for r in rows] == records.incidents["incident_ref"].tolist()
        assert rows[0].excel_row == 2 and rows[0].occurred_at == records.incidents["occurred_at"].iloc[0].date()
        assert session.scalar(select(FindingRow.id).where(FindingRow.submission_id == submission.id)) is not None
        stored_name = submission.stored_name
    # The original bytes are kept under a generated name, never the user's.
    folder = Path(app.config["UPLOAD_FOLDER"])
    assert [p.name for p in folder.iterdir()] == [stored_name]
    assert (folder / stored_name).read_bytes() == path.read_bytes()
    assert os.stat(folder / stored_name).st_mode & 0o077 == 0
    assert audit_actions(app)[-1] == "submission.stored"


def test_same_file_again_is_a_duplicate(app: Flask, client: FlaskClient, workbooks) -> None:  # noqa: ANN001
    token = site_token(app)
    path = workbooks.path("OAK", seed=1, flaw_rate=0.08, tag="flawed")
    first = upload(client, token, path).get_json()
    before = count_rows(app)
    again = upload(client, token, path, name="another name.xlsx")
    assert again.status_code == 200
    body = again.get_json()
    assert body["duplicate"] is True and body["submission_id"] == first["submission_id"]
    assert body["counts"] == first["counts"] and body["errors"] == first["errors"]
    assert len(body["findings"]) == len(first["findings"])
    assert count_rows(app) == before  # nothing changed
    assert audit_actions(app)[-1] == "submission.duplicate"


def test_resaved_workbook_is_a_duplicate_by_content(app: Flask, client: FlaskClient, workbooks,  # noqa: ANN001
                                                     tmp_path: Path) -> None:
    token = site_token(app)
    path = workbooks.path("OAK", seed=1)
    copy = resave(path, tmp_path / "resaved.xlsx")
    assert copy.read_bytes() != path.read_bytes()
    first = upload(client, token, path).get_json()
    before = count_rows(app)
    again = upload(client, token, copy)
    assert again.status_code == 200, again.get_json()
    assert again.get_json()["duplicate"] is True
    assert again.get_json()["submission_id"] == first["submission_id"]
    assert count_rows(app) == before


def test_newer_workbook_supersedes_the_older(app: Flask, client: FlaskClient, workbooks) -> None:  # noqa: ANN001
    token = site_token(app)
    lead = area_token(app)
    old_path, old = workbooks.get("OAK", seed=1)
    new_path, new = workbooks.get("OAK", seed=2)
    first = upload(client, token, old_path).get_json()
    second = upload(client, token, new_path)
    assert second.status_code == 201
    second = second.get_json()
    assert second["submission_id"] != first["submission_id"]
    with get_db(app).sessions() as session:
        older = session.get(Submission, first["submission_id"])
        newer = session.get(Submission, second["submission_id"])
        assert not older.is_current and older.superseded_at is not None
        assert newer.is_current and newer.superseded_at is None
        stored = session.scalars(select(Incident.submission_id)).all()
    assert stored.count(first["submission_id"]) == len(old.incidents)  # kept for audit
    assert stored.count(second["submission_id"]) == len(new.incidents)
    csv = client.get("/api/v1/incidents.csv?area=North", headers=bearer(lead)).data.decode()
    lines = csv.strip().splitlines()
    assert len(lines) - 1 == len(new.incidents)
    refs = {line.split(",")[0] for line in lines[1:]}
    assert refs == set(new.incidents["incident_ref"])
    assert second["replaced"] == {"submission_id": first["submission_id"], "incidents": len(old.incidents),
                                  "actions": len(old.actions)}
    assert "replaced" not in first


def test_a_log_far_smaller_than_the_one_it_replaces_is_stored_with_a_notice(app: Flask, client: FlaskClient,
                                                                            workbooks, tmp_path) -> None:  # noqa: ANN001
    from workbook_templates.builder import build_workbook
    from workbook_templates.records import SiteRecords

    token = site_token(app)
    full_path, full = workbooks.get("OAK", seed=1)
    assert "notice" not in upload(client, token, full_path).get_json()
    empty = build_workbook(tmp_path / "empty.xlsx", SiteRecords(site=dict(full.site)))  # the template, as sent by mistake
    answer = upload(client, token, empty)
    assert answer.status_code == 201  # stored: the site decides, the old log stays for a re-send
    body = answer.get_json()
    assert body["counts"]["incidents"] == 0
    assert body["notice"].startswith(f"This log has 0 reports where the one it replaces had {len(full.incidents)}.")
    again = upload(client, token, full_path).get_json()  # the full log sent again is current again
    assert again["reinstated"] and again["counts"]["incidents"] == len(full.incidents)


def test_an_older_copy_sent_again_becomes_current_again(app: Flask, client: FlaskClient, workbooks) -> None:  # noqa: ANN001
    token = site_token(app)
    a = upload(client, token, workbooks.path("OAK", seed=1)).get_json()
    upload(client, token, workbooks.path("OAK", seed=2))
    again = upload(client, token, workbooks.path("OAK", seed=1))
    assert again.status_code == 200
    body = again.get_json()
    assert body["duplicate"] is True and body["reinstated"] is True and body["is_current"] is True
    assert body["submission_id"] == a["submission_id"]
    with get_db(app).sessions() as session:
        current = session.scalars(select(Submission.id).where(Submission.is_current.is_(True))).all()
    assert current == [a["submission_id"]]
    assert audit_actions(app)[-1] == "submission.reinstated"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic abc"}],
                         ids=["none", "unknown", "not-bearer"])
def test_no_or_bad_token_is_401(app: Flask, client: FlaskClient, workbooks, headers) -> None:  # noqa: ANN001
    site_token(app)
    response = client.post("/api/v1/submissions", headers=headers, content_type="multipart/form-data",
                           data={"file": (io.BytesIO(workbooks.path().read_bytes()), "log.xlsx")})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "error" in response.get_json()
    assert count_rows(app)["submissions"] == 0


def test_another_sites_workbook_is_403(app: Flask, client: FlaskClient, workbooks) -> None:  # noqa: ANN001
    oak = site_token(app, "OAK")
    site_token(app, "ELM", name="Elm House")
    before = count_rows(app)
    response = upload(client, oak, workbooks.path("ELM", seed=3))
    assert response.status_code == 403
    assert "ELM" in response.get_json()["error"]
    assert count_rows(app) == before
    assert audit_actions(app)[-1] == "submission.refused"


def test_area_token_cannot_upload(app: Flask, client: FlaskClient, workbooks) -> None:  # noqa: ANN001
    site_token(app)
    response = upload(client, area_token(app), workbooks.path())
    assert response.status_code == 403


def test_admin_token_uploads_for_the_workbooks_site(app: Flask, client: FlaskClient, workbooks) -> None:  # noqa: ANN001
    site_token(app, "OAK")
    response = upload(client, admin_token(app), workbooks.path("OAK", seed=1))
    assert response.status_code == 201
    assert response.get_json()["site_code"] == "OAK"
    unknown = upload(client, admin_token(app), workbooks.path("ELM", seed=3))
    assert unknown.status_code == 422 and "ELM" in unknown.get_json()["error"]
    named = upload(client, admin_token(app), workbooks.path("OAK", seed=2), site="ZZZ")  # a site nobody added
    assert named.status_code == 422 and "no site ZZZ" in named.get_json()["error"]
    assert count_rows(app)["submissions"] == 1  # not stored for OAK, whose Site sheet it carries


@pytest.mark.parametrize("content, words", [
    (b"incident_ref,site_code,occurred_at\nOAK-2026-0001,OAK,2026-01-02\n", "CSV"),
    (os.urandom(4096), "not an Excel workbook"),
    (b"PK\x03\x04" + os.urandom(2000), "damaged"),
    (b"", "empty"),
], ids=["csv", "random", "broken-zip", "empty"])
def test_a_file_that_is_no_workbook_is_refused(app: Flask, client: FlaskClient, content: bytes, words: str) -> None:
    token = site_token(app)
    before = count_rows(app)
    response = upload(client, token, content, name="log.xlsx")
    assert response.status_code in (400, 422)
    assert words.lower() in response.get_json()["error"].lower()
    assert count_rows(app) == before


def test_a_workbook_without_log_sheets_is_refused(app: Flask, client: FlaskClient, tmp_path: Path) -> None:
    token = site_token(app)
    other = openpyxl.Workbook()
    other.active["A1"] = "Shopping list"
    other.save(tmp_path / "other.xlsx")
    before = count_rows(app)
    response = upload(client, token, tmp_path / "other.xlsx")
    assert response.status_code == 422
    assert "not a nearmiss log" in response.get_json()["error"]
    assert count_rows(app) == before


def test_missing_file_field_is_400(app: Flask, client: FlaskClient) -> None:
    token = site_token(app)
    response = client.post("/api/v1/submissions", headers=bearer(token), data={"other": "x"})
    assert response.status_code == 400
    assert "file" in response.get_json()["error"]
    assert audit_actions(app)[-1] == "submission.refused"  # an attempt, on the record


def test_too_large_is_413(make_app, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("NEARMISS_MAX_UPLOAD_MB", "0.5")
    app = make_app()
    token = site_token(app)
    response = upload(app.test_client(), token, b"PK\x03\x04" + b"\0" * 600_000)
    assert response.status_code == 413
    assert "MB" in response.get_json()["error"]
    assert count_rows(app)["submissions"] == 0
    assert audit_actions(app)[-1] == "submission.refused"


def test_racing_duplicates_are_stored_once(app: Flask, workbooks) -> None:  # noqa: ANN001
    token = site_token(app)
    data = workbooks.path("OAK", seed=1).read_bytes()
    answers: list[int] = []

    def send() -> None:
        answers.append(upload(app.test_client(), token, data).status_code)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [200, 200, 200, 201]
    counts = count_rows(app)
    assert counts["submissions"] == 1 and counts["files"] == 1


def test_racing_different_uploads_leave_one_current(app: Flask, workbooks) -> None:  # noqa: ANN001
    token = site_token(app)
    files = [workbooks.path("OAK", seed=s).read_bytes() for s in (1, 2, 4)]
    answers: list[int] = []
    threads = [threading.Thread(target=lambda d=d: answers.append(upload(app.test_client(), token, d).status_code))
               for d in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [201, 201, 201]
    with get_db(app).sessions() as session:
        current = session.scalars(select(Submission).where(Submission.is_current.is_(True))).all()
        assert len(current) == 1
        assert len(session.scalars(select(Submission)).all()) == 3


def test_storing_is_all_or_nothing(app: Flask, workbooks, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from server import ingest

    site_token(app)
    ingest.submit(get_db(app), data=workbooks.path("OAK", seed=1).read_bytes(), original_name="a.xlsx", who="test",
                  site_code="OAK", upload_folder=app.config["UPLOAD_FOLDER"])
    before = count_rows(app)

    def fail(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - the last step of the transaction fails
        raise RuntimeError("disk full")

    monkeypatch.setattr(ingest, "audit", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        ingest.submit(get_db(app), data=workbooks.path("OAK", seed=2).read_bytes(), original_name="b.xlsx",
                      who="test", site_code="OAK", upload_folder=app.config["UPLOAD_FOLDER"])
    assert count_rows(app) == before  # no rows, no file (not even the temporary one)
    with get_db(app).sessions() as session:
        assert len(session.scalars(select(Submission).where(Submission.is_current.is_(True))).all()) == 1


def test_no_read_transaction_stays_open_while_an_upload_is_read(app: Flask, client: FlaskClient, workbooks,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """The token lookup's transaction ends before the slow part: it would sit idle in transaction meanwhile."""
    from server import ingest
    from server.db import get_session

    seen: list[bool] = []
    real = ingest.submit

    def watching(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        seen.append(get_session().in_transaction())
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest, "submit", watching)
    assert upload(client, site_token(app), workbooks.path("OAK")).status_code == 201
    assert seen == [False]


@pytest.mark.fresh_parse
def test_uploads_beyond_the_reader_slots_wait_then_get_503(make_app, workbooks) -> None:  # noqa: ANN001
    """At most PARSE_WORKERS readers at once bounds the memory all uploads together take."""
    from server import ingest

    app = make_app(PARSE_ISOLATED=True, PARSE_WORKERS=1, PARSE_TIMEOUT_S=0.5)
    client = app.test_client()
    token = site_token(app)
    before = count_rows(app)
    slots = ingest.reader_slots(1)
    assert slots.acquire(timeout=5)  # another upload is being read all the while
    try:
        answer = upload(client, token, workbooks.path("OAK"))
    finally:
        slots.release()
    assert answer.status_code == 503
    assert "busy reading other workbooks" in answer.json["error"] and "nothing was stored" in answer.json["error"]
    assert count_rows(app) == before
    app.config["PARSE_TIMEOUT_S"] = 60
    assert upload(client, token, workbooks.path("OAK")).status_code == 201  # a free slot: read and stored
