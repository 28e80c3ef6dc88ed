"""Summaries and commissioner returns over the API (``/api/v1``), for area leads and admins.

- ``GET /api/v1/summary?area=North[&site=OAK][&from=2025-04&to=2026-03]``: the governance summary as
  JSON (:func:`server.summary.get_summary`; its shape is described in that module's docstring).
- ``GET /api/v1/returns?area=North|site=OAK&period=2025-Q4[&commissioner=NAME][&suppress_below=8]``:
  the commissioner return as an .xlsx download (:mod:`server.reports.commissioner_return`).

Authorisation is the CSV API's (``server/api.py``): a Bearer token, 401 without a live one,
403 for a site token or an area lead asking for another area or site.  Errors are JSON
``{"error": message, "status": code}``.  Both are audited (``download.summary``, ``download.return``)
with the SHA-256 of what was sent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass

from flask import Blueprint, Response, current_app, g, request
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from . import queries, summary as summaries
from .admin import audit
from .api import resolve_scope
from .auth import json_error, require_token
from .db import get_db, get_session, write_session
from .models import Token

bp = Blueprint("api_reports", __name__, url_prefix="/api/v1")

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MAX_SUPPRESS = 100


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):  # noqa: ANN202
    return json_error(exc.code or 500, exc.description or exc.name)


class ReturnRequestError(ValueError):
    """A return that cannot be made as asked; the message says why (HTTP 400)."""


def parse_suppress_below(raw: str | None) -> int | None:
    """``suppress_below`` as given in a query or form: blank -> None, else a whole number (checked later)."""
    raw = (raw or "").strip()
    if not raw:
        return None
    if not re.fullmatch(r"\d{1,3}", raw) or int(raw) > MAX_SUPPRESS:
        raise ReturnRequestError(f"suppress_below must be a whole number such as 8 (the NHS Digital standard), "
                                 f"not {raw!r}.")
    return int(raw)


@dataclass
class ReturnFile:
    content: bytes
    filename: str
    period: str
    sites: list[str]


def safe_filename(*parts: str) -> str:
    label = "-".join(p for p in parts if p)
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in label)[:120] + ".xlsx"


def make_return(session: Session, *, area: str | None, site: str | None, period: str,
                commissioner: str | None = None, suppress_below: int | None = None,
                today: dt.date) -> ReturnFile:
    """The commissioner return of the current rows of ``area``/``site`` as .xlsx bytes.

    Raises :class:`ReturnRequestError` for a period, commissioner or threshold that cannot be used.
    """
    from .reports.commissioner_return import build_return, write_return

    period = (period or "").strip()
    if not period:
        raise ReturnRequestError("Give the period, e.g. period=2025-Q4 (October to December 2025) or 2025-11.")
    incidents, actions, exposure, sites = queries.current_frames(session, area=area, site=site)
    if not len(sites):
        raise ReturnRequestError("There are no sites in this area yet.")
    try:
        data = build_return(incidents, actions, exposure, sites, period=period, commissioner=commissioner or None,
                            suppress_below=suppress_below, today=today)
    except ValueError as exc:
        raise ReturnRequestError(_sentence(str(exc))) from exc
    content = summaries.xlsx_bytes(write_return, data)
    name = safe_filename("return", site or area or "all-sites", data.period.code,
                         (commissioner or "").strip()[:40])
    return ReturnFile(content=content, filename=name, period=data.period.code, sites=list(data.site_codes))


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "."


def xlsx_response(content: bytes, filename: str) -> Response:
    return Response(content, mimetype=XLSX, headers={
        "Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff"})


def summary_months() -> tuple:
    """(first, last) from ``from``/``to`` of the query (None when not given); RangeError when unreadable."""
    return (summaries.parse_month(request.args.get("from"), "from"),
            summaries.parse_month(request.args.get("to"), "to"))


@bp.get("/summary")
@require_token("area_lead")
def summary_json():  # noqa: ANN201
    """The governance summary of an area (default: the token's), a site or (admin) every site."""
    token: Token = g.token
    scope = resolve_scope(token)
    if not isinstance(scope, tuple):
        return scope
    area, site = scope
    try:
        first, last = summary_months()
        result, body = summaries.get_summary_json(get_session(), summaries.Scope(area=area, site=site),
                                                  today=summaries.today_for(), first=first, last=last)
    except summaries.RangeError as exc:
        return json_error(400, str(exc))
    response = Response(body, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    with write_session(get_db()) as session:
        audit(session, token.who, "download.summary", f"site:{site}" if site else f"area:{area}" if area else "all",
              file_sha256=hashlib.sha256(response.get_data()).hexdigest(), area=area, site=site,
              months=[result["range"]["from"], result["range"]["to"]], via="api")
    return response


@bp.get("/returns")
@require_token("area_lead")
def commissioner_return():  # noqa: ANN201
    """The commissioner return of an area or site for a period, as an .xlsx download."""
    token: Token = g.token
    scope = resolve_scope(token)
    if not isinstance(scope, tuple):
        return scope
    area, site = scope
    if area is None and site is None:  # an admin token with neither
        return json_error(400, "Say which area or site the return is for: area=NAME or site=CODE.")
    try:
        suppress = parse_suppress_below(request.args.get("suppress_below"))
        made = make_return(get_session(), area=area, site=site, period=request.args.get("period", ""),
                           commissioner=(request.args.get("commissioner") or "").strip() or None,
                           suppress_below=suppress, today=summaries.today_for())
    except ReturnRequestError as exc:
        return json_error(400, str(exc))
    with write_session(get_db()) as session:
        audit(session, token.who, "download.return", f"site:{site}" if site else f"area:{area}",
              file_sha256=hashlib.sha256(made.content).hexdigest(), via="api",
              area=area, site=site, period=made.period, sites=made.sites,
              commissioner=request.args.get("commissioner") or None, suppress_below=suppress)
    current_app.logger.info("return %s for %s by %s", made.period, site or area, token.who)
    return xlsx_response(made.content, made.filename)
