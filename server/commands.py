"""The `nearmiss serve` and `nearmiss admin ...` commands: thin layers over the server's modules.

Flask, the app and the reader are imported inside the commands, so the other verbs start without them.
"""

from __future__ import annotations

import getpass
import sys

import click

from workbook_templates.codelists import codes

# As server.models.ROLES / USER_ROLES (a test keeps them equal); restated so that the CLI
# starts without importing SQLAlchemy.
ROLES = ("site", "area_lead", "admin")
USER_ROLES = ("site_manager", "area_lead", "admin")


def cli_who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "cli"


def _app():  # noqa: ANN202
    from . import create_app

    try:
        return create_app()
    except Exception as exc:  # the database or instance folder is not usable: say so plainly
        raise click.ClickException(f"cannot open the nearmiss database: {exc}") from exc


def _run_admin(fn, **kwargs):  # noqa: ANN001, ANN202
    """Run an admin function in one transaction; AdminError becomes a clean CLI error."""
    from .admin import AdminError
    from .db import get_db, write_session

    app = _app()
    database = get_db(app)
    try:
        # BEGIN IMMEDIATE on SQLite: a read-then-write transaction beside a busy server can otherwise
        # fail with "database is locked" (security.md); this one waits its turn instead.
        with write_session(database) as session:
            return fn(session, who=cli_who(), **kwargs)
    except AdminError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        database.dispose()


@click.command("serve", help="Run the consolidation server (the database is migrated on start).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option("--demo", is_flag=True, help="Load demo sites (synthetic data) and print their logins and tokens.")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 64),
              help="Worker threads (waitress).")
def serve_command(host: str, port: int, demo: bool, threads: int) -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    app = _app()
    click.echo(f"nearmiss: instance folder {app.instance_path}")
    from .db import get_db

    click.echo(f"nearmiss: database {get_db(app).engine.url.render_as_string(hide_password=True)} (schema up to date)")
    from .retention import purge_configured

    purged = purge_configured(app, who="system:retention")
    if purged is not None:
        click.echo(f"nearmiss: {purged.summary()}")
    from .config import isolation
    from .ingest import start_reader_server

    limits = isolation(app)
    if limits is not None:
        start_reader_server(limits)
        click.echo(f"nearmiss: {limits.workers} reader workers starting (they warm up in the background)")
    url = f"http://{host}:{port}/"
    if demo:
        from .demo import load_demo

        click.echo("nearmiss: loading demo sites (synthetic data) ...")
        for line in load_demo(app).lines(url):
            click.echo(line)
    try:
        import waitress
    except ImportError:
        click.echo("nearmiss: waitress is not installed, so this is Flask's development server: fine on a laptop, "
                   "not for a shared server (pip install waitress).", err=True)
        click.echo(f"nearmiss: serving on {url} (Ctrl+C stops)")
        app.run(host=host, port=port, debug=False, use_reloader=False)
        return
    click.echo(f"nearmiss: serving on {url} with waitress (Ctrl+C stops)")
    waitress.serve(app, host=host, port=port, threads=threads, ident="nearmiss")


@click.group("admin", help="Manage sites, areas, tokens and web logins; read the audit log; purge old files.")
def admin_group() -> None:
    """Administration (writes to the database of NEARMISS_INSTANCE / NEARMISS_DATABASE_URL)."""


@admin_group.command("add-site", help="Register a site (and its area if new); prints its upload token last.")
@click.option("--code", required=True, help="Site code, 2-8 capital letters or digits, e.g. OAK.")
@click.option("--name", required=True, help='Site name, e.g. "Oakview House".')
@click.option("--area", required=True, help="Area the site belongs to, e.g. North (made if new).")
@click.option("--setting", type=click.Choice(codes("setting")), default="care_home", show_default=True)
def add_site_command(code: str, name: str, area: str, setting: str) -> None:
    from .admin import add_site

    site, area_new, issued = _run_admin(add_site, code=code, name=name, area=area, setting=setting)
    if area_new:
        click.echo(f"Created area {area.strip()}.")
    click.echo(f"Created site {site.code} ({site.name}), {setting}, in area {area.strip()}.")
    click.echo(f"Upload token for {site.code} (shown once; give it to the site's manager, store it safely):")
    click.echo(issued.secret)


@admin_group.command("add-token", help="Issue an API token; prints it last.")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--area", default=None, help="The area, for --role area_lead.")
@click.option("--site", default=None, help="The site code, for --role site.")
@click.option("--label", default="", help="A note saying who holds the token.")
def add_token_command(role: str, area: str | None, site: str | None, label: str) -> None:
    from .admin import add_token

    issued = _run_admin(add_token, role=role, area=area, site=site, label=label)
    scope = f" for site {site.strip().upper()}" if site else f" for area {area.strip()}" if area else ""
    click.echo(f"Created {role} token {issued.token.id}{scope} (shown once; store it safely):")
    click.echo(issued.secret)


@admin_group.command("revoke-token", help="Revoke a token by its number (as printed when it was made).")
@click.argument("token_id", type=int)
def revoke_token_command(token_id: int) -> None:
    from .admin import revoke_token

    _run_admin(revoke_token, token_id=token_id)
    click.echo(f"Token {token_id} revoked.")


@admin_group.command("add-user", help="Create a web login.")
@click.option("--username", required=True)
@click.option("--role", type=click.Choice(USER_ROLES), required=True)
@click.option("--area", default=None, help="The area, for --role area_lead.")
@click.option("--site", default=None, help="The site code, for --role site_manager.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (one line).")
def add_user_command(username: str, role: str, area: str | None, site: str | None, password_stdin: bool) -> None:
    from .admin import add_user

    password = _read_password(password_stdin)
    user = _run_admin(add_user, username=username, password=password, role=role, area=area, site=site)
    click.echo(f"Created {role} login {user.username}.")


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@admin_group.command("set-password", help="Give a web login a new password (its open sessions end).")
@click.option("--username", required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (one line).")
def set_password_command(username: str, password_stdin: bool) -> None:
    from .admin import set_password

    user = _run_admin(set_password, username=username, password=_read_password(password_stdin))
    click.echo(f"New password set for {user.username}.")


@admin_group.command("disable-user", help="Stop a web login (its open sessions end; the audit trail stays).")
@click.option("--username", required=True)
def disable_user_command(username: str) -> None:
    from .admin import disable_user

    user = _run_admin(disable_user, username=username)
    click.echo(f"Login {user.username} disabled.")


def _parse_day(value: str | None, name: str):  # noqa: ANN202 - datetime | None
    import datetime as dt

    if not value:
        return None
    try:
        day = dt.date.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(f"give a date as YYYY-MM-DD, not {value!r}", param_hint=name) from None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


@admin_group.command("audit", help="Show the audit log, newest first: who did what, when, with which file.")
@click.option("--since", default=None, metavar="DATE", help="Only events on or after this day (YYYY-MM-DD, UTC).")
@click.option("--action", default="", metavar="X", help="Only actions starting with X, e.g. download or token.")
@click.option("--who", default="", help="Only events by someone starting with this, e.g. user:alice or token:3.")
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1, 1_000_000),
              help="At most this many events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of a table.")
def audit_command(since: str | None, action: str, who: str, limit: int, as_json: bool) -> None:
    import json

    from .admin import AuditQuery, audit_events, event_json
    from .db import get_db

    query = AuditQuery(action=action, who=who, since=_parse_day(since, "--since"))
    app = _app()
    database = get_db(app)
    try:
        with database.sessions() as session:
            events = [event_json(e) for e in audit_events(session, query, limit=limit)]
    finally:
        database.dispose()
    if as_json:
        for event in events:
            click.echo(json.dumps(event, ensure_ascii=False, sort_keys=True))
        return
    if not events:
        click.echo("No audit events match.")
        return
    for e in events:
        sha = f" sha256:{e['file_sha256'][:16]}" if e["file_sha256"] else ""
        click.echo(f"{e['at']}  {e['who']:<24} {e['action']:<26} {e['what']}{sha}")


@admin_group.command("purge", help="Remove the stored files of submissions superseded more than N days ago "
                                   "(the rows and the audit log stay).")
@click.option("--days", default=None, type=click.IntRange(0, 999_999), metavar="N",
              help="Days a superseded file is kept (default: NEARMISS_RETENTION_DAYS).")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
def purge_command(days: int | None, dry_run: bool) -> None:
    from .db import get_db
    from .retention import purge

    app = _app()
    database = get_db(app)
    try:
        if days is None:
            days = app.config.get("RETENTION_DAYS")
        if days is None:
            raise click.ClickException("Give --days N, or set NEARMISS_RETENTION_DAYS; without either every file "
                                       "is kept.")
        result = purge(database, upload_folder=app.config["UPLOAD_FOLDER"], days=days, who=cli_who(),
                       dry_run=dry_run)
    finally:
        database.dispose()
    for r in result.removed:
        note = "" if r.file_found else " (file already gone)"
        click.echo(f"{'would remove' if dry_run else 'removed'} submission {r.submission_id} of {r.site} "
                   f"({r.original_name}, superseded {r.superseded_at}){note}")
    click.echo(result.summary()[:1].upper() + result.summary()[1:] + ".")
