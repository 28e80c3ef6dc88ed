"""The web pages (see the package docstring for the list and who may see what)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
from flask import (
    Response, abort, current_app, flash, jsonify, redirect, render_template, request, session, url_for,
)
from sqlalchemy import select
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from addin.findings import Finding
from workbook_templates.contract import ACTIONS, INCIDENTS

from .. import ingest, queries, summary as summaries
from ..admin import audit
from ..api_reports import XLSX, ReturnRequestError, make_return, parse_suppress_below, xlsx_response
from ..auth import authenticate_user, password_stamp
from ..config import isolation
from ..db import end_read_transaction, get_db, get_session, write_session
from ..models import FindingRow, Submission, User
from . import bp, charts, csrf
from .access import (
    ROLE_WORDS, area_or_abort, current_user, login_required, may_see_site, safe_next, site_or_abort,
    visible_areas, visible_sites,
)
from .throttle import throttle_for

MAX_FILES = 20
SETTING_WORDS = {"care_home": "Care home", "homecare": "Homecare", "supported_living": "Supported living",
                 "complex_care_at_home": "Complex care at home"}
UNIT_WORDS = {"occupied_bed_days": "occupied bed days", "care_hours": "delivered care hours"}
MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
               "October", "November", "December")
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

csrf.protect(bp)


# --- page furniture ---------------------------------------------------------------------------------

@bp.after_request
def _security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if response.mimetype == "text/html":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


@bp.context_processor
def _globals() -> dict:
    return {"user": current_user(), "role_words": ROLE_WORDS, "setting_words": SETTING_WORDS,
            "unit_words": UNIT_WORDS, "month_word": charts.month_word, "fmt": charts.format_value,
            "code_word": code_word}


@bp.app_template_filter("when")
def _when(value: str | None) -> str:
    """ISO time -> "24 Nov 2026, 18:14" (UK time, as stored by server/summary.py)."""
    if not value:
        return "never"
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(summaries.LOCAL_TIME)
    return f"{moment.day} {charts.MONTHS[moment.month - 1]} {moment.year}, {moment:%H:%M}"


@bp.app_template_filter("day")
def _day(value: str | dt.date | None) -> str:
    if not value:
        return ""
    d = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])
    return f"{d.day} {charts.MONTHS[d.month - 1]} {d.year}"


def code_word(value: str | None) -> str:
    """A code as words: "pressure_care" -> "Pressure care"."""
    if not value:
        return ""
    text = str(value).replace("_", " ")
    return text[:1].upper() + text[1:]


def _error_page(exc: HTTPException):  # noqa: ANN202
    code = exc.code or 500
    if isinstance(exc, RequestEntityTooLarge):
        mb = current_app.config["MAX_CONTENT_LENGTH"] / (1024 * 1024)
        message = (f"The files are larger than this server accepts in one go ({mb:g} MB). "
                   "Send fewer workbooks at a time.")
    else:
        message = exc.description or exc.name
    titles = {400: "Something was wrong with the request", 403: "You cannot open this page",
              404: "Page not found", 410: "No longer kept", 413: "Too large", 429: "Too many attempts"}
    return render_template("error.html", code=code, title=titles.get(code, exc.name), message=message), code


for _code in (400, 403, 404, 405, 410, 413, 429):
    bp.register_error_handler(_code, _error_page)


# --- login ----------------------------------------------------------------------------------------------

def _client() -> str:
    return request.remote_addr or "unknown"


@bp.route("/login", methods=["GET", "POST"])
def login():  # noqa: ANN201
    next_url = safe_next(request.values.get("next"))
    if request.method == "GET":
        if current_user() is not None:
            return redirect(next_url or url_for("web.index"))
        return render_template("login.html", next=next_url, username="")
    username = (request.form.get("username") or "").strip()[:100]
    password = request.form.get("password") or ""
    throttle = throttle_for()
    wait = throttle.retry_after(username, _client())
    if wait:
        with write_session(get_db()) as write:
            audit(write, f"web:{_client()}", "login.throttled", f"user:{username}")
        minutes = max(1, round(wait / 60))
        message = (f"Too many failed attempts to log in as {username or 'this user'} from this computer. "
                   f"Wait {minutes} minute{'s' if minutes != 1 else ''} and try again, or ask your "
                   "administrator to reset your password.")
        response = render_template("login.html", next=next_url, username=username, error=message)
        return response, 429, {"Retry-After": str(wait)}
    user = authenticate_user(get_session(), username, password) if username and password else None
    if user is None:
        throttle.failed(username, _client())
        with write_session(get_db()) as write:
            audit(write, f"web:{_client()}", "login.failed", f"user:{username}")
        return render_template("login.html", next=next_url, username=username,
                               error="The username or password is not right. Check them and try again."), 401
    throttle.succeeded(username, _client())
    session.clear()
    session["user_id"] = user.id
    session["login_at"] = time.time()
    session["password_stamp"] = password_stamp(user)
    csrf.rotate()
    with write_session(get_db()) as write:
        audit(write, user.who, "login", f"user:{user.username}")
    return redirect(next_url or url_for("web.index"))


@bp.post("/logout")
def logout():  # noqa: ANN201
    user = current_user()
    if user is not None:
        with write_session(get_db()) as write:
            audit(write, user.who, "logout", f"user:{user.username}")
    session.clear()
    csrf.rotate()
    flash("You have logged out.")
    return redirect(url_for("web.login"))


@bp.get("/")
@login_required()
def index():  # noqa: ANN201
    user: User = current_user()
    if user.role == "site_manager" and user.site is not None:
        return redirect(url_for("web.site_page", code=user.site.code))
    if user.role == "area_lead" and user.area is not None:
        return redirect(url_for("web.area_page", name=user.area.name))
    if user.role != "admin":
        abort(403, "Your login has no site or area. Ask your administrator.")
    rows = []
    for area in visible_areas(user):
        data = summaries.get_summary(get_session(), summaries.Scope(area=area.name), today=summaries.today_for())
        rows.append((area, data))
    return render_template("overview.html", areas=rows)


# --- uploads ---------------------------------------------------------------------------------------------

@bp.route("/upload", methods=["GET", "POST"])
@login_required("site_manager", "admin")
def upload():  # noqa: ANN201
    user: User = current_user()
    if request.method == "GET":
        return render_template("upload.html", results=None)
    files = [f for f in request.files.getlist("files") if f and (f.filename or "").strip()]
    if not files:
        return render_template("upload.html", results=None,
                               error="Choose one or more workbooks (.xlsx) to check and send."), 400
    if len(files) > MAX_FILES:
        return render_template("upload.html", results=None,
                               error=f"Send at most {MAX_FILES} workbooks at a time."), 400
    results = [_store_upload(user, f) for f in files]
    if request.accept_mimetypes.best == "application/json":
        return jsonify([{"file": r["file"], **(r["answer"] if r["ok"] else {"error": r["error"],
                                                                             "status": r["status"]})}
                        for r in results])
    return render_template("upload.html", results=results)


def _store_upload(user: User, upload: Any) -> dict:
    data = upload.read()
    name = ingest.clean_name(upload.filename)
    sha = ingest.file_hash(data)
    site_code = user.site.code if user.role == "site_manager" and user.site is not None else None
    end_read_transaction()
    try:
        if user.role == "site_manager" and site_code is None:  # never let the Site sheet choose for them
            raise ingest.WrongSite("Your login is not tied to a site, so nothing can be sent. Ask your administrator.")
        if not data:
            raise ingest.NotAWorkbook("The file is empty. Send the saved .xlsx workbook.")
        result = ingest.submit(get_db(), data=data, original_name=name, who=user.who, site_code=site_code,
                               user_id=user.id, upload_folder=current_app.config["UPLOAD_FOLDER"],
                               isolation=isolation(current_app))
    except ingest.IngestError as exc:
        with write_session(get_db()) as write:
            audit(write, user.who, "submission.refused", f"site:{site_code}" if site_code else "",
                  file_sha256=sha, status=exc.status, reason=exc.message[:500], original_name=name)
        return {"file": name, "ok": False, "error": exc.message, "status": exc.status}
    queries.warm_snapshot(result)
    answer = result.to_json()
    state = "reinstated" if answer.get("reinstated") else "duplicate" if answer["duplicate"] else "stored"
    findings = sorted(answer["findings"], key=lambda f: (f["severity"] != "error", f["sheet"], _cell_key(f["cell"])))
    return {"file": name, "ok": True, "answer": answer, "state": state, "findings": findings}


def _cell_key(cell: str) -> tuple[int, str]:
    digits = "".join(ch for ch in cell if ch.isdigit())
    letters = "".join(ch for ch in cell if ch.isalpha())
    return (int(digits) if digits else 0, letters.rjust(3))


@bp.get("/submissions/<int:submission_id>/checked-copy")
@login_required()
def checked_copy(submission_id: int):  # noqa: ANN201
    """The workbook as it was sent, with a Checks sheet and its findings' cells highlighted."""
    from addin.xl.checked_copy import write_checked_copy

    user: User = current_user()
    session_db = get_session()
    submission = session_db.get(Submission, submission_id)
    if submission is None or not may_see_site(user, submission.site):
        abort(404 if user.role == "admin" else 403, "You cannot open this workbook.")
    if submission.file_removed_at is not None:
        days = current_app.config.get("RETENTION_DAYS")
        kept = f" {days} day{'s' if days != 1 else ''}" if days is not None else ""
        abort(410, f"The stored copy of this workbook ({submission.original_name}, sent by {submission.site.code}) "
                   f"was removed on {_day(ingest.iso_utc(submission.file_removed_at))} under the retention setting: "
                   f"files of superseded submissions are kept{kept} after a newer workbook replaces them. Its rows, "
                   "findings and audit record are still kept. Ask the site for the workbook if you need the file.")
    path = Path(current_app.config["UPLOAD_FOLDER"]) / submission.stored_name
    if not path.is_file():
        abort(404, "The stored copy of this workbook is no longer on the server.")
    rows = session_db.scalars(select(FindingRow).where(FindingRow.submission_id == submission.id)
                              .order_by(FindingRow.id)).all()
    findings = [Finding(file=submission.original_name, sheet=r.sheet, cell=r.cell, ref=r.ref, rule=r.rule,
                        severity=r.severity, message=r.message) for r in rows]
    content = write_checked_copy(path.read_bytes(), findings, None, file=submission.original_name)
    with write_session(get_db()) as write:
        audit(write, user.who, "download.checked_copy", f"submission:{submission.id}",
              file_sha256=ingest.file_hash(content), site=submission.site.code, findings=len(findings),
              submission_file_sha256=submission.file_sha256)
    stem = Path(submission.original_name or "workbook.xlsx").stem or "workbook"
    return _download(content, f"{stem}-checked.xlsx", XLSX)


def _download(content: bytes | str, filename: str, mimetype: str) -> Response:
    ascii_name = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else "_" for ch in filename)
    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
    return Response(content, mimetype=mimetype, headers={"Content-Disposition": disposition,
                                                         "Cache-Control": "no-store"})


# --- summaries ---------------------------------------------------------------------------------------------

def _page_scope(kind: str, key: str) -> tuple[summaries.Scope, Any]:
    user: User = current_user()
    if kind == "area":
        area = area_or_abort(user, key)
        return summaries.Scope(area=area.name), area
    site = site_or_abort(user, key)
    return summaries.Scope(site=site.code), site


def _months_asked() -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    return (summaries.parse_month(request.args.get("from"), "From"),
            summaries.parse_month(request.args.get("to"), "To"))


def _summary_page(kind: str, key: str):  # noqa: ANN202
    scope, row = _page_scope(kind, key)
    error = None
    try:
        first, last = _months_asked()
        data = summaries.get_summary(get_session(), scope, today=summaries.today_for(), first=first, last=last)
    except summaries.RangeError as exc:
        error = str(exc)
        data = summaries.get_summary(get_session(), scope, today=summaries.today_for())
    model = page_model(data)
    return render_template("summary.html", s=data, m=model, kind=kind, row=row, error=error,
                           links=_links(kind, scope.area or scope.site, data)), (400 if error else 200)


def _links(kind: str, key: str, data: dict) -> dict[str, str]:
    rng = data["range"]
    months = {} if rng["is_default"] else {"from": rng["from"], "to": rng["to"]}
    target = {"name": key} if kind == "area" else {"code": key}
    plural = "areas" if kind == "area" else "sites"
    return {
        "governance": url_for("web.area_governance" if kind == "area" else "web.site_governance", **target, **months),
        "incidents_csv": url_for("web.csv_download", kind=plural, key=key, table="incidents"),
        "actions_csv": url_for("web.csv_download", kind=plural, key=key, table="actions"),
    }


@bp.get("/areas/<name>")
@login_required("area_lead", "admin")
def area_page(name: str):  # noqa: ANN201
    return _summary_page("area", name)


@bp.get("/sites/<code>")
@login_required()
def site_page(code: str):  # noqa: ANN201
    return _summary_page("site", code)


def page_model(s: dict) -> dict:
    """What the summary template shows, worked out from the summary (counts are never recomputed here)."""
    from ..reports.governance import headline

    months = s["months"]
    latest = slice(len(months) - 1, len(months)) if months else slice(0, 0)
    whole = headline(s)
    last = headline(s, latest)
    figures = [{"label": label, "kind": kind, "whole": value, "latest": last[i][1]}
               for i, (label, value, kind) in enumerate(whole)]
    now = s["actions"]["now"]
    measures = s["key_measures"]
    order = {"special_cause_concern": 0, "special_cause_neutral_high": 1, "special_cause_neutral_low": 1,
             "special_cause_improvement": 2}
    attention = sorted([m for m in measures if m["latest_point_type"] in order],
                       key=lambda m: order[m["latest_point_type"]])
    sites = []
    for info in s["sites"]:
        code = info["site_code"]
        block = s["per_site"][code]
        sub = s["submissions"].get(code, {})
        quality = s["data_quality"]["by_site"].get(code, {"errors": 0, "warnings": 0})
        rep = block["reports"]
        sites.append({
            "code": code, "name": info.get("site_name") or code, "setting": info.get("setting"),
            "reports": rep["total"], "near_misses": sum(rep["near_misses"]),
            "with_harm": sum(rep["incidents_with_harm"]),
            "open": block["actions"]["now"]["open"] + block["actions"]["now"]["in_progress"],
            "overdue": block["actions"]["now"]["overdue"],
            "errors": quality["errors"], "warnings": quality["warnings"], "sub": sub,
        })
    return {
        "has_data": any(sub.get("submission_id") is not None for sub in s["submissions"].values()),
        "figures": figures,
        "latest_month": months[-1] if months else None,
        "now": {"open": now["open"] + now["in_progress"], "overdue": now["overdue"], "total": now["total"]},
        "attention": attention,
        "sites": sites,
        "themes": s["learning_themes"][:15],
        "more_themes": max(0, len(s["learning_themes"]) - 15),
        "chart_rows": {m["name"]: charts.chart_rows(m) for m in measures},
        "figure": {m["name"]: charts.chart_figure(m, chart_id=f"chart-{m['name']}") for m in measures},
        "verdict": {m["name"]: charts.verdict(m) for m in measures},
        "signal": {m["name"]: charts.signal_text(m) for m in measures},
        "overdue": s["overdue_actions"][:100],
        "more_overdue": max(0, len(s["overdue_actions"]) - 100),
        "span": f"{charts.month_word(months[0])} to {charts.month_word(months[-1])}" if months else "no months",
        "this_month": f"{MONTH_NAMES[dt.date.fromisoformat(s['today']).month - 1]} "
                      f"{dt.date.fromisoformat(s['today']).year}",
    }


@bp.get("/areas/<name>/governance.xlsx")
@login_required("area_lead", "admin")
def area_governance(name: str):  # noqa: ANN201
    return _governance("area", name)


@bp.get("/sites/<code>/governance.xlsx")
@login_required()
def site_governance(code: str):  # noqa: ANN201
    return _governance("site", code)


def _governance(kind: str, key: str) -> Response:
    scope, _ = _page_scope(kind, key)
    user: User = current_user()
    try:
        first, last = _months_asked()
    except summaries.RangeError as exc:
        abort(400, str(exc))
    data = summaries.get_summary(get_session(), scope, today=summaries.today_for(), first=first, last=last)
    content = summaries.governance_workbook(get_session(), data)
    with write_session(get_db()) as write:
        audit(write, user.who, "download.governance", f"{kind}:{scope.label}", file_sha256=ingest.file_hash(content),
              months=[data["range"]["from"], data["range"]["to"]])
    return _download(content, f"governance-{scope.label}-{data['range']['to']}.xlsx", XLSX)


@bp.get("/<any(areas, sites):kind>/<key>/<any(incidents, actions):table>.csv")
@login_required()
def csv_download(kind: str, key: str, table: str):  # noqa: ANN201
    """The current rows as CSV (the API's CSV, for people logged in)."""
    user: User = current_user()
    if kind == "areas" and user.role == "site_manager":
        abort(403, "Site managers cannot open area pages.")
    scope, _ = _page_scope(kind[:-1], key)
    session_db = get_session()
    today = summaries.today_for()
    if table == "incidents":
        frame = queries.with_derived(queries.incidents_frame(session_db, area=scope.area, site=scope.site),
                                     INCIDENTS, today=today)
    else:
        frame = queries.with_derived(queries.actions_frame(session_db, area=scope.area, site=scope.site),
                                     ACTIONS, today=today)
    body = queries.frame_to_csv(frame)
    with write_session(get_db()) as write:
        audit(write, user.who, f"download.{table}_csv", f"{kind[:-1]}:{scope.label}",
              file_sha256=ingest.file_hash(body.encode("utf-8")), area=scope.area, site=scope.site, rows=len(frame))
    return _download(body, f"{table}-{scope.label}.csv", "text/csv")


# --- returns -----------------------------------------------------------------------------------------------

def default_period(today: dt.date) -> str:
    """The last calendar quarter that has ended."""
    q = (today.month - 1) // 3  # quarters ended this year
    return f"{today.year - 1}-Q4" if q == 0 else f"{today.year}-Q{q}"


def _return_choices(user: User) -> list[tuple[str, str]]:
    choices = [(f"area:{a.name}", f"{a.name} (all its sites)") for a in visible_areas(user)]
    choices += [(f"site:{s.code}", f"{s.code}: {s.name}") for s in visible_sites(user)]
    return choices


def _commissioners(user: User) -> list[str]:
    """The commissioners named on the Site sheets of the sites this user may make returns for."""
    if user.role == "site_manager":
        scopes = [{"site": user.site.code}] if user.site is not None else []
    else:
        scopes = [{"area": a.name} for a in visible_areas(user)]
    names: dict[str, str] = {}
    for scope in scopes:
        for text in queries.sites_frame(get_session(), **scope)["commissioners"].dropna().astype(str):
            for part in text.split(","):
                clean = " ".join(part.split())
                if clean:
                    names.setdefault(clean.casefold(), clean)
    return sorted(names.values(), key=str.casefold)


@bp.route("/returns", methods=["GET", "POST"])
@login_required()
def returns():  # noqa: ANN201
    user: User = current_user()
    choices = _return_choices(user)
    if not choices:
        abort(403, "You have no site or area to make a return for.")
    form = {"scope": choices[0][0], "period": default_period(summaries.today_for()), "commissioner": "",
            "suppress": "", "suppress_below": "8"}
    if request.method == "GET":
        return render_template("returns.html", choices=choices, form=form, commissioners=_commissioners(user))
    form.update({k: (request.form.get(k) or "").strip() for k in form})
    error = None
    if form["scope"] not in dict(choices):
        abort(403, "You cannot make a return for that area or site.")
    kind, _, key = form["scope"].partition(":")
    area, site = (key, None) if kind == "area" else (None, key)
    try:
        suppress = parse_suppress_below(form["suppress_below"]) if form["suppress"] else None
        if form["suppress"] and suppress is None:
            raise ReturnRequestError("Give the threshold for suppression, e.g. 8.")
        made = make_return(get_session(), area=area, site=site, period=form["period"],
                           commissioner=form["commissioner"] or None, suppress_below=suppress,
                           today=summaries.today_for())
    except ReturnRequestError as exc:
        error = str(exc)
    if error:
        return render_template("returns.html", choices=choices, form=form, error=error,
                               commissioners=_commissioners(user)), 400
    with write_session(get_db()) as write:
        audit(write, user.who, "download.return", form["scope"], file_sha256=ingest.file_hash(made.content),
              area=area, site=site, period=made.period,
              sites=made.sites, commissioner=form["commissioner"] or None, suppress_below=suppress)
    return xlsx_response(made.content, made.filename)


# --- audit log (administrators) --------------------------------------------------------------------------

AUDIT_PAGE_SIZE = 50


def _audit_day(name: str) -> dt.date | None:
    raw = (request.args.get(name) or "").strip()
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"Give the {'first' if name == 'from' else 'last'} day as YYYY-MM-DD, not {raw!r}.") from None


@bp.get("/admin/audit")
@login_required("admin")
def audit_log():  # noqa: ANN201
    """Every audit event, newest first, filtered by action, who and days (UTC), a page at a time."""
    from ..admin import AuditQuery, audit_actions, audit_events, count_audit_events

    form = {k: (request.args.get(k) or "").strip()[:200] for k in ("action", "who", "from", "to")}
    error = None
    try:
        first, last = _audit_day("from"), _audit_day("to")
    except ValueError as exc:
        error, first, last = str(exc), None, None
    query = AuditQuery(action=form["action"], who=form["who"],
                       since=dt.datetime.combine(first, dt.time(), dt.UTC) if first else None,
                       until=dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), dt.UTC) if last else None)
    session_db = get_session()
    total = count_audit_events(session_db, query)
    pages = max(1, -(-total // AUDIT_PAGE_SIZE))
    raw_page = request.args.get("page") or "1"
    page = min(int(raw_page), pages) if raw_page.isascii() and raw_page.isdigit() and int(raw_page) > 0 else 1
    events = audit_events(session_db, query, limit=AUDIT_PAGE_SIZE, offset=(page - 1) * AUDIT_PAGE_SIZE)
    filters = {k: v for k, v in form.items() if v}

    def page_url(n: int) -> str:
        return url_for("web.audit_log", **filters, page=n)

    return render_template("audit.html", events=events, form=form, error=error, total=total, page=page,
                           pages=pages, page_url=page_url, actions=audit_actions(session_db),
                           first=(page - 1) * AUDIT_PAGE_SIZE + 1 if total else 0,
                           last=min(total, page * AUDIT_PAGE_SIZE)), (400 if error else 200)


@bp.app_template_filter("utc")
def _utc(value: dt.datetime | None) -> str:
    """A stored time as "2026-12-01 18:55:14 UTC" (SQLite gives back naive UTC values)."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return f"{value.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC"


__all__ = ["page_model", "default_period"]
