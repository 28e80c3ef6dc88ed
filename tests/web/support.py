"""Helpers of the web tests: users, logins and CSRF tokens through Flask's test client."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient

from server.admin import add_site, add_user, get_site
from server.db import get_db

PASSWORD = "correct horse battery"
USERS = (  # username, role, area, site
    ("admin", "admin", None, None),
    ("north-lead", "area_lead", "North", None),
    ("south-lead", "area_lead", "South", None),
    ("oak-manager", "site_manager", None, "OAK"),
)
SITES = (  # code, name, area, setting
    ("OAK", "Oakview House", "North", "care_home"),
    ("ELM", "Elmfield Homecare", "North", "homecare"),
    ("ASH", "Ashgrove Court", "North", "care_home"),
    ("BIR", "Birchwood Supported Living", "South", "supported_living"),
)


def add_sites_and_users(app: Flask) -> None:
    with get_db(app).sessions() as session:
        for code, name, area, setting in SITES:
            if get_site(session, code) is None:
                add_site(session, code=code, name=name, area=area, setting=setting, who="test")
        for username, role, area, site in USERS:
            add_user(session, username=username, password=PASSWORD, role=role, area=area, site=site, who="test")
        session.commit()


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    page = client.get(path)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client: FlaskClient, username: str, password: str = PASSWORD, **extra: str):  # noqa: ANN201
    token = csrf_token(client)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token, **extra})
