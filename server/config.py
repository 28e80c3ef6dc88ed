"""Configuration of the consolidation server: the instance folder, the database and secrets.

Everything comes from the environment (or ``test_config``); nothing secret is ever
written into the repository.  Variables:

- ``NEARMISS_INSTANCE``: the instance folder for local state (default ``./instance``);
- ``NEARMISS_DATABASE_URL``: a PostgreSQL URL; without it an SQLite file in the instance folder;
- ``NEARMISS_SECRET_KEY``: the session signing key; without it one is generated into
  ``instance/secret_key`` (mode 0600) on first start;
- ``NEARMISS_MAX_UPLOAD_MB``: largest upload accepted (default 20);
- ``NEARMISS_SECURE_COOKIES``: send the session cookie over HTTPS only (default on, off for
  debug and testing);
- ``NEARMISS_PARSE_ISOLATED`` (default on), ``NEARMISS_PARSE_TIMEOUT_S`` (120),
  ``NEARMISS_PARSE_MEMORY_MB`` (4096) and ``NEARMISS_PARSE_WORKERS`` (2): uploads are read in worker
  processes with these limits, at most that many at once (others wait, up to the time limit);
- ``NEARMISS_RETENTION_DAYS``: remove the stored files of submissions superseded more than this many
  days ago (``server/retention.py``; the rows and the audit log stay); unset keeps every file.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from flask import Flask

DEFAULT_MAX_UPLOAD_MB = 20
SECRET_KEY_FILE = "secret_key"
DATABASE_FILE = "nearmiss.db"
UPLOADS_DIR = "uploads"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def instance_path(test_config: dict | None = None) -> Path:
    """The instance folder: ``test_config['INSTANCE_PATH']``, ``NEARMISS_INSTANCE`` or ``./instance``."""
    raw = (test_config or {}).get("INSTANCE_PATH") or os.environ.get("NEARMISS_INSTANCE") or "instance"
    return Path(raw).expanduser().resolve()


def env_flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    return default


def database_url(instance: Path, configured: str | None = None) -> str:
    """The SQLAlchemy URL: the configured one (PostgreSQL) or an SQLite file in the instance folder."""
    url = (configured or os.environ.get("NEARMISS_DATABASE_URL") or "").strip()
    if not url:
        return f"sqlite:///{instance / DATABASE_FILE}"
    # psycopg 3 is the driver we ship; plain postgresql:// would ask SQLAlchemy for psycopg2.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def load_secret_key(instance: Path) -> str:
    """``NEARMISS_SECRET_KEY``, else the key in ``instance/secret_key``, made (0600) on first start."""
    key = os.environ.get("NEARMISS_SECRET_KEY", "").strip()
    if key:
        return key
    path = instance / SECRET_KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text(encoding="ascii").strip()
        if key:
            return key
        raise RuntimeError(f"{path} is empty: delete it and start again to make a new key") from None
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key + "\n")
    return key


def env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise RuntimeError(f"{name} must be a number, not {raw!r}") from None
    if value <= 0:
        raise RuntimeError(f"{name} must be more than 0")
    return value


def retention_days() -> int | None:
    """``NEARMISS_RETENTION_DAYS`` as a whole number of days (0 or more), or None (keep every file)."""
    raw = os.environ.get("NEARMISS_RETENTION_DAYS", "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6:
        raise RuntimeError(f"NEARMISS_RETENTION_DAYS must be a whole number of days such as 365, not {raw!r}")
    return int(raw)


def max_upload_bytes() -> int:
    return int(env_number("NEARMISS_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB) * 1024 * 1024)


def isolation(app: Flask):  # noqa: ANN201 - server.ingest.Isolation | None
    """How uploads are read: in a worker process with the configured limits, or (None) in-process."""
    from .ingest import Isolation

    if not app.config["PARSE_ISOLATED"]:
        return None
    return Isolation(timeout_s=app.config["PARSE_TIMEOUT_S"], memory_mb=app.config["PARSE_MEMORY_MB"],
                     workers=app.config["PARSE_WORKERS"])


def configure(app: Flask, test_config: dict | None = None) -> None:
    """Fill ``app.config`` from the environment, then ``test_config`` on top."""
    instance = Path(app.instance_path)
    instance.mkdir(parents=True, exist_ok=True)
    test_config = dict(test_config or {})
    testing = bool(test_config.get("TESTING", False))
    debug = bool(test_config.get("DEBUG", app.debug))
    app.config.from_mapping(
        SECRET_KEY=load_secret_key(instance),
        DATABASE_URL=database_url(instance, test_config.pop("DATABASE_URL", None)),
        UPLOAD_FOLDER=str(instance / UPLOADS_DIR),
        MAX_CONTENT_LENGTH=max_upload_bytes(),
        PARSE_ISOLATED=env_flag("NEARMISS_PARSE_ISOLATED", True),
        PARSE_TIMEOUT_S=env_number("NEARMISS_PARSE_TIMEOUT_S", 120),
        PARSE_MEMORY_MB=int(env_number("NEARMISS_PARSE_MEMORY_MB", 4096)),
        PARSE_WORKERS=max(1, int(env_number("NEARMISS_PARSE_WORKERS", 2))),
        RETENTION_DAYS=retention_days(),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=env_flag("NEARMISS_SECURE_COOKIES", not (debug or testing)),
        JSON_SORT_KEYS=False,
    )
    test_config.pop("INSTANCE_PATH", None)
    app.config.update(test_config)
    Path(app.config["UPLOAD_FOLDER"]).mkdir(parents=True, exist_ok=True)
