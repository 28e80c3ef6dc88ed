"""The JSON and CSV API (``/api/v1``), authorised by Bearer tokens (``server/auth.py``).

- ``POST /api/v1/submissions``: a site's workbook (multipart field ``file``); see ``server/ingest.py``.
- ``GET /api/v1/incidents.csv`` and ``GET /api/v1/actions.csv`` (``?area=``, ``?site=``): the current
  consolidated rows of an area, for its area lead (or an admin).

Errors are JSON ``{"error": message, "status": code}``.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, current_app, g, jsonify, request
from sqlalchemy import func, select
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from workbook_templates.contract import ACTIONS, INCIDENTS

from . import ingest, queries
from .admin import audit
from .auth import forbidden, json_error, may_read_area, require_token
from .config import isolation
from .db import end_read_transaction, get_db, get_session, write_session
from .models import Area, Site, Token

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def too_large_message() -> str:
    mb = current_app.config["MAX_CONTENT_LENGTH"] / (1024 * 1024)
    return f"The file is larger than this server accepts ({mb:g} MB). Send the workbook alone, not a folder or zip."


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):  # noqa: ANN202
    if isinstance(exc, RequestEntityTooLarge):
        return json_error(413, too_large_message())
    return json_error(exc.code or 500, exc.description or exc.name)


def _who() -> str:
    return g.token.who


def _refuse(token: Token, exc: ingest.IngestError, *, sha: str | None, name: str):  # noqa: ANN202
    with write_session(get_db()) as session:
        audit(session, token.who, "submission.refused", f"site:{token.site.code}" if token.site else "",
              file_sha256=sha, status=exc.status, reason=exc.message[:500], original_name=name)
    return json_error(exc.status, exc.message)


@bp.post("/submissions")
@require_token("site")
def submit_workbook():  # noqa: ANN201
    """Store the uploaded workbook as the token's site's current log."""
    token: Token = g.token
    try:
        upload = request.files.get("file")
    except RequestEntityTooLarge:  # refused before anything was read: still an attempt the audit log shows
        return _refuse(token, ingest.TooLarge(too_large_message()), sha=None, name="")
    if upload is None:
        return _refuse(token, ingest.MissingFile("Send the workbook as a multipart form field called 'file'."),
                       sha=None, name="")
    data = upload.read()
    name = ingest.clean_name(upload.filename)
    sha = ingest.file_hash(data)
    if not data:
        return _refuse(token, ingest.NotAWorkbook("The file is empty. Send the saved .xlsx workbook."), sha=sha,
                       name=name)
    site_code = token.site.code if token.role == "site" else (request.form.get("site") or None)
    end_read_transaction()
    try:
        result = ingest.submit(get_db(), data=data, original_name=name, who=token.who, site_code=site_code,
                               token_id=token.id, upload_folder=current_app.config["UPLOAD_FOLDER"],
                               isolation=isolation(current_app))
    except ingest.IngestError as exc:
        return _refuse(token, exc, sha=sha, name=name)
    queries.warm_snapshot(result)
    return jsonify(result.to_json()), (200 if result.duplicate else 201)


def resolve_scope(token: Token):  # noqa: ANN202
    """The (area name, site code) a read asks for, or an error response when out of scope."""
    session = get_session()
    area_param = (request.args.get("area") or "").strip()
    site_param = (request.args.get("site") or "").strip().upper()
    area = None
    if area_param:
        candidates = session.scalars(select(Area).where(func.lower(Area.name) == area_param.lower())).all()
        area = next((a for a in candidates if a.name == area_param), candidates[0] if candidates else None)
        if area is None:
            if token.role != "admin":
                return forbidden(f"Your token is not for area {area_param!r}.")
            return json_error(404, f"There is no area {area_param!r}.")
    elif token.role == "area_lead":
        area = token.area
    if area is not None and not may_read_area(token, area):
        return forbidden(f"Your token is for area {token.area.name!r}, not {area.name!r}.")
    site = None
    if site_param:
        site = session.scalar(select(Site).where(Site.code == site_param))
        if site is None or not may_read_area(token, site.area):
            if token.role != "admin":
                return forbidden(f"Your token is not for site {site_param}.")
            return json_error(404, f"There is no site {site_param}.")
        if area is not None and site.area_id != area.id:
            return json_error(404, f"Site {site_param} is not in area {area.name!r}.")
    return (area.name if area else None, site.code if site else None)


def _csv_download(kind: str) -> Response:
    token: Token = g.token
    scope = resolve_scope(token)
    if not isinstance(scope, tuple):
        return scope
    area, site = scope
    session = get_session()
    today = dt.date.today()
    if kind == "incidents":
        frame = queries.with_derived(queries.incidents_frame(session, area=area, site=site), INCIDENTS, today=today)
    else:
        frame = queries.with_derived(queries.actions_frame(session, area=area, site=site), ACTIONS, today=today)
    body = queries.frame_to_csv(frame)
    with write_session(get_db()) as write:
        audit(write, token.who, f"download.{kind}_csv", f"site:{site}" if site else f"area:{area}" if area else "all",
              file_sha256=ingest.file_hash(body.encode("utf-8") if isinstance(body, str) else body), area=area,
              site=site, rows=len(frame), via="api")
    label = "-".join(x for x in (kind, site or area or "all") if x)
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in label)
    return Response(body, mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{safe}.csv"', "Cache-Control": "no-store"})


@bp.get("/incidents.csv")
@require_token("area_lead")
def incidents_csv() -> Response:
    """The current incident rows of an area (default: the token's area) as CSV."""
    return _csv_download("incidents")


@bp.get("/actions.csv")
@require_token("area_lead")
def actions_csv() -> Response:
    """The current action rows of an area (default: the token's area) as CSV."""
    return _csv_download("actions")
