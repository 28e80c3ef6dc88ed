"""`nearmiss admin ...` and `nearmiss serve` through click's CliRunner, on this test's database."""

from __future__ import annotations

import hashlib

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select

from server import commands
from server.auth import authenticate_user
from server.cli import main
from server.db import get_db
from server.models import ROLES, USER_ROLES, Area, AuditEvent, Site, Token, User

from .support import bearer, upload


def run(*args: str, input: str | None = None):  # noqa: A002, ANN201
    result = CliRunner().invoke(main, list(args), input=input)
    return result


def last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


def test_add_site_prints_a_working_upload_token(app: Flask, workbooks) -> None:  # noqa: ANN001
    result = run("admin", "add-site", "--code", "oak", "--name", "Oakview House", "--area", "North")
    assert result.exit_code == 0, result.output
    token = last_line(result.output)
    assert len(token) >= 40 and " " not in token
    assert "Created area North" in result.output
    with get_db(app).sessions() as session:
        site = session.scalar(select(Site).where(Site.code == "OAK"))
        assert (site.name, site.area.name, site.setting) == ("Oakview House", "North", "care_home")
        row = session.scalar(select(Token).where(Token.site_id == site.id))
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()  # only the hash is kept
        assert token not in {str(v) for v in vars(row).values()}
        actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
        assert actions == ["area.add", "site.add", "token.add"]
        assert session.scalar(select(AuditEvent.who)).startswith("cli")
    # The token authenticates: the upload is judged (no file sent), not refused as unknown.
    response = app.test_client().post("/api/v1/submissions", headers=bearer(token))
    assert response.status_code == 400
    assert "file" in response.get_json()["error"]
    response = upload(app.test_client(), token, workbooks.path("OAK"))
    assert response.status_code == 201, response.get_json()

    again = run("admin", "add-site", "--code", "OAK", "--name", "Other", "--area", "North")
    assert again.exit_code == 1 and "already exists" in again.output
    second = run("admin", "add-site", "--code", "ELM", "--name", "Elm", "--area", "North", "--setting", "homecare")
    assert second.exit_code == 0 and "Created area" not in second.output


@pytest.mark.parametrize("args, message", [
    (["--code", "oak view", "--name", "x", "--area", "N"], "capital letters"),
    (["--code", "OAK", "--name", " ", "--area", "N"], "name"),
    (["--code", "OAK", "--name", "x", "--area", ""], "area"),
])
def test_add_site_refuses_bad_input(app: Flask, args: list[str], message: str) -> None:
    result = run("admin", "add-site", *args)
    assert result.exit_code != 0
    assert message in result.output
    with get_db(app).sessions() as session:
        assert session.scalars(select(Site)).all() == []
        assert session.scalars(select(Area)).all() == []  # all or nothing


def test_add_token_for_an_area_lead_reads_the_area(app: Flask) -> None:
    assert run("admin", "add-site", "--code", "OAK", "--name", "Oakview", "--area", "North").exit_code == 0
    result = run("admin", "add-token", "--role", "area_lead", "--area", "North")
    assert result.exit_code == 0, result.output
    token = last_line(result.output)
    response = app.test_client().get("/api/v1/incidents.csv?area=North", headers=bearer(token))
    assert response.status_code == 200
    assert response.data.decode().startswith("incident_ref,site_code,")
    assert run("admin", "add-token", "--role", "area_lead", "--area", "Nowhere").exit_code == 1
    assert run("admin", "add-token", "--role", "area_lead").exit_code == 1
    admin = last_line(run("admin", "add-token", "--role", "admin").output)
    assert app.test_client().get("/api/v1/actions.csv", headers=bearer(admin)).status_code == 200


def test_revoke_token(app: Flask) -> None:
    run("admin", "add-site", "--code", "OAK", "--name", "Oakview", "--area", "North")
    result = run("admin", "add-token", "--role", "area_lead", "--area", "North")
    token = last_line(result.output)
    token_id = result.output.split("token ")[1].split()[0]
    assert run("admin", "revoke-token", token_id).exit_code == 0
    response = app.test_client().get("/api/v1/incidents.csv", headers=bearer(token))
    assert response.status_code == 401


def test_add_user_with_password_from_stdin(app: Flask) -> None:
    run("admin", "add-site", "--code", "OAK", "--name", "Oakview", "--area", "North")
    result = run("admin", "add-user", "--username", "lead", "--role", "area_lead", "--area", "North",
                 "--password-stdin", input="correct horse battery\n")
    assert result.exit_code == 0, result.output
    result = run("admin", "add-user", "--username", "oakmgr", "--role", "site_manager", "--site", "OAK",
                 input="another good secret\nanother good secret\n")  # prompted, with confirmation
    assert result.exit_code == 0, result.output
    with get_db(app).sessions() as session:
        lead = session.scalar(select(User).where(User.username == "lead"))
        assert lead.password_hash != "correct horse battery" and lead.password_hash.startswith(("scrypt:", "pbkdf2:"))
        assert lead.area.name == "North"
        assert authenticate_user(session, "lead", "correct horse battery").id == lead.id
        assert authenticate_user(session, "lead", "wrong password") is None
        assert authenticate_user(session, "nobody", "correct horse battery") is None
        assert authenticate_user(session, "oakmgr", "another good secret").site.code == "OAK"
    short = run("admin", "add-user", "--username", "x1", "--role", "admin", "--password-stdin", input="short\n")
    assert short.exit_code == 1 and "at least" in short.output
    dup = run("admin", "add-user", "--username", "lead", "--role", "admin", "--password-stdin",
              input="correct horse battery\n")
    assert dup.exit_code == 1 and "already exists" in dup.output
    nosite = run("admin", "add-user", "--username", "m2", "--role", "site_manager", "--password-stdin",
                 input="correct horse battery\n")
    assert nosite.exit_code == 1 and "--site" in nosite.output


def test_cli_role_lists_match_the_models() -> None:
    assert commands.ROLES == ROLES
    assert commands.USER_ROLES == USER_ROLES


def test_serve_uses_waitress(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    import waitress

    calls = []
    monkeypatch.setattr(waitress, "serve", lambda app, **kw: calls.append(kw))
    result = run("serve", "--port", "5123")
    assert result.exit_code == 0, result.output
    assert calls == [{"host": "127.0.0.1", "port": 5123, "threads": 8, "ident": "nearmiss"}]
    assert "waitress" in result.output


def test_serve_demo_prints_logins_and_tokens(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    import waitress

    from server import demo

    loaded = []

    def fake_load(app: Flask) -> demo.DemoResult:  # the loader itself: test_ingest.py
        loaded.append(app)
        answer = {"counts": {"incidents": 5, "actions": 2}, "errors": 1, "warnings": 0}
        return demo.DemoResult(sites=[(demo.DEMO_SITES[0], answer)], tokens=[("area lead North", "tok-north")],
                               logins=[("demo-north", "pw-north", "area_lead")])

    monkeypatch.setattr(demo, "load_demo", fake_load)
    monkeypatch.setattr(waitress, "serve", lambda app, **kw: None)
    result = run("serve", "--demo", "--port", "5124")
    assert result.exit_code == 0, result.output
    assert len(loaded) == 1
    assert "OAK  Oakview House (North, care_home): 5 incidents" in result.output
    assert "demo-north" in result.output and "pw-north" in result.output
    assert "curl -H 'Authorization: Bearer tok-north' http://127.0.0.1:5124/api/v1/incidents.csv" in result.output


def test_an_area_name_differing_only_in_capitals_is_refused(app: Flask) -> None:
    runner = CliRunner()
    first = runner.invoke(main, ["admin", "add-site", "--code", "OAK", "--name", "Oakview", "--area", "North"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(main, ["admin", "add-site", "--code", "ELM", "--name", "Elmfield", "--area", "north"])
    assert second.exit_code != 0 and "already an area called 'North'" in second.output
    with get_db(app).sessions() as session:
        assert session.scalar(select(Site).where(Site.code == "ELM")) is None
        assert session.scalars(select(Area.name)).all() == ["North"]
