"""A server killed in the middle of an ingest leaves no partial submission after restart (SQLite and PostgreSQL).

Each test stores OAK's first workbook, starts a real ``nearmiss serve`` with the test-only
``NEARMISS_TEST_PAUSE_INGEST=<point>`` (server/ingest.py ``_test_pause``: the ingest says so on
stderr and waits there), sends OAK's second workbook, and SIGKILLs the server the moment it
reports the point:

- ``written``: the ``.part`` file is complete, no transaction has begun;
- ``in_transaction``: every row is written, nothing committed;
- ``committed``: the submission is committed, its file still has the ``.part`` name.

The test first checks that the kill left what it should (proof that the moment was hit), then
restarts the server on the same instance and database: start-up recovery (server/recovery.py)
must leave every submission whole, with its file, no ``.part`` file and no orphaned row; the
site's current submission is the old one, or the new one when it had committed; the audit log
says what recovery did; and the same upload sent again is stored (or, when it had committed,
answered as a duplicate).  These servers read uploads in-process (``NEARMISS_PARSE_ISOLATED=0``):
every kill point comes after reading, and starting a fork server in each of them would double
the run time (tests/server/test_concurrent_uploads.py runs with the reader processes).
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from server import ingest
from server.db import get_db
from server.models import AuditEvent, Submission
from server.recovery import recover_uploads

from .live import LiveServer, check_whole, server_environment, upload
from .support import site_token

POINTS = ("written", "in_transaction", "committed")


def current_sha(app: Flask) -> list[str]:
    with get_db(app).sessions() as session:
        return session.scalars(select(Submission.file_sha256).where(Submission.is_current.is_(True))).all()


def recovery_events(app: Flask) -> list[tuple[str, str, dict]]:
    with get_db(app).sessions() as session:
        return [tuple(r) for r in session.execute(
            select(AuditEvent.action, AuditEvent.what, AuditEvent.detail)
            .where(AuditEvent.who == "system:recovery").order_by(AuditEvent.id)).all()]


@pytest.mark.parametrize("point", POINTS)
def test_a_server_killed_mid_ingest_leaves_no_partial_submission(
        point: str, make_app, instance: Path, database_url: str | None, workbooks, tmp_path: Path) -> None:  # noqa: ANN001
    app = make_app()  # in-process, on this test's database: stores the first workbook and looks at the state
    folder = Path(app.config["UPLOAD_FOLDER"])
    token = site_token(app, "OAK")
    old, new = workbooks.path("OAK", 1).read_bytes(), workbooks.path("OAK", 2).read_bytes()
    old_sha, new_sha = hashlib.sha256(old).hexdigest(), hashlib.sha256(new).hexdigest()
    first = ingest.submit(get_db(app), data=old, original_name="oak-1.xlsx", upload_folder=folder, who="test",
                          site_code="OAK")
    assert not first.duplicate

    env = server_environment(instance, database_url, NEARMISS_PARSE_ISOLATED="0")  # no fork server to start
    paused = LiveServer({**env, "NEARMISS_TEST_PAUSE_INGEST": point}, tmp_path / "serve-paused.log")
    outcome: dict[str, object] = {}

    def send() -> None:
        try:
            outcome["answer"] = upload(paused, token, new, "oak-2.xlsx", timeout=90)
        except OSError as exc:  # the connection dies with the server
            outcome["error"] = exc

    client = threading.Thread(target=send, daemon=True)
    try:
        paused.start()
        client.start()
        paused.wait_for_log(f"nearmiss-test: ingest paused at {point}", timeout=60)
        paused.kill()
    finally:
        paused.stop()
        client.join(30)
    assert not client.is_alive()
    assert "answer" not in outcome and "error" in outcome, outcome  # the client was told nothing

    # What the kill left, before any recovery: proof that it struck at the point.
    parts = [p for p in folder.iterdir() if p.name.endswith(".part")]
    assert len(parts) == 1 and parts[0].read_bytes() == new
    with get_db(app).sessions() as session:
        stored_new = session.scalars(select(Submission).where(Submission.file_sha256 == new_sha)).all()
    if point == "committed":
        assert len(stored_new) == 1 and parts[0].name == ingest.part_name(stored_new[0].stored_name)
        assert not (folder / stored_new[0].stored_name).exists()  # a submission without its file, until recovery
    else:
        assert stored_new == []
    assert current_sha(app) == [new_sha if point == "committed" else old_sha]

    with LiveServer(env, tmp_path / "serve-restarted.log") as restarted:
        with get_db(app).sessions() as session:
            whole = check_whole(session, folder)  # every submission has its rows and file; no .part
        assert [s.file_sha256 for s in whole] == ([old_sha, new_sha] if point == "committed" else [old_sha])
        assert current_sha(app) == [new_sha if point == "committed" else old_sha]
        events = recovery_events(app)
        if point == "committed":
            assert [(a, w) for a, w, _ in events] == [("upload.part_completed", f"submission:{stored_new[0].id}")]
            assert events[0][2]["stored_name"] == stored_new[0].stored_name
        else:
            assert [(a, w) for a, w, _ in events] == [("upload.part_removed", parts[0].name)]
            assert events[0][2]["size"] == len(new)

        status, body = upload(restarted, token, new, "oak-2.xlsx")
        assert status == (200 if point == "committed" else 201), body
        assert body["duplicate"] is (point == "committed") and body["is_current"] is True
        if point == "committed":
            assert body["submission_id"] == stored_new[0].id
        with get_db(app).sessions() as session:
            whole = check_whole(session, folder)
        assert [s.file_sha256 for s in whole] == [old_sha, new_sha]
        assert current_sha(app) == [new_sha]
        assert body["counts"] == {"incidents": whole[1].n_incidents, "actions": whole[1].n_actions}
    assert len(recovery_events(app)) == 1  # the second start found nothing to do


def test_recovery_leaves_the_file_of_a_running_ingest_alone(app: Flask) -> None:
    """A ``.part`` file whose ingest still runs (its flock held) is not touched; once let go, it is removed."""
    folder = Path(app.config["UPLOAD_FOLDER"])
    _stored_name, path, lock = ingest._write_part(folder, b"PK\x03\x04 synthetic bytes")
    try:
        result = recover_uploads(get_db(app), folder)
        assert (result.in_use, result.removed, result.completed) == ([path.name], [], [])
        assert path.exists()
        assert recovery_events(app) == []
    finally:
        os.close(lock)  # as if its process had died
    result = recover_uploads(get_db(app), folder)
    assert (result.in_use, result.removed, result.completed) == ([], [path.name], [])
    assert not path.exists()
    assert [(a, w) for a, w, _ in recovery_events(app)] == [("upload.part_removed", path.name)]


def test_recovery_waits_while_an_ingest_makes_and_locks_its_file(app: Flask) -> None:
    """The moment between making a .part file and locking it is covered by the folder's shared flock."""
    import fcntl

    folder = Path(app.config["UPLOAD_FOLDER"])
    directory = os.open(folder, os.O_RDONLY)
    fcntl.flock(directory, fcntl.LOCK_SH)  # as ingest._write_part does around making the file
    path = folder / ingest.part_name("0" * 32 + ".xlsx")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # made, not yet locked
    found = {}
    recovery = threading.Thread(target=lambda: found.update(r=recover_uploads(get_db(app), folder)), daemon=True)
    try:
        recovery.start()
        recovery.join(0.5)
        assert recovery.is_alive()  # waiting for the folder's lock
        fcntl.flock(fd, fcntl.LOCK_EX)
    finally:
        os.close(directory)
    recovery.join(30)
    try:
        assert found["r"].in_use == [path.name] and found["r"].removed == [] and path.exists()
    finally:
        os.close(fd)


def test_recovery_ignores_files_it_did_not_make(app: Flask) -> None:
    folder = Path(app.config["UPLOAD_FOLDER"])
    other = folder / ".notes.part"
    other.write_text("not an upload")
    result = recover_uploads(get_db(app), folder)
    assert (result.in_use, result.removed, result.completed) == ([], [], [])
    assert other.exists()
