"""Who may call what: every route of the app x every kind of caller x own / other scope (SQLite and PostgreSQL).

The routes come from ``app.url_map``, so a new endpoint (or a new method on one) that is not in
:data:`MATRIX` fails :func:`test_every_route_is_in_the_matrix` until someone decides who may call it.

Callers (the columns of the table):

- with a Bearer token and no session: ``none`` (no Authorization header), ``bad`` (a malformed
  header), ``unk`` (a well-formed token the server never issued), ``rev`` (a revoked *admin* token),
  the OAK site token on its own site (``s.own``), a sibling site of its area (``s.sib``, ELM) and a
  site of another area (``s.oth``, BIR), the North area lead's token on North (``l.own``), South
  (``l.oth``) and an area that does not exist (``l.miss``), and an admin token on South (``adm``) and
  on names that do not exist (``adm.miss``);
- logged in through the web pages and no token: the OAK site manager (``w.s.own``, ``w.s.sib``,
  ``w.s.oth``), the North area lead (``w.l.own``, ``w.l.oth``, ``w.l.miss``) and an admin
  (``w.adm``, ``w.adm.miss``).

So the API never takes a session cookie (no CSRF exposure) and the pages never take a token.
For the web upload (one HTTP answer for many files) the status of the file is checked.
Uploads send a workbook that is already stored: 200 is "accepted, a duplicate".
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from server import ingest
from server.admin import add_token, revoke_token
from server.db import get_db
from server.models import Submission
from tests.web.support import PASSWORD, add_sites_and_users, login

from .support import area_token

PERIOD = "2026-Q3"  # inside the synthetic logs (tests.conftest.DATA_END is 31 October 2026)

CALLERS = ("none", "bad", "unk", "rev", "s.own", "s.sib", "s.oth", "l.own", "l.oth", "l.miss", "adm", "adm.miss",
           "w.s.own", "w.s.sib", "w.s.oth", "w.l.own", "w.l.oth", "w.l.miss", "w.adm", "w.adm.miss")

# endpoint                      method case              none bad unk rev | s.own s.sib s.oth | l.own l.oth l.miss | adm adm.miss || web: s.own s.sib s.oth | l.own l.oth l.miss | adm adm.miss
MATRIX = """
api.submit_workbook             POST   api-upload         401 401 401 401   200 403 403   403 403 403   200 422   401 401 401   401 401 401   401 401
api.incidents_csv               GET    api-inc            401 401 401 401   403 403 403   200 200 200   200 200   401 401 401   401 401 401   401 401
api.incidents_csv               GET    api-inc-area       401 401 401 401   403 403 403   200 403 403   200 404   401 401 401   401 401 401   401 401
api.incidents_csv               GET    api-inc-site       401 401 401 401   403 403 403   200 403 403   200 404   401 401 401   401 401 401   401 401
api.actions_csv                 GET    api-act            401 401 401 401   403 403 403   200 200 200   200 200   401 401 401   401 401 401   401 401
api.actions_csv                 GET    api-act-area       401 401 401 401   403 403 403   200 403 403   200 404   401 401 401   401 401 401   401 401
api.actions_csv                 GET    api-act-site       401 401 401 401   403 403 403   200 403 403   200 404   401 401 401   401 401 401   401 401
api_reports.summary_json        GET    api-summary        401 401 401 401   403 403 403   200 200 200   200 200   401 401 401   401 401 401   401 401
api_reports.summary_json        GET    api-summary-area   401 401 401 401   403 403 403   200 403 403   200 404   401 401 401   401 401 401   401 401
api_reports.summary_json        GET    api-summary-site   401 401 401 401   403 403 403   200 403 403   200 404   401 401 401   401 401 401   401 401
api_reports.commissioner_return GET    api-return         401 401 401 401   403 403 403   200 200 200   400 400   401 401 401   401 401 401   401 401
api_reports.commissioner_return GET    api-return-area    401 401 401 401   403 403 403   200 403 403   200 404   401 401 401   401 401 401   401 401
api_reports.commissioner_return GET    api-return-site    401 401 401 401   403 403 403   200 403 403   200 404   401 401 401   401 401 401   401 401
healthz                         GET    healthz            200 200 200 200   200 200 200   200 200 200   200 200   200 200 200   200 200 200   200 200
static                          GET    app-static         404 404 404 404   404 404 404   404 404 404   404 404   404 404 404   404 404 404   404 404
web.static                      GET    web-static         200 200 200 200   200 200 200   200 200 200   200 200   200 200 200   200 200 200   200 200
web.login                       GET    login-page         200 200 200 200   200 200 200   200 200 200   200 200   302 302 302   302 302 302   302 302
web.login                       POST   login-wrong        401 401 401 401   401 401 401   401 401 401   401 401   401 401 401   401 401 401   401 401
web.logout                      POST   logout             302 302 302 302   302 302 302   302 302 302   302 302   302 302 302   302 302 302   302 302
web.index                       GET    start              302 302 302 302   302 302 302   302 302 302   302 302   302 302 302   302 302 302   200 200
web.upload                      GET    upload-page        302 302 302 302   302 302 302   302 302 302   302 302   200 200 200   403 403 403   200 200
web.upload                      POST   upload             302 302 302 302   302 302 302   302 302 302   302 302   200 403 403   403 403 403   200 422
web.checked_copy                GET    checked-copy       302 302 302 302   302 302 302   302 302 302   302 302   200 403 403   200 403 403   200 404
web.area_page                   GET    area-page          302 302 302 302   302 302 302   302 302 302   302 302   403 403 403   200 403 403   200 404
web.site_page                   GET    site-page          302 302 302 302   302 302 302   302 302 302   302 302   200 403 403   200 403 403   200 404
web.area_governance             GET    area-workbook      302 302 302 302   302 302 302   302 302 302   302 302   403 403 403   200 403 403   200 404
web.site_governance             GET    site-workbook      302 302 302 302   302 302 302   302 302 302   302 302   200 403 403   200 403 403   200 404
web.csv_download                GET    area-inc-csv       302 302 302 302   302 302 302   302 302 302   302 302   403 403 403   200 403 403   200 404
web.csv_download                GET    area-act-csv       302 302 302 302   302 302 302   302 302 302   302 302   403 403 403   200 403 403   200 404
web.csv_download                GET    site-inc-csv       302 302 302 302   302 302 302   302 302 302   302 302   200 403 403   200 403 403   200 404
web.csv_download                GET    site-act-csv       302 302 302 302   302 302 302   302 302 302   302 302   200 403 403   200 403 403   200 404
web.returns                     GET    returns-page       302 302 302 302   302 302 302   302 302 302   302 302   200 200 200   200 200 200   200 200
web.returns                     POST   return-area        302 302 302 302   302 302 302   302 302 302   302 302   403 403 403   200 403 403   200 403
web.returns                     POST   return-site        302 302 302 302   302 302 302   302 302 302   302 302   200 403 403   200 403 403   200 403
web.audit_log                   GET    audit-page         302 302 302 302   302 302 302   302 302 302   302 302   403 403 403   403 403 403   200 200
"""


@dataclass(frozen=True)
class Row:
    endpoint: str
    method: str
    case: str
    expected: dict[str, int]


def parse_matrix(text: str) -> list[Row]:
    rows = []
    for line in text.strip().splitlines():
        endpoint, method, case, *statuses = line.split()
        assert len(statuses) == len(CALLERS), f"{case}: {len(statuses)} statuses for {len(CALLERS)} callers"
        rows.append(Row(endpoint, method, case, dict(zip(CALLERS, map(int, statuses), strict=True))))
    assert len({r.case for r in rows}) == len(rows), "case names must be unique"
    return rows


ROWS = parse_matrix(MATRIX)


@dataclass(frozen=True)
class Target:
    area: str
    site: str


OWN, SIBLING, OTHER, MISSING = (Target("North", "OAK"), Target("North", "ELM"), Target("South", "BIR"),
                                Target("Nowhere", "ZZZ"))
# caller -> (who calls, with what, on which target)
CALLER_TARGETS = {
    "none": OWN, "bad": OWN, "unk": OWN, "rev": OTHER, "s.own": OWN, "s.sib": SIBLING, "s.oth": OTHER,
    "l.own": OWN, "l.oth": OTHER, "l.miss": MISSING, "adm": OTHER, "adm.miss": MISSING,
    "w.s.own": OWN, "w.s.sib": SIBLING, "w.s.oth": OTHER, "w.l.own": OWN, "w.l.oth": OTHER, "w.l.miss": MISSING,
    "w.adm": OTHER, "w.adm.miss": MISSING,
}
WEB_USERS = {"s": "oak-manager", "l": "north-lead", "adm": "admin"}  # by the caller's middle part
TOKEN_OF = {"s": "site", "l": "lead", "adm": "admin"}


@dataclass
class Request:
    method: str
    path: str
    data: dict | None = None
    files: tuple[bytes, str] | None = None  # (workbook, field name)
    csrf: bool = False
    json: bool = False


@dataclass
class World:
    app: Flask
    tokens: dict[str, str]
    submissions: dict[str, int]  # site code -> a stored submission
    workbooks: dict[str, bytes]  # site code -> the stored workbook's bytes (ZZZ: a site never added)


def build(case: str, t: Target, world: World, caller: str) -> Request:
    """The request of ``case`` aimed at target ``t``."""
    area, site = quote(t.area), t.site
    paths: dict[str, Callable[[], Request]] = {
        "api-upload": lambda: Request("POST", "/api/v1/submissions", files=(world.workbooks[site], "file")),
        "api-inc": lambda: Request("GET", "/api/v1/incidents.csv"),
        "api-inc-area": lambda: Request("GET", f"/api/v1/incidents.csv?area={area}"),
        "api-inc-site": lambda: Request("GET", f"/api/v1/incidents.csv?site={site}"),
        "api-act": lambda: Request("GET", "/api/v1/actions.csv"),
        "api-act-area": lambda: Request("GET", f"/api/v1/actions.csv?area={area}"),
        "api-act-site": lambda: Request("GET", f"/api/v1/actions.csv?site={site}"),
        "api-summary": lambda: Request("GET", "/api/v1/summary"),
        "api-summary-area": lambda: Request("GET", f"/api/v1/summary?area={area}"),
        "api-summary-site": lambda: Request("GET", f"/api/v1/summary?site={site}"),
        "api-return": lambda: Request("GET", f"/api/v1/returns?period={PERIOD}"),
        "api-return-area": lambda: Request("GET", f"/api/v1/returns?area={area}&period={PERIOD}"),
        "api-return-site": lambda: Request("GET", f"/api/v1/returns?site={site}&period={PERIOD}"),
        "healthz": lambda: Request("GET", "/healthz"),
        "app-static": lambda: Request("GET", "/static/nearmiss.css"),
        "web-static": lambda: Request("GET", "/web-static/nearmiss.css"),
        "login-page": lambda: Request("GET", "/login"),
        "login-wrong": lambda: Request("POST", "/login", data={"username": f"nobody-{caller}",
                                                               "password": "not the password"}, csrf=True),
        "logout": lambda: Request("POST", "/logout", csrf=True),
        "start": lambda: Request("GET", "/"),
        "upload-page": lambda: Request("GET", "/upload"),
        "upload": lambda: Request("POST", "/upload", files=(world.workbooks[site], "files"), csrf=True, json=True),
        "checked-copy": lambda: Request("GET", f"/submissions/{world.submissions.get(site, 999_999)}/checked-copy"),
        "area-page": lambda: Request("GET", f"/areas/{area}"),
        "site-page": lambda: Request("GET", f"/sites/{site}"),
        "area-workbook": lambda: Request("GET", f"/areas/{area}/governance.xlsx"),
        "site-workbook": lambda: Request("GET", f"/sites/{site}/governance.xlsx"),
        "area-inc-csv": lambda: Request("GET", f"/areas/{area}/incidents.csv"),
        "area-act-csv": lambda: Request("GET", f"/areas/{area}/actions.csv"),
        "site-inc-csv": lambda: Request("GET", f"/sites/{site}/incidents.csv"),
        "site-act-csv": lambda: Request("GET", f"/sites/{site}/actions.csv"),
        "returns-page": lambda: Request("GET", "/returns"),
        "return-area": lambda: Request("POST", "/returns", data={"scope": f"area:{t.area}", "period": PERIOD},
                                       csrf=True),
        "return-site": lambda: Request("POST", "/returns", data={"scope": f"site:{site}", "period": PERIOD},
                                       csrf=True),
        "audit-page": lambda: Request("GET", "/admin/audit"),
    }
    return paths[case]()


class Callers:
    """A test client per caller: token callers have no login, web callers are logged in (again after logout)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._web: dict[str, FlaskClient] = {}

    def client(self, caller: str) -> tuple[FlaskClient, dict[str, str]]:
        if caller.startswith("w."):
            username = WEB_USERS[caller.split(".")[1]]
            if username not in self._web:
                client = self.world.app.test_client()
                assert login(client, username, PASSWORD).status_code == 302, username
                self._web[username] = client
            return self._web[username], {}
        client = self.world.app.test_client()
        kind = caller.split(".")[0]
        headers = {
            "none": {}, "bad": {"Authorization": "Bearer " + "x" * 300},
            "unk": {"Authorization": "Bearer " + secrets.token_urlsafe(32)},
            "rev": {"Authorization": "Bearer " + self.world.tokens["revoked"]},
        }.get(caller)
        if headers is None:
            headers = {"Authorization": "Bearer " + self.world.tokens[TOKEN_OF[kind]]}
        return client, headers

    def forget(self, caller: str) -> None:
        """After a logout: the next request of this web user logs in again."""
        if caller.startswith("w."):
            self._web.pop(WEB_USERS[caller.split(".")[1]], None)


def csrf_of(client: FlaskClient) -> str:
    with client.session_transaction() as session:
        return session.setdefault("csrf_token", secrets.token_urlsafe(32))


def send(client: FlaskClient, headers: dict[str, str], req: Request) -> int:
    data = dict(req.data or {})
    if req.csrf:
        data["csrf_token"] = csrf_of(client)
    kwargs = {"headers": {**headers, **({"Accept": "application/json"} if req.json else {})}}
    if req.files is not None:
        content, field = req.files
        data[field] = (io.BytesIO(content), "log.xlsx")
        kwargs["content_type"] = "multipart/form-data"
    response = client.open(req.path, method=req.method, data=data or None, **kwargs)
    if req.path == "/upload" and req.method == "POST" and response.status_code == 200 and response.is_json:
        (answer,) = response.get_json()  # one file sent: its own answer
        return answer.get("status") or (200 if answer["duplicate"] else 201)
    return response.status_code


@pytest.fixture
def world(app: Flask, workbooks) -> World:  # noqa: ANN001
    add_sites_and_users(app)  # OAK, ELM, ASH in North; BIR in South; admin, north-lead, south-lead, oak-manager
    database = get_db(app)
    tokens = {}
    with database.sessions() as session:
        tokens["site"] = add_token(session, role="site", site="OAK", who="test").secret
        tokens["admin"] = add_token(session, role="admin", who="test").secret
        revoked = add_token(session, role="admin", who="test")
        revoke_token(session, revoked.token.id, who="test")
        tokens["revoked"] = revoked.secret
        session.commit()
    tokens["lead"] = area_token(app, "North")
    books, submissions = {}, {}
    for code, seed, setting in (("OAK", 1, "care_home"), ("ELM", 3, "homecare"), ("BIR", 5, "supported_living")):
        books[code] = workbooks.path(code, seed, setting=setting).read_bytes()  # as tests.web.support's sites
        result = ingest.submit(database, data=books[code], original_name=f"{code.lower()}.xlsx", who="test",
                               site_code=code, upload_folder=app.config["UPLOAD_FOLDER"])
        submissions[code] = result.submission.id
    books["ZZZ"] = workbooks.path("ZZZ", 1).read_bytes()
    return World(app=app, tokens=tokens, submissions=submissions, workbooks=books)


def routes(app: Flask) -> set[tuple[str, str]]:
    return {(rule.endpoint, method) for rule in app.url_map.iter_rules()
            for method in rule.methods - {"HEAD", "OPTIONS"}}


def test_every_route_is_in_the_matrix(app: Flask) -> None:
    declared = {(r.endpoint, r.method) for r in ROWS}
    missing = routes(app) - declared
    assert not missing, f"routes with no row in MATRIX (decide who may call them): {sorted(missing)}"
    stale = declared - routes(app)
    assert not stale, f"rows of MATRIX for routes that no longer exist: {sorted(stale)}"
    world = World(app=app, tokens={}, submissions={"OAK": 1, "ELM": 2, "BIR": 3},
                  workbooks={c: b"" for c in ("OAK", "ELM", "BIR", "ZZZ")})
    adapter = app.url_map.bind("localhost")
    for row in ROWS:  # each case's request reaches the endpoint its row names, for every target
        for target in (OWN, SIBLING, OTHER, MISSING):
            req = build(row.case, target, world, "none")
            endpoint, _ = adapter.match(urlsplit(req.path).path, method=row.method)
            assert endpoint == row.endpoint, (row.case, target, endpoint)
    assert set(CALLER_TARGETS) == set(CALLERS)


def test_access_matrix(world: World) -> None:
    callers = Callers(world)
    wrong = []
    for row in ROWS:
        for caller in CALLERS:
            client, headers = callers.client(caller)
            req = build(row.case, CALLER_TARGETS[caller], world, caller)
            status = send(client, headers, req)
            if status != row.expected[caller]:
                wrong.append(f"{row.case} {req.method} {req.path} as {caller}: {status}, "
                             f"expected {row.expected[caller]}")
            if row.case == "logout":
                callers.forget(caller)
    assert not wrong, f"{len(wrong)} of {len(ROWS) * len(CALLERS)} answers differ:\n" + "\n".join(wrong)
    with get_db(world.app).sessions() as session:  # every upload let through was a duplicate: nothing new stored
        assert session.scalar(select(func.count()).select_from(Submission)) == 3


def test_matrix_answers_carry_the_right_form(world: World) -> None:
    """401 from the API names the Bearer scheme; the pages send strangers to the login page and back."""
    callers = Callers(world)
    client, headers = callers.client("unk")
    answer = client.get("/api/v1/summary", headers=headers)
    assert answer.status_code == 401 and 'error="invalid_token"' in answer.headers["WWW-Authenticate"]
    assert answer.get_json()["status"] == 401
    answer = client.get("/sites/OAK", headers=headers)
    assert answer.headers["Location"].startswith("/login?next=/sites/OAK")
    admin, _ = callers.client("w.adm")
    assert admin.get("/api/v1/incidents.csv").headers["WWW-Authenticate"].startswith("Bearer")
