"""The server's tables (SQLAlchemy 2.0 declarative).

The log tables (incidents, actions, exposure months, Site sheets) have one column per field
of ``workbook_templates.contract``, generated from its field lists with :data:`SQL_TYPES`, so
the contract is never restated here.  Derived fields (risk score, risk band, overdue) are
worked out when read, never stored.  ``server/migrations`` holds the same schema as explicit
Alembic revisions; ``tests/server/test_migrations.py`` fails when the two drift apart: after
changing the contract or this module, add a revision (``alembic revision --autogenerate``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON, Boolean, Date, DateTime, Float, ForeignKey, Index, Integer, MetaData, String, Text, UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeEngine

from workbook_templates.contract import ACTIONS, EXPOSURE_FIELDS, INCIDENTS, SITE_FIELDS, Field

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Contract field type -> (SQL type, Python type).  Text is unbounded: a wrong value in a coded
# column is stored as typed (and flagged by a finding), never cut or refused.
SQL_TYPES: dict[str, tuple[type[TypeEngine], type]] = {
    "text": (Text, str),
    "longtext": (Text, str),
    "code": (Text, str),
    "ref": (Text, str),
    "refs": (Text, str),
    "time": (Text, str),  # "HH:MM" as the contract shows it; kept as text so a stray value is not lost
    "date": (Date, dt.date),
    "int": (Integer, int),
    "number": (Float, float),
}

ROLES = ("site", "area_lead", "admin")  # token roles
USER_ROLES = ("site_manager", "area_lead", "admin")  # web login roles


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def stored_fields(fields: tuple[Field, ...] | list[Field]) -> list[Field]:
    """The fields that become columns: everything but the derived (formula) fields."""
    return [f for f in fields if f.type != "derived"]


def contract_columns(name: str, fields: tuple[Field, ...] | list[Field]) -> type:
    """A mixin class with one nullable, typed column per contract field, and ``raw_values``.

    ``raw_values`` keeps the text of cells that could not be read as their field's type
    (the reader's ``_raw_<field>`` values, e.g. a date typed as "31/02/2026"), so nothing a
    site sent is lost: the typed column holds NULL and a finding points at the cell.
    """
    attrs: dict[str, Any] = {"__annotations__": {}}
    for f in stored_fields(fields):
        sql_type, py_type = SQL_TYPES[f.type]
        attrs[f.name] = mapped_column(sql_type(), nullable=True)
        attrs["__annotations__"][f.name] = Mapped[py_type | None]
    # none_as_null: a row with nothing unreadable (nearly all) stores SQL NULL, not the JSON text "null"
    # (which cost a json.dumps per row on every upload).
    attrs["raw_values"] = mapped_column(JSON(none_as_null=True), nullable=True)
    attrs["__annotations__"]["raw_values"] = Mapped[dict | None]
    return type(name, (), attrs)


INCIDENT_FIELDS = [f.name for f in stored_fields(INCIDENTS.fields)]
ACTION_FIELDS = [f.name for f in stored_fields(ACTIONS.fields)]
EXPOSURE_FIELD_NAMES = [f.name for f in EXPOSURE_FIELDS]
SITE_SHEET_FIELDS = [f.name for f in SITE_FIELDS]


class Area(Base):
    __tablename__ = "areas"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    sites: Mapped[list[Site]] = relationship(back_populates="area")


class Site(Base):
    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(8), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    area_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    setting: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    area: Mapped[Area] = relationship(back_populates="sites")


class Token(Base):
    """An API token: only its SHA-256 is kept (tokens are 256-bit random, so a fast hash is enough)."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), index=True)
    area_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"), index=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    site: Mapped[Site | None] = relationship()
    area: Mapped[Area | None] = relationship()

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def who(self) -> str:
        return f"token:{self.id}"


class User(Base):
    """A web login; the password is kept as a werkzeug salted hash."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(20))
    area_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"), index=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    site: Mapped[Site | None] = relationship()
    area: Mapped[Area | None] = relationship()

    @property
    def who(self) -> str:
        return f"user:{self.username}"


class Submission(Base):
    """One uploaded workbook: the site's whole log at that moment.  The newest is current."""

    __tablename__ = "submissions"
    __table_args__ = (
        # Two uploads of the same rows for a site are one submission, even when they race.
        UniqueConstraint("site_id", "content_sha256"),
        Index("ix_submissions_site_id_is_current", "site_id", "is_current"),
        Index("ix_submissions_site_id_file_sha256", "site_id", "file_sha256"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    file_sha256: Mapped[str] = mapped_column(String(64))
    content_sha256: Mapped[str] = mapped_column(String(64))
    original_name: Mapped[str] = mapped_column(String(255), default="")  # metadata only, never a path
    stored_name: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    received_by_token_id: Mapped[int | None] = mapped_column(ForeignKey("tokens.id"))
    received_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    is_current: Mapped[bool] = mapped_column(Boolean, default=True)
    superseded_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # When the retention setting removed the stored upload (server/retention.py); the rows stay.
    file_removed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    n_incidents: Mapped[int] = mapped_column(Integer, default=0)
    n_actions: Mapped[int] = mapped_column(Integer, default=0)
    n_errors: Mapped[int] = mapped_column(Integer, default=0)
    n_warnings: Mapped[int] = mapped_column(Integer, default=0)

    site: Mapped[Site] = relationship()


IncidentFields = contract_columns("IncidentFields", INCIDENTS.fields)
ActionFields = contract_columns("ActionFields", ACTIONS.fields)
ExposureFields = contract_columns("ExposureFields", EXPOSURE_FIELDS)
SiteSheetFields = contract_columns("SiteSheetFields", SITE_FIELDS)


class Incident(IncidentFields, Base):
    """One row of a submission's Log sheet."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    excel_row: Mapped[int | None] = mapped_column(Integer)


class Action(ActionFields, Base):
    """One row of a submission's Actions sheet."""

    __tablename__ = "actions"

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    excel_row: Mapped[int | None] = mapped_column(Integer)


class ExposureMonth(ExposureFields, Base):
    """One month of the Site sheet's exposure table (bed days, care hours, visits)."""

    __tablename__ = "exposure_months"

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    excel_row: Mapped[int | None] = mapped_column(Integer)


class SiteSheet(SiteSheetFields, Base):
    """The key/value part of a submission's Site sheet (provider, CQC location id, commissioners)."""

    __tablename__ = "site_sheets"

    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"),
                                               primary_key=True)


class FindingRow(Base):
    """A finding of the reader or validator about a submission (``addin.findings.Finding``)."""

    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), index=True)
    sheet: Mapped[str] = mapped_column(String(100), default="")
    cell: Mapped[str] = mapped_column(String(20), default="")
    ref: Mapped[str] = mapped_column(Text, default="")
    rule: Mapped[str] = mapped_column(String(20))
    severity: Mapped[str] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(Text)


class AuditEvent(Base):
    """Who did what, when: every submission, download and admin change."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    who: Mapped[str] = mapped_column(String(200))  # "token:12", "user:alice", "cli:root"
    action: Mapped[str] = mapped_column(String(60), index=True)  # e.g. "submission.stored"
    what: Mapped[str] = mapped_column(String(200), default="")  # e.g. "site:OAK", "submission:7"
    file_sha256: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
