"""The web pages of the consolidation server: login, uploads, governance summaries, returns.

Server-rendered Jinja pages for people (the API, ``server/api.py`` and
``server/api_reports.py``, is for scripts).  People log in with the users made by
``nearmiss admin add-user``; the session is Flask's signed cookie.  Every form is protected
by a CSRF token (``csrf.py``) and logins are throttled (``throttle.py``).

Who sees what (``access.py``): a site manager their own site, an area lead their area and its
sites, an admin everything; anyone else gets 403.

Pages (``views.py``): ``/login``, ``/logout``, ``/`` (each role's start page), ``/upload``
(several workbooks at once: findings per file and a checked copy of each), ``/areas/<name>``
and ``/sites/<code>`` (the governance summary with SPC charts drawn as SVG by ``charts.py``,
its workbook and CSV downloads), ``/returns`` (the commissioner return), ``/admin/audit`` (the audit
log, administrators only).

:func:`register` adds these pages and the summary/returns API to an app (create_app calls it).
"""

from __future__ import annotations

from flask import Blueprint, Flask

bp = Blueprint("web", __name__, template_folder="templates", static_folder="static",
               static_url_path="/web-static")

from . import views  # noqa: E402,F401  (attaches the routes to bp)


def register(app: Flask) -> None:
    """Register the web pages and the summary and returns API (``server/api_reports.py``)."""
    from ..api_reports import bp as reports_bp

    app.register_blueprint(reports_bp)
    app.register_blueprint(bp)
