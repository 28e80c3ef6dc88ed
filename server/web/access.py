"""Who is logged in, and what they may see.

- a **site manager** sees and uploads for their own site only;
- an **area lead** sees their area and every site in it;
- an **admin** sees everything.

Anyone else (or a site manager asking for an area page) gets 403.  An area or site that does
not exist is 404 for an admin and 403 for everyone else, so names are not given away.
A login lasts at most :data:`SESSION_HOURS` hours.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from flask import abort, g, redirect, request, session, url_for
from sqlalchemy import func, select

from ..auth import logged_in_user
from ..db import get_session
from ..models import Area, Site, User

SESSION_HOURS = 12
ROLE_WORDS = {"site_manager": "Site manager", "area_lead": "Area lead", "admin": "Administrator"}


def current_user() -> User | None:
    """The logged-in user of this request (None when not logged in or the login is too old)."""
    if "web_user" not in g:
        user = logged_in_user(get_session())
        login_at = session.get("login_at", 0)
        if user is not None and time.time() - float(login_at) > SESSION_HOURS * 3600:
            session.clear()
            user = None
        g.web_user = user
    return g.web_user


def safe_next(target: str | None) -> str | None:
    """A same-site path to go to after login, or None (no open redirects).

    Browsers drop tabs and newlines from a URL ("/<TAB>/evil.example" is "//evil.example" to them) and
    a newline cannot go into a header at all, so a target with any control character is refused.
    """
    if not target or len(target) > 2000 or not target.isprintable():
        return None
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target


def login_required(*roles: str) -> Callable:
    """View decorator: a logged-in user (redirected to the login page if not), of one of ``roles`` if given."""

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            user = current_user()
            if user is None:
                return redirect(url_for("web.login", next=request.full_path.rstrip("?")))
            if roles and user.role not in roles:
                abort(403, f"{ROLE_WORDS.get(user.role, user.role)}s cannot open this page.")
            return view(*args, **kwargs)

        return wrapped

    return decorator


def may_see_area(user: User, area: Area) -> bool:
    return user.role == "admin" or (user.role == "area_lead" and user.area_id == area.id)


def may_see_site(user: User, site: Site) -> bool:
    if user.role == "admin":
        return True
    if user.role == "area_lead":
        return user.area_id == site.area_id
    return user.role == "site_manager" and user.site_id == site.id


def area_or_abort(user: User, name: str) -> Area:
    area = get_session().scalar(select(Area).where(func.lower(Area.name) == name.strip().lower()))
    if area is None:
        abort(404 if user.role == "admin" else 403,
              f"There is no area {name!r}." if user.role == "admin" else "You cannot see this area.")
    if not may_see_area(user, area):
        abort(403, "You cannot see this area.")
    return area


def site_or_abort(user: User, code: str) -> Site:
    site = get_session().scalar(select(Site).where(Site.code == code.strip().upper()))
    if site is None:
        abort(404 if user.role == "admin" else 403,
              f"There is no site {code!r}." if user.role == "admin" else "You cannot see this site.")
    if not may_see_site(user, site):
        abort(403, "You cannot see this site.")
    return site


def visible_sites(user: User) -> list[Site]:
    query = select(Site).order_by(Site.code)
    if user.role == "area_lead":
        query = query.where(Site.area_id == user.area_id)
    elif user.role == "site_manager":
        query = query.where(Site.id == user.site_id)
    elif user.role != "admin":
        return []
    return list(get_session().scalars(query))


def visible_areas(user: User) -> list[Area]:
    if user.role == "admin":
        return list(get_session().scalars(select(Area).order_by(Area.name)))
    if user.role == "area_lead" and user.area is not None:
        return [user.area]
    return []
