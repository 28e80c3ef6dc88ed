"""Helpers of the server tests: tokens, uploads and row counts."""

from __future__ import annotations

import io
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from server.admin import add_site, add_token, get_site
from server.db import get_db


# --- tokens ----------------------------------------------------------------------------------------

def site_token(app: Flask, code: str = "OAK", *, name: str = "Oakview House", area: str = "North",
               setting: str = "care_home") -> str:
    """Register the site (if new) and return an upload token for it."""
    with get_db(app).sessions() as session:
        if get_site(session, code) is None:
            _, _, issued = add_site(session, code=code, name=name, area=area, setting=setting, who="test")
        else:
            issued = add_token(session, role="site", site=code, who="test")
        session.commit()
        return issued.secret


def area_token(app: Flask, area: str = "North") -> str:
    """An area lead's token (the area must exist: add a site in it first)."""
    with get_db(app).sessions() as session:
        issued = add_token(session, role="area_lead", area=area, who="test")
        session.commit()
        return issued.secret


def admin_token(app: Flask) -> str:
    with get_db(app).sessions() as session:
        issued = add_token(session, role="admin", who="test")
        session.commit()
        return issued.secret


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def upload(client: FlaskClient, token: str | None, path_or_bytes: Path | bytes, name: str = "log.xlsx", **form):  # noqa: ANN003, ANN201
    data = path_or_bytes.read_bytes() if isinstance(path_or_bytes, Path) else path_or_bytes
    headers = bearer(token) if token else {}
    return client.post("/api/v1/submissions", headers=headers, content_type="multipart/form-data",
                       data={"file": (io.BytesIO(data), name), **form})


def count_rows(app: Flask) -> dict[str, int]:
    """Rows per stored table (not the audit log) and files in the uploads folder."""
    from server.models import Action, ExposureMonth, FindingRow, Incident, SiteSheet, Submission

    with get_db(app).sessions() as session:
        counts = {m.__tablename__: session.scalar(select(func.count()).select_from(m))
                  for m in (Submission, Incident, Action, ExposureMonth, FindingRow, SiteSheet)}
    counts["files"] = len(list(Path(app.config["UPLOAD_FOLDER"]).iterdir()))
    return counts


def send_three_sites(app: Flask, client: FlaskClient, workbooks) -> None:  # noqa: ANN001
    """OAK and ELM (homecare) in North, BIR in South, each with a stored log; NEW registered, nothing sent."""
    for code, area, seed, setting in (("OAK", "North", 1, "care_home"), ("ELM", "North", 3, "homecare"),
                                      ("BIR", "South", 5, "care_home")):
        token = site_token(app, code, name=f"{code} House", area=area, setting=setting)
        path = workbooks.path(code, seed=seed, **({"setting": setting} if code == "ELM" else {}))
        assert upload(client, token, path).status_code == 201
    site_token(app, "NEW", name="New House", area="North")
