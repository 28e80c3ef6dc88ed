"""CSRF protection for the web pages: a random token kept in the signed session cookie.

Every form carries it in a hidden ``csrf_token`` field (templates call ``csrf_token()``); small
scripts may send it as the ``X-CSRF-Token`` header instead.  :func:`protect` checks it before
every POST, PUT, PATCH and DELETE of the web blueprint and answers 400 when it is missing or
wrong.  :func:`rotate` makes a new one (at login and logout), so a token seen before login is
useless after it.  The session cookie is also ``SameSite=Lax`` and ``HttpOnly`` (server/config.py).
"""

from __future__ import annotations

import hmac
import secrets

from flask import Blueprint, abort, request, session

SESSION_KEY = "csrf_token"
FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
MESSAGE = ("This form has expired or did not come from this site, so nothing was done. "
           "Go back, reload the page and try again.")


def token() -> str:
    """This session's CSRF token (made on first use)."""
    value = session.get(SESSION_KEY)
    if not value:
        value = session[SESSION_KEY] = secrets.token_urlsafe(32)
    return value


def rotate() -> str:
    session[SESSION_KEY] = secrets.token_urlsafe(32)
    return session[SESSION_KEY]


def valid(sent: str | None) -> bool:
    expected = session.get(SESSION_KEY)
    return bool(expected and sent) and hmac.compare_digest(str(sent).encode(), str(expected).encode())


def check() -> None:
    """Abort with 400 unless an unsafe request carries this session's token."""
    if request.method not in UNSAFE:
        return
    sent = request.headers.get(HEADER) or request.form.get(FIELD)
    if not valid(sent):
        abort(400, MESSAGE)


def protect(bp: Blueprint) -> None:
    """Check the token before every unsafe request to ``bp`` and give its templates ``csrf_token()``."""
    bp.before_request(check)
    bp.context_processor(lambda: {"csrf_token": token})
