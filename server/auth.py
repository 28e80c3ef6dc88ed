"""Tokens (API) and passwords (web logins).

API tokens are ``secrets.token_urlsafe(32)`` (256 random bits) and only their SHA-256 is
stored: with that much entropy a fast hash cannot be brute-forced, and a lookup by hash
needs no per-row work.  Passwords are people-chosen, so they get werkzeug's salted, slow hash.

Roles: a ``site`` token uploads its own site's workbook; an ``area_lead`` token reads its own
area; ``admin`` does everything.  :func:`require_token` answers 401 (no or unknown token,
with ``WWW-Authenticate: Bearer``) or 403 (wrong role) as JSON.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Any

from flask import g, jsonify, request, session as web_session
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from .models import Area, Site, Token, User

TOKEN_BYTES = 32
MIN_PASSWORD_LENGTH = 10
# A valid hash to check against when the user is unknown, so both paths take the same time.
_DUMMY_HASH = generate_password_hash("not a password of anyone")


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def hash_password(password: str) -> str:
    return generate_password_hash(password)


def find_token(session: Session, token: str) -> Token | None:
    """The live (not revoked) token row for a presented token, or None."""
    if not token or len(token) > 200:
        return None
    row = session.scalar(select(Token).where(Token.token_hash == hash_token(token)))
    if row is None or row.revoked_at is not None:
        return None
    # The index lookup above already matched; compare again in constant time for good measure.
    return row if hmac.compare_digest(row.token_hash, hash_token(token)) else None


def authenticate_user(session: Session, username: str, password: str) -> User | None:
    """The user whose username and password match (and who is not disabled), or None."""
    user = session.scalar(select(User).where(User.username == username.strip()))
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    if not check_password_hash(user.password_hash, password) or user.disabled_at is not None:
        return None
    return user


def password_stamp(user: User) -> str:
    """A short keyed fingerprint of the user's password hash, kept in the session cookie at login.

    The session is a signed cookie, so it cannot be revoked on the server; with the stamp, a new
    password (``nearmiss admin set-password``) ends every session made with the old one.
    """
    from flask import current_app

    key = str(current_app.config["SECRET_KEY"]).encode("utf-8")
    return hmac.new(key, user.password_hash.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def logged_in_user(session: Session) -> User | None:
    """The web user of this request's signed session cookie (``session['user_id']``), or None.

    None too when the user is disabled or their password has changed since this session logged in.
    """
    user_id = web_session.get("user_id")
    if user_id is None:
        return None
    user = session.get(User, user_id)
    if user is None or user.disabled_at is not None:
        return None
    stamp = web_session.get("password_stamp")
    if not isinstance(stamp, str) or not hmac.compare_digest(stamp, password_stamp(user)):
        return None
    return user


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def json_error(status: int, message: str, **headers: str) -> Any:
    response = jsonify({"error": message, "status": status})
    response.status_code = status
    response.headers.update(headers)
    return response


def unauthorized(message: str, *, invalid: bool = False) -> Any:
    challenge = 'Bearer realm="nearmiss"' + (', error="invalid_token"' if invalid else "")
    return json_error(401, message, **{"WWW-Authenticate": challenge})


def forbidden(message: str) -> Any:
    return json_error(403, message)


def require_token(*roles: str) -> Callable:
    """View decorator: a live Bearer token with one of ``roles`` (admin always passes) in ``g.token``."""

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            from .db import get_session

            presented = bearer_token()
            if presented is None:
                return unauthorized("Send your nearmiss token as 'Authorization: Bearer <token>'.")
            session = get_session()
            token = find_token(session, presented)
            if token is None:
                return unauthorized("This token is not known or has been revoked. Ask your administrator "
                                    "for a new one.", invalid=True)
            if token.role != "admin" and token.role not in roles:
                return forbidden(f"A {token.role} token cannot do this.")
            g.token = token
            return view(*args, **kwargs)

        return wrapped

    return decorator


def may_read_area(token: Token, area: Area) -> bool:
    return token.role == "admin" or (token.role == "area_lead" and token.area_id == area.id)


def may_upload_for(token: Token, site: Site) -> bool:
    return token.role == "admin" or (token.role == "site" and token.site_id == site.id)
