"""The nearmiss consolidation server (Flask).

``create_app(test_config=None)`` is the application factory: it reads the configuration
(``server/config.py``), opens the database and applies the Alembic migrations
(``server/db.py``), finishes or removes uploads a killed server left half done
(``server/recovery.py``), and registers the API (``server/api.py``) and ``/healthz``.
``nearmiss serve`` (``server/commands.py``) runs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    # Imported here: `nearmiss` imports this package for every verb, and most need no Flask.
    from flask import Flask, jsonify, request
    from sqlalchemy.exc import SQLAlchemyError
    from werkzeug.exceptions import HTTPException

    from . import config, db, recovery

    app = Flask(__name__, instance_path=str(config.instance_path(test_config)), instance_relative_config=True)
    config.configure(app, test_config)
    db.init_app(app)
    recovery.recover_app(app)  # finish or remove uploads a killed server left half done

    from .api import bp as api_bp

    app.register_blueprint(api_bp)
    from .web import register as register_web  # the web pages, /api/v1/summary and /api/v1/returns
    register_web(app)

    @app.get("/healthz")
    def healthz():  # noqa: ANN202
        """200 when the app and its database answer (``SELECT 1``), 503 when the database does not."""
        try:
            db.ping(db.get_db())
        except (SQLAlchemyError, OSError):
            app.logger.exception("health check: database not reachable")
            return jsonify({"status": "unavailable", "database": "unreachable"}), 503
        return jsonify({"status": "ok", "database": db.get_db().engine.dialect.name})

    @app.errorhandler(HTTPException)
    def _api_errors_as_json(exc: HTTPException):  # noqa: ANN202
        # Errors outside a blueprint view (404 of an unknown /api path, 405) in the API's JSON form.
        if request.path.startswith("/api/"):
            response = jsonify({"error": exc.description or exc.name, "status": exc.code})
            response.status_code = exc.code or 500
            return response
        return exc

    return app
