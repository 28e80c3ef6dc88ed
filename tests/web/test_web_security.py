"""Logins, CSRF, throttling and who may see what, through Flask's test client (SQLite and PostgreSQL)."""

from __future__ import annotations

import io
import re
import subprocess
import time
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from server.db import get_db
from server.models import AuditEvent, Submission

from .support import PASSWORD, add_sites_and_users, csrf_token, login


@pytest.fixture
def people(app: Flask) -> Flask:
    add_sites_and_users(app)
    return app


def audit_count(app: Flask, action: str) -> int:
    with get_db(app).sessions() as session:
        return session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action))


def test_csrf_token_is_needed_on_every_post(people: Flask, client: FlaskClient) -> None:
    # no token, or a wrong one: 400 and nothing done
    assert client.post("/login", data={"username": "admin", "password": PASSWORD}).status_code == 400
    csrf_token(client)  # the session now has a token; a made-up one is still refused
    response = client.post("/login", data={"username": "admin", "password": PASSWORD, "csrf_token": "forged"})
    assert response.status_code == 400 and "expired" in response.get_data(as_text=True)
    assert audit_count(people, "login") == 0

    assert login(client, "oak-manager").status_code == 302
    assert client.get("/upload").status_code == 200
    posted = client.post("/upload", content_type="multipart/form-data",
                         data={"files": (io.BytesIO(b"PK\x03\x04 not really"), "oak.xlsx")})
    assert posted.status_code == 400
    with get_db(people).sessions() as session:
        assert session.scalar(select(func.count()).select_from(Submission)) == 0
    assert client.post("/returns", data={"scope": "site:OAK", "period": "2026-Q3"}).status_code == 400
    assert client.post("/logout").status_code == 400
    assert client.get("/sites/OAK").status_code == 200  # still logged in

    # with the token: logged out, and the old token is no longer any good
    token = csrf_token(client, "/upload")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/sites/OAK").status_code == 302
    assert client.post("/login", data={"username": "oak-manager", "password": PASSWORD,
                                       "csrf_token": token}).status_code == 400


def test_failed_logins_are_throttled(people: Flask, client: FlaskClient) -> None:
    for attempt in range(5):
        response = login(client, "north-lead", f"wrong password {attempt}")
        assert response.status_code == 401
        assert "username or password is not right" in response.get_data(as_text=True)
    blocked = login(client, "north-lead")  # even the right password, for this user from this address
    assert blocked.status_code == 429
    text = blocked.get_data(as_text=True)
    assert "Too many failed attempts to log in as north-lead" in text and "Wait 15 minutes" in text
    assert int(blocked.headers["Retry-After"]) > 0
    assert audit_count(people, "login.failed") == 5 and audit_count(people, "login.throttled") == 1

    # another user from this address, and this user from another address, are not held up
    assert login(client, "south-lead").status_code == 302
    other = people.test_client()
    other.environ_base["REMOTE_ADDR"] = "10.1.2.3"
    assert login(other, "north-lead").status_code == 302


def test_who_sees_what(people: Flask, client: FlaskClient, workbooks) -> None:  # noqa: ANN001
    # not logged in: to the login page, coming back afterwards
    response = client.get("/areas/North")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=/areas/North")
    redirected = login(client, "north-lead", next="/sites/ELM")
    assert redirected.headers["Location"] == "/sites/ELM"
    client.post("/logout", data={"csrf_token": csrf_token(client, "/sites/ELM")})
    assert login(client, "north-lead", next="//evil.example/").headers["Location"] == "/"  # no open redirect

    # the site manager: their own site only, and uploads
    manager = people.test_client()
    login(manager, "oak-manager")
    assert manager.get("/").headers["Location"] == "/sites/OAK"
    for path, status in (("/sites/OAK", 200), ("/sites/oak", 200), ("/sites/ELM", 403), ("/areas/North", 403),
                         ("/areas/North/incidents.csv", 403), ("/sites/OAK/actions.csv", 200),
                         ("/sites/ELM/actions.csv", 403), ("/upload", 200), ("/returns", 200)):
        assert manager.get(path).status_code == status, path
    token = csrf_token(manager, "/upload")
    stored = manager.post("/upload", content_type="multipart/form-data", headers={"Accept": "application/json"},
                          data={"csrf_token": token,
                                "files": [(io.BytesIO(workbooks.path("OAK", 1).read_bytes()), "oak.xlsx"),
                                          (io.BytesIO(workbooks.path("ELM", 3).read_bytes()), "elm.xlsx")]})
    assert stored.status_code == 200
    oak, elm = stored.json
    assert oak["file"] == "oak.xlsx" and oak["site_code"] == "OAK" and oak["duplicate"] is False
    assert {"errors", "warnings", "findings", "counts"} <= set(oak)  # the API's answer
    assert elm["status"] == 403 and "for site ELM" in elm["error"]
    copy = manager.get(f"/submissions/{oak['submission_id']}/checked-copy")
    assert copy.status_code == 200 and copy.data[:2] == b"PK"
    assert "oak-checked.xlsx" in copy.headers["Content-Disposition"]

    # the area lead: the area and its sites; not another area, not uploads
    lead = people.test_client()
    login(lead, "north-lead")
    assert lead.get("/").headers["Location"] == "/areas/North"
    for path, status in (("/areas/North", 200), ("/areas/north", 200), ("/sites/OAK", 200), ("/sites/ELM", 200),
                         ("/areas/South", 403), ("/sites/BIR", 403), ("/areas/Nowhere", 403), ("/upload", 403),
                         ("/areas/North/governance.xlsx", 200), ("/areas/North/actions.csv", 200),
                         (f"/submissions/{oak['submission_id']}/checked-copy", 200)):
        assert lead.get(path).status_code == status, path
    csv = lead.get("/areas/North/incidents.csv")
    assert csv.mimetype == "text/csv" and csv.get_data(as_text=True).count("\r\n") == oak["counts"]["incidents"] + 1
    assert lead.get("/areas/North?from=2026-13").status_code == 400
    south = people.test_client()
    login(south, "south-lead")
    assert south.get(f"/submissions/{oak['submission_id']}/checked-copy").status_code == 403

    # the admin: everything; unknown names are 404
    admin = people.test_client()
    login(admin, "admin")
    overview = admin.get("/")
    assert overview.status_code == 200 and "All areas" in overview.get_data(as_text=True)
    for path, status in (("/areas/South", 200), ("/sites/BIR", 200), ("/areas/Nowhere", 404), ("/sites/ZZZ", 404),
                         ("/submissions/999/checked-copy", 404)):
        assert admin.get(path).status_code == status, path
    page = admin.get("/areas/North")
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert page.headers["X-Frame-Options"] == "DENY"


def test_every_post_of_the_pages_needs_the_csrf_token(people: Flask, client: FlaskClient) -> None:
    """Each POST route of the web pages (from the URL map) refuses a logged-in admin without the token."""
    login(client, "admin")
    posts = sorted(rule.rule for rule in people.url_map.iter_rules()
                   if rule.endpoint.startswith("web.") and "POST" in rule.methods)
    assert {"/login", "/logout", "/upload", "/returns"} <= set(posts)
    for path in posts:
        assert not re.search(r"<[^>]+>", path), f"{path}: give this test a URL for the new POST route"
        answer = client.post(path, data={"anything": "1"})
        assert answer.status_code == 400 and "expired" in answer.get_data(as_text=True), path
    assert client.get("/").status_code == 200  # still logged in: nothing was done
    templates = Path(__file__).resolve().parents[2] / "server" / "web" / "templates"
    for template in templates.glob("*.html"):
        for form in re.findall(r"<form\b[^>]*>.*?</form>", template.read_text(encoding="utf-8"), re.S | re.I):
            if re.search(r'method="post"', form, re.I):
                assert 'name="csrf_token" value="{{ csrf_token() }}"' in form, f"{template.name}: a form without it"


def test_session_cookie_settings(people: Flask, client: FlaskClient, make_app, monkeypatch) -> None:  # noqa: ANN001
    answer = login(client, "north-lead")
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Expires=" not in cookie and "Max-Age" not in cookie  # ends with the browser session ...
    assert "Secure" not in cookie  # (tests run over plain http)
    with client.session_transaction() as session:  # ... and on the server after SESSION_HOURS
        session["login_at"] = time.time() - 13 * 3600
    assert client.get("/areas/North").status_code == 302

    assert make_app(TESTING=False).config["SESSION_COOKIE_SECURE"] is True  # the default outside tests
    monkeypatch.setenv("NEARMISS_SECURE_COOKIES", "1")
    secure = make_app().test_client()
    assert "Secure" in login(secure, "north-lead").headers["Set-Cookie"]
    monkeypatch.setenv("NEARMISS_SECURE_COOKIES", "off")
    assert make_app(TESTING=False).config["SESSION_COOKIE_SECURE"] is False


def test_next_with_control_characters_is_refused(people: Flask, client: FlaskClient) -> None:
    # Browsers drop tabs and newlines: "/<TAB>/evil.example" would be "//evil.example"; a newline broke the header.
    for target in ("/\t/evil.example", "/\n/evil.example", "/\r\nSet-Cookie: a=b", "/\x00x"):
        answer = login(client, "north-lead", next=target)
        assert answer.status_code == 302 and answer.headers["Location"] == "/", repr(target)
        client.post("/logout", data={"csrf_token": csrf_token(client, "/returns")})
    assert login(client, "north-lead", next="/sites/ELM?from=2026-01").headers["Location"] == "/sites/ELM?from=2026-01"


def test_new_password_or_disabled_login_ends_open_sessions(people: Flask) -> None:
    from server.admin import disable_user, set_password

    manager = people.test_client()
    login(manager, "oak-manager")
    assert manager.get("/sites/OAK").status_code == 200
    with get_db(people).sessions() as session:
        set_password(session, "oak-manager", "a brand new password", who="test")
        session.commit()
    assert manager.get("/sites/OAK").status_code == 302  # the old session is over
    assert login(manager, "oak-manager").status_code == 401
    assert login(manager, "oak-manager", "a brand new password").status_code == 302
    assert manager.get("/sites/OAK").status_code == 200
    with get_db(people).sessions() as session:
        disable_user(session, "oak-manager", who="test")
        session.commit()
        assert session.scalar(select(AuditEvent.action).order_by(AuditEvent.id.desc())) == "user.disable"
    assert manager.get("/sites/OAK").status_code == 302
    assert login(manager, "oak-manager", "a brand new password").status_code == 401


def test_no_secret_is_committed() -> None:
    """No key-looking string in the tracked files, and nothing of the instance folder is tracked."""
    root = Path(__file__).resolve().parents[2]
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
    files = [name for name in tracked.decode().split("\0") if name]
    assert files, "git ls-files listed nothing"
    assert not [f for f in files if f.startswith("instance/") or f.endswith(("secret_key", ".pem", ".key", ".db"))]
    known = re.compile(r"BEGIN [A-Z ]*PRIVATE KEY|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|xox[abprs]-[A-Za-z0-9-]+"
                       r"|sk_live_[A-Za-z0-9]{16,}")
    assignment = re.compile(r"""(?i)\b(?:SECRET_KEY|NEARMISS_SECRET_KEY|NEARMISS_TOKEN|API_KEY)\b\s*[:=]\s*"""
                            r"""["'][^"'\s]{8,}""")
    random_looking = re.compile(r"(?<![\w\-])[A-Za-z0-9_\-]{32,}(?![\w\-])")  # e.g. secrets.token_urlsafe(32)
    found = []
    for name in files:
        try:
            text = (root / name).read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue  # binary (workbooks) or deleted in the working tree
        found += [f"{name}: {m.group()[:40]}" for m in known.finditer(text)]
        found += [f"{name}: {m.group()[:40]}" for m in assignment.finditer(text)]
        found += [f"{name}: {m.group()[:12]}..." for m in random_looking.finditer(text)
                  if all(re.search(p, m.group()) for p in ("[A-Z]", "[a-z]", "[0-9]"))
                  and not re.fullmatch(r"[A-Za-z]+(_[A-Za-z0-9]+)+", m.group())]
    assert not found, f"key-looking strings in tracked files: {found}"


def test_the_upload_page_says_when_a_log_is_far_smaller_than_the_one_it_replaces(people: Flask, client: FlaskClient,
                                                                                 workbooks, tmp_path) -> None:  # noqa: ANN001
    from workbook_templates.builder import build_workbook
    from workbook_templates.records import SiteRecords

    full_path, full = workbooks.get("OAK", seed=1)
    empty = build_workbook(tmp_path / "empty.xlsx", SiteRecords(site=dict(full.site)))
    assert login(client, "oak-manager").status_code == 302

    def send(path: Path) -> str:
        token = csrf_token(client, "/upload")
        answer = client.post("/upload", content_type="multipart/form-data",
                             data={"csrf_token": token, "files": (io.BytesIO(path.read_bytes()), path.name)})
        assert answer.status_code == 200
        return answer.get_data(as_text=True)

    assert "where the one it replaces had" not in send(full_path)
    page = send(empty)
    assert 'class="notice notice-warning" role="status"' in page
    assert f"This log has 0 reports where the one it replaces had {len(full.incidents)}." in page
