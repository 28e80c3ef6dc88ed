"""The audit log: every submission, download and admin change leaves who, what, when and the file's hash.

Read back through ``/admin/audit`` (administrators only) and ``nearmiss admin audit``.  SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import re

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select

from server.admin import audit
from server.cli import main
from server.db import get_db, write_session
from server.models import AuditEvent, Token
from tests.web.support import add_sites_and_users, csrf_token, login

from .support import admin_token, area_token, bearer, site_token, upload

PERIOD = "2026-Q3"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def events_since(app: Flask, after_id: int) -> list[AuditEvent]:
    with get_db(app).sessions() as session:
        return session.scalars(select(AuditEvent).where(AuditEvent.id > after_id).order_by(AuditEvent.id)).all()


def last_id(app: Flask) -> int:
    with get_db(app).sessions() as session:
        return session.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc())) or 0


def at_utc(event: AuditEvent) -> dt.datetime:
    return event.at if event.at.tzinfo else event.at.replace(tzinfo=dt.UTC)


class Recorder:
    """Runs one action and returns the single audit event it wrote (checking when it was written)."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def one(self, action, *, expect: str):  # noqa: ANN001, ANN202
        before_id, before = last_id(self.app), dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        result = action()
        events = [e for e in events_since(self.app, before_id) if not e.action.startswith(("login", "logout"))]
        assert [e.action for e in events] == [expect], [e.action for e in events]
        event = events[0]
        assert before <= at_utc(event) <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
        assert event.who and event.what
        return event, result


def test_every_submission_is_audited_with_its_hash(app: Flask, workbooks) -> None:  # noqa: ANN001
    token = site_token(app, "OAK")
    client = app.test_client()
    record = Recorder(app)
    data = workbooks.path("OAK", 1).read_bytes()
    with get_db(app).sessions() as session:
        token_id = session.scalar(select(Token.id).where(Token.role == "site"))

    stored, answer = record.one(lambda: upload(client, token, data), expect="submission.stored")
    assert answer.status_code == 201
    assert (stored.who, stored.what) == (f"token:{token_id}", f"submission:{answer.get_json()['submission_id']}")
    assert stored.file_sha256 == sha(data) and stored.detail["site"] == "OAK"

    duplicate, answer = record.one(lambda: upload(client, token, data), expect="submission.duplicate")
    assert answer.status_code == 200 and duplicate.file_sha256 == sha(data) and duplicate.who == f"token:{token_id}"

    junk = b"PK\x03\x04 this is no workbook"
    refused, answer = record.one(lambda: upload(client, token, junk), expect="submission.refused")
    assert answer.status_code == 422 and refused.file_sha256 == sha(junk) and refused.what == "site:OAK"
    assert refused.detail["status"] == 422 and refused.detail["reason"]

    add_sites_and_users(app)  # the web page's uploads: by the login, with the same hashes
    manager = app.test_client()
    login(manager, "oak-manager")
    elm = workbooks.path("ELM", 3, setting="homecare").read_bytes()

    def web_upload() -> object:
        return manager.post("/upload", content_type="multipart/form-data", headers={"Accept": "application/json"},
                            data={"csrf_token": csrf_token(manager, "/upload"), "files": [(io.BytesIO(elm), "elm.xlsx")]})

    refused, answer = record.one(web_upload, expect="submission.refused")
    assert answer.get_json()[0]["status"] == 403
    assert (refused.who, refused.what, refused.file_sha256) == ("user:oak-manager", "site:OAK", sha(elm))


@pytest.fixture
def stored(app: Flask, workbooks) -> dict:  # noqa: ANN001
    """North (OAK, ELM) with their logs, users and tokens."""
    add_sites_and_users(app)
    from server import ingest

    ids = {}
    for code, seed, setting in (("OAK", 1, "care_home"), ("ELM", 3, "homecare")):
        data = workbooks.path(code, seed, setting=setting).read_bytes()
        result = ingest.submit(get_db(app), data=data, original_name=f"{code}.xlsx", who="test", site_code=code,
                               upload_folder=app.config["UPLOAD_FOLDER"])
        ids[code] = (result.submission.id, sha(data))
    return {"ids": ids, "lead": area_token(app, "North"), "admin": admin_token(app)}


def test_every_download_is_audited_with_the_hash_of_what_was_sent(app: Flask, stored: dict) -> None:
    record = Recorder(app)
    api = app.test_client()
    lead = bearer(stored["lead"])
    with get_db(app).sessions() as session:
        lead_who = session.scalar(select(Token).where(Token.role == "area_lead")).who
    for path, action, what in (
        ("/api/v1/incidents.csv", "download.incidents_csv", "area:North"),
        ("/api/v1/actions.csv?site=OAK", "download.actions_csv", "site:OAK"),
        ("/api/v1/summary?area=North", "download.summary", "area:North"),
        (f"/api/v1/returns?area=North&period={PERIOD}", "download.return", "area:North"),
    ):
        event, answer = record.one(lambda p=path: api.get(p, headers=lead), expect=action)
        assert answer.status_code == 200, path
        assert (event.who, event.what, event.file_sha256) == (lead_who, what, sha(answer.data)), path

    web = app.test_client()
    login(web, "north-lead")
    oak_id, oak_sha = stored["ids"]["OAK"]
    for path, action, what in (
        ("/areas/North/incidents.csv", "download.incidents_csv", "area:North"),
        ("/sites/ELM/actions.csv", "download.actions_csv", "site:ELM"),
        ("/areas/North/governance.xlsx", "download.governance", "area:North"),
        ("/sites/OAK/governance.xlsx", "download.governance", "site:OAK"),
        (f"/submissions/{oak_id}/checked-copy", "download.checked_copy", f"submission:{oak_id}"),
    ):
        event, answer = record.one(lambda p=path: web.get(p), expect=action)
        assert answer.status_code == 200, path
        assert (event.who, event.what, event.file_sha256) == ("user:north-lead", what, sha(answer.data)), path
    assert event.detail["submission_file_sha256"] == oak_sha  # the checked copy names the workbook it came from

    def web_return() -> object:
        return web.post("/returns", data={"scope": "site:OAK", "period": PERIOD,
                                          "csrf_token": csrf_token(web, "/returns")})

    event, answer = record.one(web_return, expect="download.return")
    assert answer.status_code == 200 and event.file_sha256 == sha(answer.data) and event.what == "site:OAK"


def cli(*args: str, input: str | None = None):  # noqa: A002, ANN201
    result = CliRunner().invoke(main, list(args), input=input)
    assert result.exit_code == 0, result.output
    return result


def test_every_admin_change_is_audited(app: Flask) -> None:
    before_id = last_id(app)
    cli("admin", "add-site", "--code", "OAK", "--name", "Oakview House", "--area", "North")
    made = cli("admin", "add-token", "--role", "area_lead", "--area", "North").output
    token_id = re.search(r"token (\d+)", made).group(1)
    cli("admin", "revoke-token", token_id)
    cli("admin", "add-user", "--username", "lead", "--role", "area_lead", "--area", "North", "--password-stdin",
        input="correct horse battery\n")
    cli("admin", "set-password", "--username", "lead", "--password-stdin", input="another long password\n")
    cli("admin", "disable-user", "--username", "lead")
    events = events_since(app, before_id)
    assert [(e.action, e.what) for e in events] == [
        ("area.add", "area:North"), ("site.add", "site:OAK"), ("token.add", events[2].what),
        ("token.add", f"token:{token_id}"), ("token.revoke", f"token:{token_id}"), ("user.add", "user:lead"),
        ("user.password", "user:lead"), ("user.disable", "user:lead")]
    assert {e.who for e in events} == {events[0].who} and events[0].who.startswith("cli")
    assert all(e.at is not None for e in events)
    assert "another long password" not in json.dumps([e.detail for e in events])  # no secret in the log
    with get_db(app).sessions() as session:
        assert session.get(Token, int(token_id)).revoked_at is not None


def add_events(app: Flask, n: int, *, action: str = "test.filler", who: str = "user:filler",
               at: dt.datetime | None = None) -> None:
    with write_session(get_db(app)) as session:
        for i in range(n):
            event = audit(session, who, action, f"thing:{i}", file_sha256=sha(str(i).encode()))
            if at is not None:
                event.at = at


def test_audit_page_for_admins_only_filtered_paginated_newest_first(app: Flask) -> None:
    add_sites_and_users(app)
    add_events(app, 3, action="download.old", who="token:9", at=dt.datetime(2026, 1, 15, 12, tzinfo=dt.UTC))
    add_events(app, 60)
    admin = app.test_client()
    login(admin, "admin")
    page = admin.get("/admin/audit")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and 'href="/admin/audit"' in text  # linked from the nav
    total = len(events_since(app, 0))
    assert f"Events 1 to 50 of {total}." in text
    shown = re.findall(r"<tr><td class=\"nowrap\">([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td>", text)
    assert len(shown) == 50
    assert shown[0][2] == "login" and shown[0][1] == "user:admin"  # newest first: this admin's login
    assert [s[0] for s in shown] == sorted((s[0] for s in shown), reverse=True)
    assert sha(b"59")[:16] in text  # the file hash is shown
    second = admin.get("/admin/audit?page=2").get_data(as_text=True)
    assert f"Events 51 to {total} of {total}." in second and "download.old" in second  # the oldest last

    filtered = admin.get("/admin/audit?action=download&who=token:9&from=2026-01-01&to=2026-01-31")
    assert "Events 1 to 3 of 3." in filtered.get_data(as_text=True)
    assert "No events match." in admin.get("/admin/audit?action=download&from=2026-01-16").get_data(as_text=True)
    assert "Events 1 to 3 of 3." in admin.get("/admin/audit?to=2026-01-15").get_data(as_text=True)
    bad = admin.get("/admin/audit?from=15/01/2026")
    assert bad.status_code == 400 and "YYYY-MM-DD" in bad.get_data(as_text=True)

    for username in ("oak-manager", "north-lead"):
        other = app.test_client()
        login(other, username)
        answer = other.get("/admin/audit")
        assert answer.status_code == 403 and "download.old" not in answer.get_data(as_text=True)
        assert 'href="/admin/audit"' not in other.get("/returns").get_data(as_text=True)  # no nav link
    assert app.test_client().get("/admin/audit").status_code == 302


def test_audit_command(app: Flask) -> None:
    add_events(app, 2, action="download.old", who="token:9", at=dt.datetime(2026, 1, 15, 12, tzinfo=dt.UTC))
    cli("admin", "add-site", "--code", "OAK", "--name", "Oakview House", "--area", "North")
    lines = cli("admin", "audit", "--json").output.splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["action"] for e in events] == ["token.add", "site.add", "area.add", "download.old", "download.old"]
    assert set(events[0]) == {"id", "at", "who", "action", "what", "file_sha256", "detail"}
    assert events[-1]["at"].startswith("2026-01-15T12:00:00") and events[-1]["file_sha256"] == sha(b"0")
    since = [json.loads(line) for line in cli("admin", "audit", "--json", "--since", "2026-02-01").output.splitlines()]
    assert [e["action"] for e in since] == ["token.add", "site.add", "area.add"]
    table = cli("admin", "audit", "--action", "download").output.splitlines()
    assert len(table) == 2 and all("download.old" in line and "sha256:" in line for line in table)
    assert "No audit events match." in cli("admin", "audit", "--action", "nothing").output
    wrong = CliRunner().invoke(main, ["admin", "audit", "--since", "yesterday"])
    assert wrong.exit_code == 2 and "YYYY-MM-DD" in wrong.output
