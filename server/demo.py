"""Demo data for `nearmiss serve --demo`: a few realistic, wholly synthetic sites.

Each site's log is made by ``workbook_templates.synthetic.make_site``, written as a real
workbook by ``build_workbook`` and stored through the normal upload path
(``server.ingest.submit``), so a newcomer sees exactly what real sites would produce.
Running it again refreshes the data (today's date moves the synthetic logs on) and issues
new demo tokens and passwords, revoking the previous demo tokens.
"""

from __future__ import annotations

import datetime as dt
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask
from sqlalchemy import select

from workbook_templates.builder import build_workbook
from workbook_templates.synthetic import make_site

from . import admin, ingest
from .config import isolation
from .db import get_db, write_session
from .models import Token, User, utcnow

WHO = "demo"
DEMO_LABEL = "nearmiss demo"


@dataclass(frozen=True)
class DemoSite:
    code: str
    name: str
    area: str
    setting: str
    seed: int
    beds: int
    reports_per_month: float
    flaw_rate: float


DEMO_SITES = (
    DemoSite("OAK", "Oakview House", "North", "care_home", 11, 40, 12.0, 0.02),
    DemoSite("ELM", "Elmfield Homecare", "North", "homecare", 12, 60, 9.0, 0.04),
    DemoSite("ASH", "Ashgrove Court", "North", "care_home", 13, 28, 7.0, 0.0),
    DemoSite("BIR", "Birchwood Supported Living", "South", "supported_living", 14, 18, 5.0, 0.03),
)
DEMO_USERS = (  # username, role, area, site
    ("demo-admin", "admin", None, None),
    ("demo-north", "area_lead", "North", None),
    ("demo-south", "area_lead", "South", None),
    ("demo-oak", "site_manager", None, "OAK"),
)


@dataclass
class DemoResult:
    sites: list[tuple[DemoSite, dict]] = field(default_factory=list)  # (site, submission JSON)
    tokens: list[tuple[str, str]] = field(default_factory=list)  # (who holds it, token)
    logins: list[tuple[str, str, str]] = field(default_factory=list)  # (username, password, role)

    def lines(self, base_url: str = "http://127.0.0.1:5000") -> list[str]:
        out = ["Demo data (synthetic: no real person or service):"]
        for site, answer in self.sites:
            out.append(f"  {site.code:<4} {site.name} ({site.area}, {site.setting}): "
                       f"{answer['counts']['incidents']} incidents, {answer['counts']['actions']} actions, "
                       f"{answer['errors']} errors, {answer['warnings']} warnings")
        out.append("Web logins (new passwords each time --demo runs):")
        out += [f"  {user:<12} {password}   ({role})" for user, password, role in self.logins]
        out.append("API tokens (Bearer; the previous demo tokens are revoked):")
        out += [f"  {holder:<18} {token}" for holder, token in self.tokens]
        north = next((t for h, t in self.tokens if h == "area lead North"), "TOKEN")
        out.append(f"Try: curl -H 'Authorization: Bearer {north}' {base_url.rstrip('/')}/api/v1/incidents.csv")
        return out


def load_demo(app: Flask, *, today: dt.date | None = None, months: int = 24) -> DemoResult:
    """Create (or refresh) the demo areas, sites, logins and tokens, and upload each site's log."""
    database = get_db(app)
    today = today or dt.date.today()
    result = DemoResult()
    site_tokens: dict[str, Token] = {}
    with write_session(database) as session:
        for old in session.scalars(select(Token.id).where(Token.label.startswith(DEMO_LABEL),
                                                          Token.revoked_at.is_(None))).all():
            admin.revoke_token(session, old, who=WHO)  # one audited revocation each, as an admin's would be
        for demo in DEMO_SITES:
            if admin.get_site(session, demo.code) is None:
                _, _, issued = admin.add_site(session, code=demo.code, name=demo.name, area=demo.area,
                                              setting=demo.setting, who=WHO)
                issued.token.label = f"{DEMO_LABEL}: upload token for {demo.code}"
            else:
                issued = admin.add_token(session, role="site", site=demo.code, who=WHO,
                                         label=f"{DEMO_LABEL}: upload token for {demo.code}")
            site_tokens[demo.code] = issued.token
            result.tokens.append((f"site {demo.code}", issued.secret))
        for area in sorted({d.area for d in DEMO_SITES}):
            issued = admin.add_token(session, role="area_lead", area=area, who=WHO,
                                     label=f"{DEMO_LABEL}: area lead {area}")
            result.tokens.append((f"area lead {area}", issued.secret))
        issued = admin.add_token(session, role="admin", who=WHO, label=f"{DEMO_LABEL}: admin")
        result.tokens.append(("admin", issued.secret))
        for username, role, area, site in DEMO_USERS:
            password = secrets.token_urlsafe(12)
            if session.scalar(select(User).where(User.username == username)) is None:
                admin.add_user(session, username=username, password=password, role=role, area=area, site=site,
                               who=WHO)
            else:
                admin.set_password(session, username, password, who=WHO)
            result.logins.append((username, password, role))
        token_ids = {code: token.id for code, token in site_tokens.items()}

    with tempfile.TemporaryDirectory(prefix="nearmiss-demo-") as folder:
        for demo in DEMO_SITES:
            records = make_site(demo.code, demo.name, setting=demo.setting, months=months, end=today,
                                seed=demo.seed, flaw_rate=demo.flaw_rate, beds=demo.beds,
                                reports_per_month=demo.reports_per_month)
            path = build_workbook(Path(folder) / f"{demo.code.lower()}-log.xlsx", records)
            answer = ingest.submit(database, data=path.read_bytes(), original_name=path.name, who=WHO,
                                   site_code=demo.code, token_id=token_ids[demo.code],
                                   upload_folder=app.config["UPLOAD_FOLDER"], today=today,
                                   isolation=isolation(app))
            result.sites.append((demo, answer.to_json()))
    return result
