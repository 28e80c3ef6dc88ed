"""NEARMISS_RETENTION_DAYS: superseded submissions' files go after N days, rows and audit stay (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import func, select, update

from server import create_app, ingest, retention
from server.cli import main
from server.db import get_db
from server.models import AuditEvent, Incident, Submission, utcnow
from tests.web.support import add_sites_and_users, login


def submit(app: Flask, data: bytes, code: str = "OAK") -> int:
    result = ingest.submit(get_db(app), data=data, original_name=f"{code.lower()}-log.xlsx", who="test",
                           site_code=code, upload_folder=app.config["UPLOAD_FOLDER"])
    return result.submission.id


def superseded_days_ago(app: Flask, submission_id: int, days: float) -> None:
    with get_db(app).sessions() as session:
        session.execute(update(Submission).where(Submission.id == submission_id)
                        .values(superseded_at=utcnow() - dt.timedelta(days=days)))
        session.commit()


def row(app: Flask, submission_id: int) -> Submission:
    with get_db(app).sessions() as session:
        return session.get(Submission, submission_id)


def file_of(app: Flask, submission_id: int) -> Path:
    return Path(app.config["UPLOAD_FOLDER"]) / row(app, submission_id).stored_name


def purge_events(app: Flask) -> list[AuditEvent]:
    with get_db(app).sessions() as session:
        return session.scalars(select(AuditEvent).where(AuditEvent.action == "retention.purge")
                               .order_by(AuditEvent.id)).all()


@pytest.fixture
def history(app: Flask, workbooks) -> dict[str, int]:  # noqa: ANN001
    """OAK sent three logs (old superseded 40 days ago, middle 10 days ago, new current); ELM one, long ago."""
    add_sites_and_users(app)
    ids = {"old": submit(app, workbooks.path("OAK", 1).read_bytes()),
           "middle": submit(app, workbooks.path("OAK", 2).read_bytes()),
           "new": submit(app, workbooks.path("OAK", 3).read_bytes()),
           "elm": submit(app, workbooks.path("ELM", 3, setting="homecare").read_bytes(), "ELM")}
    superseded_days_ago(app, ids["old"], 40)
    superseded_days_ago(app, ids["middle"], 10)
    with get_db(app).sessions() as session:  # ELM's only log is years old, but current
        session.execute(update(Submission).where(Submission.id == ids["elm"])
                        .values(received_at=utcnow() - dt.timedelta(days=900)))
        session.commit()
    return ids


def test_purge_removes_only_old_superseded_files_and_keeps_rows_and_audit(app: Flask, history: dict) -> None:
    database, folder = get_db(app), app.config["UPLOAD_FOLDER"]
    old = row(app, history["old"])
    dry = retention.purge(database, upload_folder=folder, days=30, who="test:dry", dry_run=True)
    assert [r.submission_id for r in dry.removed] == [history["old"]] and dry.dry_run
    assert "would remove 1 stored file" in dry.summary()
    assert file_of(app, history["old"]).is_file() and row(app, history["old"]).file_removed_at is None
    assert purge_events(app) == []  # a dry run changes nothing

    done = retention.purge(database, upload_folder=folder, days=30, who="cli:root")
    assert [(r.submission_id, r.site, r.file_found) for r in done.removed] == [(history["old"], "OAK", True)]
    assert not file_of(app, history["old"]).exists()
    assert not list(Path(folder).glob(".*"))  # nothing left aside
    for key in ("middle", "new", "elm"):  # superseded 10 days ago, and the current logs, stay
        assert file_of(app, history[key]).is_file(), key
        assert row(app, history[key]).file_removed_at is None
    purged = row(app, history["old"])
    assert purged.file_removed_at is not None and not purged.is_current
    with get_db(app).sessions() as session:  # the rows and the audit of the submission stay
        assert session.scalar(select(func.count()).select_from(Incident)
                              .where(Incident.submission_id == history["old"])) == old.n_incidents > 0
        assert session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "submission.stored", AuditEvent.what == f"submission:{history['old']}")) == 1
    (event,) = purge_events(app)
    assert (event.who, event.what, event.file_sha256) == ("cli:root", f"submission:{history['old']}", old.file_sha256)
    assert event.detail["retention_days"] == 30 and event.detail["site"] == "OAK" and event.detail["file_found"]

    assert retention.purge(database, upload_folder=folder, days=30, who="cli:root").removed == []  # done once
    again = retention.purge(database, upload_folder=folder, days=7, who="cli:root")
    assert [r.submission_id for r in again.removed] == [history["middle"]]
    assert [e.what for e in purge_events(app)] == [f"submission:{history['old']}", f"submission:{history['middle']}"]


def test_a_failed_commit_leaves_the_file_in_place(app: Flask, history: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("the database went away")

    monkeypatch.setattr(retention, "audit", broken)
    with pytest.raises(RuntimeError):
        retention.purge(get_db(app), upload_folder=app.config["UPLOAD_FOLDER"], days=30, who="test")
    assert file_of(app, history["old"]).is_file() and row(app, history["old"]).file_removed_at is None
    assert not list(Path(app.config["UPLOAD_FOLDER"]).glob(".*"))


def test_an_old_log_sent_again_is_current_and_kept(app: Flask, history: dict, workbooks) -> None:  # noqa: ANN001
    again = ingest.submit(get_db(app), data=workbooks.path("OAK", 1).read_bytes(), original_name="oak.xlsx",
                          who="test", site_code="OAK", upload_folder=app.config["UPLOAD_FOLDER"])
    assert again.reinstated and again.submission.id == history["old"]
    result = retention.purge(get_db(app), upload_folder=app.config["UPLOAD_FOLDER"], days=30, who="test")
    assert result.removed == [] and file_of(app, history["old"]).is_file()


def test_a_purged_log_sent_again_gets_its_file_back(app: Flask, history: dict, workbooks) -> None:  # noqa: ANN001
    retention.purge(get_db(app), upload_folder=app.config["UPLOAD_FOLDER"], days=30, who="test")
    assert row(app, history["old"]).file_removed_at is not None and not file_of(app, history["old"]).exists()
    sent = workbooks.path("OAK", 1).read_bytes()
    again = ingest.submit(get_db(app), data=sent, original_name="oak.xlsx", who="test", site_code="OAK",
                          upload_folder=app.config["UPLOAD_FOLDER"])
    assert again.reinstated and again.submission.id == history["old"]
    assert row(app, history["old"]).file_removed_at is None
    assert file_of(app, history["old"]).read_bytes() == sent  # the current log has its file again
    assert stat_mode(file_of(app, history["old"])) == 0o600
    with get_db(app).sessions() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "submission.reinstated")
                                .order_by(AuditEvent.id.desc())).first()
    assert event.detail.get("file_restored") is True
    lead = app.test_client()
    login(lead, "north-lead")
    assert lead.get(f"/submissions/{history['old']}/checked-copy").status_code == 200


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_checked_copy_of_a_purged_submission_is_gone_with_a_clear_message(app: Flask, history: dict) -> None:
    retention.purge(get_db(app), upload_folder=app.config["UPLOAD_FOLDER"], days=30, who="test")
    lead = app.test_client()
    login(lead, "north-lead")
    answer = lead.get(f"/submissions/{history['old']}/checked-copy")
    text = answer.get_data(as_text=True)
    assert answer.status_code == 410 and "No longer kept" in text
    assert "oak-log.xlsx" in text and "removed on" in text and "retention setting" in text
    assert "audit record are still kept" in text
    assert lead.get(f"/submissions/{history['middle']}/checked-copy").status_code == 200
    south = app.test_client()
    login(south, "south-lead")  # another area still learns nothing about it
    assert south.get(f"/submissions/{history['old']}/checked-copy").status_code == 403


def run(*args: str):  # noqa: ANN201
    return CliRunner().invoke(main, list(args))


def test_purge_command(app: Flask, history: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEARMISS_RETENTION_DAYS", raising=False)
    refused = run("admin", "purge")
    assert refused.exit_code == 1 and "NEARMISS_RETENTION_DAYS" in refused.output
    dry = run("admin", "purge", "--days", "30", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"would remove submission {history['old']} of OAK (oak-log.xlsx" in dry.output
    assert "Retention (30 days): would remove 1 stored file" in dry.output
    assert file_of(app, history["old"]).is_file() and purge_events(app) == []
    monkeypatch.setenv("NEARMISS_RETENTION_DAYS", "5")
    done = run("admin", "purge")
    assert done.exit_code == 0, done.output
    assert "Retention (5 days): removed 2 stored files" in done.output
    assert {e.what for e in purge_events(app)} == {f"submission:{history['old']}", f"submission:{history['middle']}"}
    assert all(e.who.startswith("cli") for e in purge_events(app))
    assert run("admin", "purge", "--days", "-1").exit_code == 2


def test_serve_purges_at_start(app: Flask, history: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import waitress

    monkeypatch.setattr(waitress, "serve", lambda app, **kw: None)
    monkeypatch.delenv("NEARMISS_RETENTION_DAYS", raising=False)
    kept = run("serve", "--port", "5125")
    assert kept.exit_code == 0 and "retention" not in kept.output  # unset: every file is kept
    assert purge_events(app) == []
    monkeypatch.setenv("NEARMISS_RETENTION_DAYS", "30")
    started = run("serve", "--port", "5125")
    assert started.exit_code == 0, started.output
    assert "nearmiss: retention (30 days): removed 1 stored file" in started.output
    (event,) = purge_events(app)
    assert event.who == "system:retention" and not file_of(app, history["old"]).exists()


def test_retention_setting_must_be_whole_days(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    assert app.config["RETENTION_DAYS"] is None  # unset: keep forever
    for value in ("thirty", "-3", "1.5"):
        monkeypatch.setenv("NEARMISS_RETENTION_DAYS", value)
        with pytest.raises(RuntimeError, match="NEARMISS_RETENTION_DAYS must be a whole number"):
            create_app({"TESTING": True})
    monkeypatch.setenv("NEARMISS_RETENTION_DAYS", " 365 ")
    configured = create_app({"TESTING": True})
    assert configured.config["RETENTION_DAYS"] == 365
    get_db(configured).dispose()


def test_a_purge_killed_half_way_is_finished_by_the_next(app: Flask, history: dict) -> None:
    """A file moved aside and not yet deleted: deleted if its row was marked, put back if not."""
    folder = Path(app.config["UPLOAD_FOLDER"])
    old, middle = row(app, history["old"]), row(app, history["middle"])
    os.replace(folder / old.stored_name, folder / f".{old.stored_name}.purge")  # killed before its commit
    retention.purge(get_db(app), upload_folder=folder, days=30, who="test")
    assert not (folder / old.stored_name).exists() and row(app, history["old"]).file_removed_at is not None
    with get_db(app).sessions() as session:  # killed after its commit
        session.execute(update(Submission).where(Submission.id == middle.id).values(file_removed_at=utcnow()))
        session.commit()
    os.replace(folder / middle.stored_name, folder / f".{middle.stored_name}.purge")
    assert retention.purge(get_db(app), upload_folder=folder, days=30, who="test").removed == []
    assert not list(folder.glob(".*")) and not (folder / middle.stored_name).exists()
    assert (folder / row(app, history["new"]).stored_name).is_file()
