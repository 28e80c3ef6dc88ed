"""Administration as plain Python: sites, areas, tokens and web logins.

The click commands in ``server/commands.py`` and the demo loader are thin layers over these.
Every change writes an :class:`~server.models.AuditEvent`.  Functions take a session and
leave committing to the caller, so a command's changes land together or not at all.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from workbook_templates.codelists import codes

from .auth import MIN_PASSWORD_LENGTH, hash_password, hash_token, new_token
from .models import ROLES, USER_ROLES, Area, AuditEvent, Site, Token, User, utcnow

SITE_CODE = re.compile(r"^[A-Z0-9]{2,8}$")  # as `nearmiss template` asks for it


class AdminError(ValueError):
    """A request the administrator must correct (the message says how)."""


@dataclass
class IssuedToken:
    token: Token
    secret: str  # the token itself: shown once, never stored


def audit(session: Session, who: str, action: str, what: str = "", *, file_sha256: str | None = None,
          **detail: object) -> AuditEvent:
    event = AuditEvent(who=who, action=action, what=what, file_sha256=file_sha256, detail=dict(detail),
                       at=utcnow())
    session.add(event)
    return event


def get_area(session: Session, name: str) -> Area | None:
    return session.scalar(select(Area).where(Area.name == name.strip()))


def get_site(session: Session, code: str) -> Site | None:
    return session.scalar(select(Site).where(Site.code == code.strip().upper()))


def ensure_area(session: Session, name: str, *, who: str) -> tuple[Area, bool]:
    """The area called ``name``, made when new; the flag says whether it was made."""
    name = name.strip()
    if not name or len(name) > 100:
        raise AdminError("Give the area a name of 1 to 100 characters, e.g. North.")
    area = get_area(session, name)
    if area is not None:
        return area, False
    alike = session.scalar(select(Area.name).where(func.lower(Area.name) == name.lower()))
    if alike is not None:  # "north" beside "North" would split an area's sites between two leads
        raise AdminError(f"There is already an area called {alike!r}; use that name (areas differ by more "
                         "than capital letters).")
    area = Area(name=name, created_at=utcnow())
    session.add(area)
    session.flush()
    audit(session, who, "area.add", f"area:{name}")
    return area, True


def add_site(session: Session, *, code: str, name: str, area: str, setting: str = "care_home",
             who: str) -> tuple[Site, bool, IssuedToken]:
    """Register a site (and its area if new) and issue its upload token.

    Returns the site, whether the area was new, and the site's token.
    """
    code = code.strip().upper()
    if not SITE_CODE.match(code):
        raise AdminError(f"Site code {code!r}: use 2 to 8 capital letters or digits, e.g. OAK.")
    if setting not in codes("setting"):
        raise AdminError(f"Setting {setting!r}: choose one of {', '.join(codes('setting'))}.")
    name = name.strip()
    if not name or len(name) > 200:
        raise AdminError("Give the site a name of 1 to 200 characters, e.g. \"Oakview House\".")
    if get_site(session, code) is not None:
        raise AdminError(f"Site {code} already exists. Use add-token --role site --site {code} for a new token.")
    area_row, area_new = ensure_area(session, area, who=who)
    site = Site(code=code, name=name, area=area_row, setting=setting, created_at=utcnow())
    session.add(site)
    session.flush()
    audit(session, who, "site.add", f"site:{code}", name=name, area=area_row.name, setting=setting)
    issued = add_token(session, role="site", site=code, who=who, label=f"upload token for {code}")
    return site, area_new, issued


def add_token(session: Session, *, role: str, area: str | None = None, site: str | None = None,
              label: str = "", who: str) -> IssuedToken:
    """Issue a token: ``site`` (needs ``site``), ``area_lead`` (needs ``area``) or ``admin``."""
    if role not in ROLES:
        raise AdminError(f"Role {role!r}: choose one of {', '.join(ROLES)}.")
    site_row = area_row = None
    if role == "site":
        if not site:
            raise AdminError("A site token needs --site CODE.")
        site_row = get_site(session, site)
        if site_row is None:
            raise AdminError(f"There is no site {site.strip().upper()}; add it with add-site first.")
    elif role == "area_lead":
        if not area:
            raise AdminError("An area lead token needs --area NAME.")
        area_row = get_area(session, area)
        if area_row is None:
            raise AdminError(f"There is no area {area.strip()!r}; areas are made by add-site.")
    elif area or site:
        raise AdminError("An admin token is not tied to an area or site.")
    secret = new_token()
    token = Token(token_hash=hash_token(secret), role=role, site=site_row, area=area_row, label=label[:200],
                  created_at=utcnow())
    session.add(token)
    session.flush()
    scope = f"site:{site_row.code}" if site_row else f"area:{area_row.name}" if area_row else "all"
    audit(session, who, "token.add", f"token:{token.id}", role=role, scope=scope, label=token.label)
    return IssuedToken(token=token, secret=secret)


def revoke_token(session: Session, token_id: int, *, who: str) -> Token:
    token = session.get(Token, token_id)
    if token is None:
        raise AdminError(f"There is no token {token_id}.")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit(session, who, "token.revoke", f"token:{token_id}", role=token.role)
    return token


def add_user(session: Session, *, username: str, password: str, role: str, area: str | None = None,
             site: str | None = None, who: str) -> User:
    """Create a web login: ``site_manager`` (needs ``site``), ``area_lead`` (needs ``area``) or ``admin``."""
    username = username.strip()
    if not re.fullmatch(r"[A-Za-z0-9_.@-]{2,100}", username):
        raise AdminError("Usernames are 2 to 100 letters, digits or _ . @ -.")
    if role not in USER_ROLES:
        raise AdminError(f"Role {role!r}: choose one of {', '.join(USER_ROLES)}.")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AdminError(f"Choose a password of at least {MIN_PASSWORD_LENGTH} characters.")
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise AdminError(f"User {username} already exists.")
    site_row = area_row = None
    if role == "site_manager":
        if not site:
            raise AdminError("A site manager needs --site CODE.")
        site_row = get_site(session, site)
        if site_row is None:
            raise AdminError(f"There is no site {site.strip().upper()}; add it with add-site first.")
        area_row = site_row.area
    elif role == "area_lead":
        if not area:
            raise AdminError("An area lead needs --area NAME.")
        area_row = get_area(session, area)
        if area_row is None:
            raise AdminError(f"There is no area {area.strip()!r}; areas are made by add-site.")
    elif area or site:
        raise AdminError("An admin is not tied to an area or site.")
    user = User(username=username, password_hash=hash_password(password), role=role, site=site_row,
                area=area_row, created_at=utcnow())
    session.add(user)
    session.flush()
    audit(session, who, "user.add", f"user:{username}", role=role,
          scope=f"site:{site_row.code}" if site_row else f"area:{area_row.name}" if area_row else "all")
    return user


def set_password(session: Session, username: str, password: str, *, who: str) -> User:
    user = session.scalar(select(User).where(User.username == username.strip()))
    if user is None:
        raise AdminError(f"There is no user {username}.")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AdminError(f"Choose a password of at least {MIN_PASSWORD_LENGTH} characters.")
    user.password_hash = hash_password(password)
    audit(session, who, "user.password", f"user:{user.username}")
    return user


def disable_user(session: Session, username: str, *, who: str) -> User:
    """Stop a web login (its sessions end at their next request); the row and its audit trail stay."""
    user = session.scalar(select(User).where(User.username == username.strip()))
    if user is None:
        raise AdminError(f"There is no user {username}.")
    if user.disabled_at is None:
        user.disabled_at = utcnow()
        audit(session, who, "user.disable", f"user:{user.username}", role=user.role)
    return user


# --- reading the audit log ------------------------------------------------------------------------------

@dataclass
class AuditQuery:
    """Filters of the audit log: every given one must match (``action`` and ``who`` by prefix)."""

    action: str = ""  # "download" matches download.incidents_csv, download.return, ...
    who: str = ""  # "user:alice", "token:12", "cli"
    since: dt.datetime | None = None  # at or after
    until: dt.datetime | None = None  # before

    def where(self) -> list:
        clauses = []
        if self.action.strip():
            clauses.append(AuditEvent.action.startswith(self.action.strip(), autoescape=True))
        if self.who.strip():
            clauses.append(AuditEvent.who.startswith(self.who.strip(), autoescape=True))
        if self.since is not None:
            clauses.append(AuditEvent.at >= self.since)
        if self.until is not None:
            clauses.append(AuditEvent.at < self.until)
        return clauses


def audit_events(session: Session, query: AuditQuery, *, limit: int | None = None,
                 offset: int = 0) -> list[AuditEvent]:
    """The audit events matching ``query``, newest first."""
    stmt = select(AuditEvent).where(*query.where()).order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
    if offset:
        stmt = stmt.offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def count_audit_events(session: Session, query: AuditQuery) -> int:
    return session.scalar(select(func.count()).select_from(AuditEvent).where(*query.where())) or 0


def audit_actions(session: Session) -> list[str]:
    """Every action name in the log (for the filter's choices)."""
    return list(session.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action)))


def event_json(event: AuditEvent) -> dict:
    at = event.at if event.at.tzinfo is not None else event.at.replace(tzinfo=dt.UTC)
    return {"id": event.id, "at": at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"), "who": event.who,
            "action": event.action, "what": event.what, "file_sha256": event.file_sha256,
            "detail": event.detail or {}}
