"""Bring a manager's own, messy Excel log into the template: ``convert_legacy`` then ``write_conversion``.

The converter reads every sheet (:mod:`addin.legacy`), maps columns to the
contract (exact labels and synonyms, then fuzzy matching; a mapping file
overrides), maps values to the code lists (:mod:`addin.value_maps`), parses
dates day-first, skips only blank, total and repeated header rows, and derives
what the contract requires where that is safe.  It never drops a row: what it
cannot map goes into the row's Notes with a finding.  Columns of people's names
become pseudonymous ``person_ref`` values (:mod:`addin.pseudonym`); names are
never written to the output, the notes, the findings or the printed report.

Invariant, checked on every run: rows in = rows out + rows skipped (blank,
total or repeated header rows), for the log and the action tracker alike.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import os
import re
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from rapidfuzz import fuzz

from workbook_templates.builder import build_workbook
from workbook_templates.codelists import CODE_LISTS
from workbook_templates.contract import ACTIONS, INCIDENTS, Field, TableSheet
from workbook_templates.records import SiteRecords, field_names
from workbook_templates.rules import RULES_BY_ID

from .checks import suggested_tier
from .findings import Finding
from .legacy import (
    HEADER_FUZZY_CUTOFF, VOCABULARY, LegacyColumn, LegacyRow, LegacySheet, assign_fields, best_field,
    read_legacy,
)
from .pseudonym import (
    NameScrubber, Pseudonymiser, header_says_names, header_says_person, header_says_staff, load_key,
    looks_like_name,
)
from .validate import validate_records
from .value_maps import (
    AGE_BANDS, VALUE_FUZZY_CUTOFF, exact_table, fuzzy_choices, normalise,
)

TABLES: dict[str, TableSheet] = {"incidents": INCIDENTS, "actions": ACTIONS}
# The tracker has no notes column: an action's import notes go to its evidence, marked "Import notes:".
NOTES_FIELD = {"incidents": "notes", "actions": "evidence"}
NAME_VALUE_SHARE = 0.5  # a column is a name column when this share of its text values look like names
MOVE_BY_VALUES_SHARE = 0.8  # a code column is re-pointed when this share of its values fit another list
TIERS = ("low", "moderate", "serious")
NAMED_FIELDS = {"owner_role"}  # fields whose values may be people's names by the site's choice



class MappingFileError(ValueError):
    """The mapping file cannot be read or names a field the contract does not have."""


def count_rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def conversion_finding(rule: str, *, file: str = "", sheet: str = "", cell: str = "", ref: str = "",
                       label: str = "", value: object = "") -> Finding:
    """A finding of the converter; its rule (CV0xx) is declared with the others in rules.py."""
    rule_def = RULES_BY_ID[rule]
    return Finding(file=file, sheet=sheet, cell=cell, ref=ref, rule=rule, severity=rule_def.severity,
                   message=rule_def.message.format(label=label, value=value))


# --- results ------------------------------------------------------------------------------------------------

@dataclass
class ColumnPlan:
    column: LegacyColumn
    target: str  # a contract field, "notes", "ignored" or "person_ref"
    how: str  # exact | fuzzy | mapping file | names | values | unmatched | worked out by the template | empty
    names: bool = False  # the column holds people's names

    def describe(self) -> str:
        if self.target == "person_ref":
            return "person_ref (pseudonymised; names are not copied)"
        if self.target == "ignored" and self.names:
            return "left out (holds names)"
        if self.target == "notes":
            return "notes" if self.how != "mapping file" else "notes (mapping file)"
        if self.target == "ignored":
            return f"ignored ({self.how})"
        return self.target if self.how in ("exact", "fuzzy") else f"{self.target} ({self.how})"


@dataclass
class SheetReport:
    name: str
    kind: str  # incidents | actions | ignored
    state: str = "visible"
    header_row: int | None = None
    reason: str = ""
    columns: list[ColumnPlan] = field(default_factory=list)
    rows_in: int = 0
    rows_out: int = 0
    skipped: Counter = field(default_factory=Counter)


@dataclass
class ConversionResult:
    records: SiteRecords
    source: str  # the legacy file's name
    sheets: list[SheetReport]
    column_mapping: dict[str, dict[str, str]]  # sheet -> source header -> field | "notes" | "ignored"
    value_fixes: Counter  # (field, value as written, code or what was done) -> rows
    findings: list[Finding]  # what needs a person's eye, pointing at the old log's cells
    rows_in: int
    rows_out: int
    rows_skipped: dict[str, int]  # reason -> rows
    skipped: list[tuple[str, int, str]]  # (sheet, row, reason)
    validation: list[Finding] = field(default_factory=list)  # the new workbook's findings, when available

    @property
    def needs_review(self) -> list[str]:
        """What needs a person's eye, one line each (no names: they were never copied).

        Row findings name the old log's cell and the row's new ref; a sheet-wide finding repeated on
        several sheets (one sheet per month) is one line naming the sheets.
        """
        lines: list = []
        sheets_of: dict[tuple[str, str], list[str]] = {}
        for f in self.findings:
            if f.ref:
                lines.append(f"{f.sheet}!{f.cell} ({f.ref}): {f.message}" if f.cell
                             else f"{f.sheet} ({f.ref}): {f.message}")
                continue
            key = (f.message, re.sub(r"\d+$", "", f.cell))
            if key not in sheets_of:
                sheets_of[key] = []
                lines.append(key)
            sheets_of[key].append(f.sheet)
        out = []
        for line in lines:
            if isinstance(line, tuple):
                message, column = line
                sheets = ", ".join(dict.fromkeys(s for s in sheets_of[line] if s))
                where = sheets + (f" column {column}" if column and sheets else "")
                line = f"{where}: {message}" if where else message
            out.append(line)
        return out


# --- mapping file -------------------------------------------------------------------------------------------

SPECIAL_TARGETS = {"ignore": "ignored", "ignored": "ignored", "skip": "ignored", "notes": "notes",
                   "person_ref": "person_ref"}


@dataclass
class Mapping:
    columns: dict[str, str] = field(default_factory=dict)  # normalised header -> target
    values: dict[str, dict[str, str]] = field(default_factory=dict)  # field or list -> normalised value -> code
    source: str = ""


def load_mapping(path: str | Path) -> Mapping:
    """A JSON object ``{"Header": "field"}`` (or ``{"columns": {...}, "values": {"category": {"Wobble": "falls"}}}``)
    or a CSV of ``source_header,field`` rows.  Targets: a contract field, ``notes``, ``ignore`` or ``person_ref``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise MappingFileError(f"Cannot read the mapping file {path}: {exc.strerror or exc}.") from None
    columns: dict[str, str] = {}
    values: dict[str, dict[str, str]] = {}
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MappingFileError(f"The mapping file {path.name} is not valid JSON (line {exc.lineno}).") from None
        if not isinstance(data, dict):
            raise MappingFileError(f"The mapping file {path.name} must hold a JSON object.")
        raw_columns = data.get("columns", {} if "values" in data else data)
        raw_values = data.get("values", {})
        if not isinstance(raw_columns, dict) or not isinstance(raw_values, dict):
            raise MappingFileError(f"In {path.name}, 'columns' and 'values' must be JSON objects.")
        columns = {str(k): str(v) for k, v in raw_columns.items()}
        for name, table in raw_values.items():
            if not isinstance(table, dict):
                raise MappingFileError(f"In {path.name}, values for '{name}' must be a JSON object.")
            values[str(name)] = {normalise(k): str(v) for k, v in table.items()}
    else:
        for i, row in enumerate(csv.reader(text.splitlines()), start=1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if len(row) < 2:
                raise MappingFileError(f"{path.name} line {i}: write 'source header,field'.")
            if i == 1 and normalise(row[0]) in ("source header", "source", "header") and normalise(row[1]) in (
                    "field", "target"):
                continue
            columns[row[0].strip()] = row[1].strip()
    allowed = set(field_names("incidents")) | set(field_names("actions"))
    out = Mapping(source=path.name)
    for header, target in columns.items():
        t = target.strip().lower()
        t = SPECIAL_TARGETS.get(t, t)
        if t not in allowed and t not in SPECIAL_TARGETS.values():
            raise MappingFileError(f"The mapping file sends '{header}' to '{target}', which is not a field of "
                                   "the template. Use a field name such as occurred_at or category, or notes, "
                                   "ignore or person_ref.")
        out.columns[normalise(header)] = t
    for name, table in values.items():
        list_name = _code_list_of(name)
        if list_name is None:
            raise MappingFileError(f"The mapping file gives values for '{name}', which is not a coded field.")
        for raw, code in table.items():
            if code not in CODE_LISTS[list_name]:
                raise MappingFileError(f"The mapping file maps a {name} value to '{code}', which is not in the "
                                       f"{list_name} list.")
        out.values.setdefault(list_name, {}).update(table)
    return out


def _code_list_of(name: str) -> str | None:
    if name in CODE_LISTS:
        return name
    for table in TABLES.values():
        for f in table.fields:
            if f.name == name and f.codes:
                return f.codes
    return None


# --- values -------------------------------------------------------------------------------------------------

class ValueMatcher:
    """Cell values to codes: mapping file, exact (codes, meanings, synonyms), then fuzzy with a cutoff."""

    def __init__(self, setting: str = "care_home", extra: dict[str, dict[str, str]] | None = None):
        self.setting = setting
        self.extra = extra or {}
        self._exact: dict[str, dict[str, str]] = {}
        self._fuzzy: dict[str, dict[str, str]] = {}
        self._cache: dict[tuple[str, str], tuple[str | None, str]] = {}

    def match(self, list_name: str, raw: object) -> tuple[str | None, str]:
        """(code, how): how is exact | fuzzy | ambiguous | unmatched."""
        text = value_text(raw)
        if isinstance(raw, bool):
            text = "true" if raw else "false"
        norm = normalise(text)
        if not norm:
            return None, "unmatched"
        if list_name == "age_band":
            band = _age_band(raw)
            if band:
                return band, "exact"
        key = (list_name, norm)
        if key not in self._cache:
            self._cache[key] = self._match(list_name, norm)
        return self._cache[key]

    def _match(self, list_name: str, norm: str) -> tuple[str | None, str]:
        extra = self.extra.get(list_name, {})
        if norm in extra:
            return extra[norm], "exact"
        if list_name not in self._exact:
            self._exact[list_name] = exact_table(list_name, self.setting)
            self._fuzzy[list_name] = fuzzy_choices(list_name, self.setting)
        if norm in self._exact[list_name]:
            return self._exact[list_name][norm], "exact"
        if len(norm) < 3:
            return None, "unmatched"
        words = set(norm.split())
        contained = [(text, code) for text, code in self._fuzzy[list_name].items() if set(text.split()) <= words]
        if contained:
            # Nested synonyms ("fall" inside "unwitnessed fall") count once, as the longer one.
            sets = [set(t.split()) for t, _ in contained]
            outer = {code for (t, code), ws in zip(contained, sets) if not any(ws < other for other in sets)}
            if len(outer) == 1:
                return outer.pop(), "fuzzy"
            return None, "ambiguous"
        best: dict[str, float] = {}
        for text, code in self._fuzzy[list_name].items():
            score = fuzz.token_sort_ratio(norm, text)
            if score >= VALUE_FUZZY_CUTOFF and score > best.get(code, 0):
                best[code] = score
        if not best:
            return None, "unmatched"
        ranked = sorted(best.items(), key=lambda kv: -kv[1])
        if len(ranked) > 1 and ranked[1][1] >= ranked[0][1] - 2:
            return None, "ambiguous"
        return ranked[0][0], "fuzzy"


def _age_band(raw: object) -> str | None:
    number = raw if isinstance(raw, (int, float)) and not isinstance(raw, bool) else None
    if isinstance(raw, str) and raw.strip().isdigit():
        number = int(raw.strip())
    if number is None or number != int(number):
        return None
    for low, high, band in AGE_BANDS:
        if low <= number <= high:
            return band
    return None


def value_text(value: object) -> str:
    """A cell value as text: whole numbers without '.0', dates as dd/mm/yyyy, times as hh:mm."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        if (value.hour, value.minute, value.second) == (0, 0, 0):
            return value.strftime("%d/%m/%Y")
        return value.strftime("%d/%m/%Y %H:%M")
    if isinstance(value, dt.date):
        return value.strftime("%d/%m/%Y")
    if isinstance(value, dt.time):
        return value.strftime("%H:%M")
    return " ".join(str(value).split()) if isinstance(value, str) else str(value)


MONTHS = {name: i for i, names in enumerate(
    [(), ("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",),
     ("jun", "june"), ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"), ("oct", "october"),
     ("nov", "november"), ("dec", "december")]) for name in names}
_WEEKDAYS = r"\b(?:mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)(?:day|sday|nesday|urday)?\b"
_TIME = r"(?:\s*(?:t|at|@)?\s*(\d{1,2})[:.](\d{2})(?::(\d{2}))?\s*(am|pm)?)?"
_DMY = re.compile(r"^(\d{1,2})[/.\- ](\d{1,2})[/.\- ](\d{4}|\d{2})" + _TIME + "$")
_YMD = re.compile(r"^(\d{4})[/.\-](\d{1,2})[/.\-](\d{1,2})" + _TIME + "$")
_D_MON_Y = re.compile(r"^(\d{1,2})(?:st|nd|rd|th)?(?: of)? ([a-z]+)\.? (\d{4}|\d{2})" + _TIME + "$")
_MON_D_Y = re.compile(r"^([a-z]+)\.? (\d{1,2})(?:st|nd|rd|th)?,? (\d{4})" + _TIME + "$")
EXCEL_SERIAL_RANGE = (30_000, 60_000)  # 1982 to 2064: numbers outside are not taken for dates


def parse_date(value: object) -> tuple[pd.Timestamp | None, str | None]:
    """(date, "hh:mm" or None): real dates kept, text read day-first, Excel serial numbers converted."""
    if isinstance(value, dt.datetime):
        time = value.strftime("%H:%M") if (value.hour, value.minute) != (0, 0) else None
        return pd.Timestamp(value.date()), time
    if isinstance(value, dt.date):
        return pd.Timestamp(value), None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if EXCEL_SERIAL_RANGE[0] <= value <= EXCEL_SERIAL_RANGE[1]:
            stamp = pd.Timestamp("1899-12-30") + pd.to_timedelta(float(value), unit="D")
            time = stamp.strftime("%H:%M") if stamp.hour or stamp.minute else None
            return stamp.normalize(), time
        return None, None
    if not isinstance(value, str):
        return None, None
    text = re.sub(_WEEKDAYS, " ", value.strip().lower())
    text = " ".join(text.replace(",", " ").split())
    for pattern, order in ((_YMD, "ymd"), (_DMY, "dmy"), (_D_MON_Y, "dmy"), (_MON_D_Y, "mdy")):
        m = pattern.match(text)
        if not m:
            continue
        groups = m.groups()
        parts = dict(zip(order, groups[:3]))
        month = parts["m"]
        month = MONTHS.get(month) if not month.isdigit() else int(month)
        if not month:
            return None, None
        year = int(parts["y"])
        if year < 100:
            year += 2000 if year < 70 else 1900
        try:
            day = dt.date(year, month, int(parts["d"]))
        except ValueError:
            return None, None
        return pd.Timestamp(day), _time_from_groups(groups[3:])
    return None, None


def _time_from_groups(groups: tuple) -> str | None:
    hour, minute, _, ampm = groups
    if hour is None:
        return None
    h, m = int(hour), int(minute)
    if ampm == "pm" and h < 12:
        h += 12
    if ampm == "am" and h == 12:
        h = 0
    return f"{h:02d}:{m:02d}" if h < 24 and m < 60 else None


_TIME_TEXT = re.compile(r"^(\d{1,2})(?:[:.](\d{2}))?(?::\d{2})?\s*(am|pm)?$|^(\d{2})(\d{2})$")


def parse_time(value: object) -> str | None:
    """'hh:mm' from a time, a datetime, a fraction of a day or text like '14:30', '2.30pm', '1430'."""
    if isinstance(value, dt.datetime):
        return value.strftime("%H:%M")
    if isinstance(value, dt.time):
        return value.strftime("%H:%M")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1:
        minutes = round(value * 24 * 60)
        return f"{minutes // 60 % 24:02d}:{minutes % 60:02d}"
    if not isinstance(value, str):
        return None
    text = value.strip().lower().replace(" ", "")
    m = _TIME_TEXT.match(text)
    if not m:
        return None
    if m.group(4):
        h, mi, ampm = int(m.group(4)), int(m.group(5)), None
    else:
        if m.group(2) is None and m.group(3) is None:
            return None  # a bare number is not a time
        h, mi, ampm = int(m.group(1)), int(m.group(2) or 0), m.group(3)
    if ampm == "pm" and h < 12:
        h += 12
    if ampm == "am" and h == 12:
        h = 0
    return f"{h:02d}:{mi:02d}" if h < 24 and mi < 60 else None


def parse_int(value: object, f: Field) -> int | None:
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and re.fullmatch(r"\d+(\.0+)?", value.strip()):
        number = float(value.strip())
    if number is None or not number.is_integer():
        return None
    number = int(number)
    if (f.minimum is not None and number < f.minimum) or (f.maximum is not None and number > f.maximum):
        return None
    return number


def sheet_month(name: str) -> tuple[int, int] | None:
    """(year, month) a sheet is for, from names like 'Jan 2026', 'January 26', 'Apr-2026'."""
    words = normalise(name).split()
    month = next((MONTHS[w] for w in words if w in MONTHS), None)
    year = next((int(w) for w in words if w.isdigit() and len(w) in (2, 4)), None)
    if month is None or year is None:
        return None
    return (year + 2000 if year < 100 else year), month


_TOTAL = re.compile(r"^(?:grand |sub ?)?totals?\b|^(?:total|count|number) of\b|^count$")


def row_kind(values: list, headers: list[str]) -> str:
    """'blank', 'total', 'header' (the header row again) or 'data'."""
    filled = [v for v in values if v is not None and not (isinstance(v, str) and not v.strip())]
    if not filled:
        return "blank"
    texts = [normalise(v) for v in filled if isinstance(v, str)]
    others = [v for v in filled if not isinstance(v, str)]
    if texts and any(_TOTAL.match(t) for t in texts):
        rest_text = [t for t in texts if not _TOTAL.match(t) and not t.replace(" ", "").isdigit()]
        if not rest_text and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in others):
            return "total"
    header_norms = {normalise(h) for h in headers if h}
    if len(texts) >= 2 and len(texts) == len(filled) and all(t in header_norms for t in texts):
        return "header"
    return "data"


def _numbers_only(values: list) -> bool:
    filled = [v for v in values if v is not None]
    return bool(filled) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in filled)


# --- the converter ------------------------------------------------------------------------------------------

@dataclass
class _Row:
    kind: str
    sheet: LegacySheet
    source: LegacyRow
    rec: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    pending: list[dict] = field(default_factory=list)  # findings waiting for the row's final ref
    time_from_date: str | None = None
    original_ref: str | None = None
    unreadable: set = field(default_factory=set)  # fields whose old value could not be read
    cells: dict = field(default_factory=dict)  # field -> the old log's cell it came from


class _Converter:
    def __init__(self, path: Path, *, site_code: str, site_name: str, setting: str, mapping: Mapping | None,
                 key: bytes | None, today: dt.date):
        self.path = path
        self.file = path.name
        self.site_code = site_code.strip().upper()
        self.site_name = site_name.strip()
        self.setting = setting
        self.mapping = mapping or Mapping()
        self.key = key
        self.today = today
        self.values = ValueMatcher(setting, self.mapping.values)
        self.findings: list[Finding] = []
        self.value_fixes: Counter = Counter()
        self.scrubber = NameScrubber()
        self.pseudonymiser: Pseudonymiser | None = None
        self.reports: list[SheetReport] = []
        self.skipped: list[tuple[str, int, str]] = []
        self.mapping_used: set[str] = set()
        self._known: set[str] | None = None

    # -- findings --
    def finding(self, rule: str, **kwargs) -> None:
        kwargs.setdefault("file", self.file)
        self.findings.append(conversion_finding(rule, **kwargs))

    # -- columns --
    def plan_columns(self, sheet: LegacySheet) -> list[ColumnPlan]:
        table = TABLES[sheet.kind]
        vocab = VOCABULARY[sheet.kind]
        input_names = set(field_names(sheet.kind))
        plans: dict[int, ColumnPlan] = {}
        column_values = {pos: [r.values[pos] for r in sheet.rows] for pos in range(len(sheet.columns))}
        free: dict[int, str] = {}
        for pos, col in enumerate(sheet.columns):
            norm = normalise(col.header) if col.header else normalise(col.key)
            values = [v for v in column_values[pos] if v is not None]
            header_names = bool(col.header) and header_says_names(col.header)
            guess = best_field(norm, vocab)
            # Owners of actions may be named (the domain notes leave that to the site).
            value_names = (guess is None or guess[0] not in NAMED_FIELDS) and \
                self._values_look_like_names(values, col.header)
            target = self.mapping.columns.get(norm)
            if target is not None and (target in input_names or target in ("notes", "ignored", "person_ref")):
                self.mapping_used.add(norm)
                if target == "person_ref" and "person_ref" not in input_names:
                    target = "ignored"
                if header_names and target not in ("person_ref", "ignored"):
                    # The mapping file cannot send a column headed as names into the workbook.
                    plans[pos] = ColumnPlan(col, "ignored", "names", names=True)
                else:
                    plans[pos] = ColumnPlan(col, target, "mapping file",
                                            names=target == "person_ref" or value_names)
                continue
            if header_names or value_names:
                plans[pos] = ColumnPlan(col, "ignored", "names", names=True)
                continue
            if not values and not col.header:
                plans[pos] = ColumnPlan(col, "ignored", "empty")
                continue
            free[pos] = col.header or ""
        # Names: the column about the person cared for becomes person_ref (one only); the rest are left out.
        taken = {p.target for p in plans.values() if p.target in input_names}
        if "person_ref" in input_names and "person_ref" not in taken:
            name_cols = [pos for pos, p in plans.items() if p.names and p.how == "names"]
            ranked = sorted(name_cols, key=lambda pos: (not header_says_person(sheet.columns[pos].header),
                                                        header_says_staff(sheet.columns[pos].header), pos))
            if ranked and not header_says_staff(sheet.columns[ranked[0]].header):
                plans[ranked[0]].target = "person_ref"
                taken.add("person_ref")
        # Headers: exact and fuzzy, each field once.
        order = [f.name for f in table.fields]
        vocab_free = {text: name for text, name in vocab.items() if name not in taken}
        assigned = assign_fields(free, vocab_free, order, HEADER_FUZZY_CUTOFF)
        for pos in free:
            col = sheet.columns[pos]
            if pos in assigned:
                name, score = assigned[pos]
                f = table.field(name)
                if f.type == "derived":
                    plans[pos] = ColumnPlan(col, "ignored", "worked out by the template")
                else:
                    plans[pos] = ColumnPlan(col, name, "exact" if score >= 100 else "fuzzy")
            else:
                plans[pos] = ColumnPlan(col, "notes", "unmatched")
        self._check_by_values(sheet, plans, column_values)
        return [plans[pos] for pos in range(len(sheet.columns))]

    def _values_look_like_names(self, values: list, header: str) -> bool:
        texts = [v for v in values if isinstance(v, str)]
        if len(texts) < 2 and not (texts and header_says_person(header)):
            return False
        bare = header_says_person(header)
        hits = sum(looks_like_name(v, allow_bare_initials=bare) and not self._known_value(v) for v in texts)
        return hits >= max(1, NAME_VALUE_SHARE * len(texts))

    def _known_value(self, value: str) -> bool:
        """A value some code list knows ('Data Breach', 'Team Leader' is not; 'Slip Trip Fall' is)."""
        if self._known is None:
            self._known = set()
            for list_name in CODE_LISTS:
                self._known.update(exact_table(list_name, self.setting))
        return normalise(value) in self._known

    def _check_by_values(self, sheet: LegacySheet, plans: dict[int, ColumnPlan], column_values: dict) -> None:
        """Re-point columns the header matched but whose values say otherwise: a 'Type' column of 'Fall',
        'Med error' is a category, not near miss or incident; a date column whose values are not dates
        goes to notes.  Columns no header matched stay in notes (values alone are too weak a sign)."""
        table = TABLES[sheet.kind]
        taken = {p.target for p in plans.values()}
        for pos, plan in plans.items():
            if plan.how not in ("exact", "fuzzy") or plan.target == "notes":
                continue
            values = [v for v in column_values[pos] if v is not None]
            if len(values) < 2:
                continue
            current = table.field(plan.target) if plan.target in table.names else None
            if current is not None and current.type == "date":
                ok = sum(parse_date(v)[0] is not None for v in values)
                if ok < 0.5 * len(values):
                    taken.discard(plan.target)
                    plan.target, plan.how = "notes", "unmatched"
                    current = None
            if current is not None and current.type != "code":
                continue
            share_now = self._share(current.codes, values) if current is not None else 0.0
            if share_now >= 0.5:
                continue
            best: tuple[float, str] | None = None
            for f in table.fields:
                if f.type != "code" or f.name in taken or f.codes == "yes_no" or f.name == "event_type":
                    continue
                share = self._share(f.codes, values)
                if share >= MOVE_BY_VALUES_SHARE and len({normalise(value_text(v)) for v in values}) >= 2 and (
                        best is None or share > best[0]):
                    best = (share, f.name)
            if best is not None:
                if plan.target in table.names:
                    taken.discard(plan.target)
                plan.target, plan.how = best[1], "values"
                taken.add(best[1])
                self.finding("CV024", sheet=sheet.name, cell=f"{plan.column.letter}{sheet.header_row}",
                             label=plan.column.key, value=best[1])

    def _share(self, list_name: str | None, values: list) -> float:
        if not list_name or not values:
            return 0.0
        return sum(self.values.match(list_name, v)[0] is not None for v in values) / len(values)

    # -- names --
    def collect_names(self, sheet: LegacySheet, plans: list[ColumnPlan]) -> None:
        for pos, plan in enumerate(plans):
            if not plan.names and plan.target != "person_ref":
                continue
            for row in sheet.rows:
                value = row.values[pos]
                if value is None:
                    continue
                ref = self.person_ref(value) if plan.target == "person_ref" else None
                text = value_text(value)
                # Whatever identifies the person (a name, initials, a first name) is taken out of free text;
                # bare numbers are not, or every "2" in a description would go.
                if not text.replace(".", "").isdigit():
                    self.scrubber.add(text, ref)

    def person_ref(self, value: object) -> str | None:
        if self.pseudonymiser is None:
            key = self.key if self.key is not None else load_key()
            self.pseudonymiser = Pseudonymiser(key, self.site_code)
        return self.pseudonymiser.ref(value_text(value))

    # -- rows --
    def convert_sheet(self, sheet: LegacySheet, plans: list[ColumnPlan], report: SheetReport) -> list[_Row]:
        table = TABLES[sheet.kind]
        headers = [c.header for c in sheet.columns]
        month = sheet_month(sheet.name) if sheet.kind == "incidents" else None
        out: list[_Row] = []
        kinds = [row_kind(r.values, headers) for r in sheet.rows]
        last_text = max((i for i, r in enumerate(sheet.rows) if kinds[i] == "data" and not _numbers_only(r.values)),
                        default=-1)
        for i, source in enumerate(sheet.rows):
            kind = kinds[i]
            if kind == "data" and i > last_text and _numbers_only(source.values):
                kind = "total"  # trailing rows of numbers only: a count or sum under the table
            report.rows_in += 1
            if kind != "data":
                reason = {"blank": "blank", "total": "total row", "header": "repeated header"}[kind]
                report.skipped[reason] += 1
                self.skipped.append((sheet.name, source.row, reason))
                continue
            row = _Row(kind=sheet.kind, sheet=sheet, source=source, rec={n: None for n in field_names(sheet.kind)})
            for pos, plan in enumerate(plans):
                self.convert_cell(row, pos, plan, table, month)
            out.append(row)
            report.rows_out += 1
        return out

    def cell(self, row: _Row, col: LegacyColumn) -> str:
        return f"{col.letter}{row.source.row}"

    def convert_cell(self, row: _Row, pos: int, plan: ColumnPlan, table: TableSheet,
                     month: tuple[int, int] | None) -> None:
        col = plan.column
        value = row.source.values[pos]
        if pos in row.source.no_saved_value and plan.target != "ignored":
            row.notes.append(f"{col.key}: formula with no saved result")
            row.pending.append(dict(rule="CV017", cell=self.cell(row, col), label=col.key))
            return
        if value is None or plan.target == "ignored":
            return
        row.cells.setdefault(plan.target, self.cell(row, col))
        if plan.target == "person_ref":
            row.rec["person_ref"] = self.person_ref(value)
            return
        if plan.target == "notes" and (plan.how not in ("exact", "fuzzy") or "notes" not in table.names):
            if looks_like_name(value):
                row.pending.append(dict(rule="CV022", cell=self.cell(row, col), label=col.key))
                return
            row.notes.append(f"{col.key}: {value_text(value)}")
            return
        f = table.field(plan.target)
        label = f.label
        current = row.rec.get(f.name)
        if f.type == "code":
            code, how = self.values.match(f.codes, value)
            if code is None and f.name == "event_type" and isinstance(value, bool):
                code = "near_miss" if value else "incident"
            if code is None:
                self._unmatched(row, col, f, value, "CV001")
                return
            if normalise(value_text(value)) != normalise(code):
                self.value_fixes[(f.name, value_text(value)[:40], code)] += 1
            if current is not None and current != code:
                row.notes.append(f"{col.key}: {value_text(value)}")
                return
            row.rec[f.name] = code
        elif f.type == "date":
            stamp, time = parse_date(value)
            if stamp is None:
                self._unmatched(row, col, f, value, "CV002")
                return
            if not isinstance(value, (dt.date, dt.datetime)):
                self.value_fixes[(f.name, "date written as text or a number", "date")] += 1
            if current is not None:
                row.notes.append(f"{col.key}: {value_text(value)}")
                return
            row.rec[f.name] = stamp
            if f.name == "occurred_at":
                row.time_from_date = time
                if month and (stamp.year, stamp.month) != month and stamp.day <= 12 and (
                        stamp.year, stamp.day) == month:
                    row.pending.append(dict(rule="CV012", cell=self.cell(row, col), label=label,
                                            value=stamp.strftime("%d/%m/%Y")))
        elif f.type == "time":
            time = parse_time(value)
            if time is None:
                self._unmatched(row, col, f, value, "CV003")
                return
            row.rec[f.name] = row.rec[f.name] or time
        elif f.type == "int":
            number = parse_int(value, f)
            if number is None:
                self._unmatched(row, col, f, value, "CV003")
                return
            row.rec[f.name] = row.rec[f.name] if row.rec[f.name] is not None else number
        else:
            text = value_text(value)
            if f.name == table.ref_field or f.name == "incident_refs":
                text = text.strip()
            if current:
                row.rec[f.name] = f"{current}\n{col.key}: {text}" if f.type == "longtext" else current
                if f.type != "longtext":
                    row.notes.append(f"{col.key}: {text}")
            else:
                row.rec[f.name] = text

    def _unmatched(self, row: _Row, col: LegacyColumn, f: Field, value: object, rule: str) -> None:
        if looks_like_name(value):
            row.pending.append(dict(rule="CV022", cell=self.cell(row, col), label=f.label))
            return
        row.unreadable.add(f.name)
        text = value_text(value)
        row.notes.append(f"{f.label} '{text}' could not be matched" if rule == "CV001"
                         else f"{f.label} '{text}' not understood")
        row.pending.append(dict(rule=rule, cell=self.cell(row, col), label=f.label, value=text[:60]))
        self.value_fixes[(f.name, text[:40], "left blank, kept in notes")] += 1


def convert_legacy(path: str | Path, *, site_code: str, site_name: str, setting: str = "care_home",
                   mapping: Mapping | str | Path | None = None, key: bytes | None = None,
                   today: dt.date | None = None, validate: bool = True) -> ConversionResult:
    """Read a legacy log and map it onto the contract (nothing is written; see :func:`write_conversion`).

    ``key`` is the pseudonym key; when None it is loaded (:func:`addin.pseudonym.load_key`) only if a
    column of names is found.  Raises ``LegacyReadError`` for a file that cannot be read,
    ``MappingFileError`` for a bad mapping file and ``PseudonymKeyError`` when names need a key and none
    is set up.  ``validate`` runs the validator over the converted records (``result.validation``).
    """
    path = Path(path)
    if setting not in CODE_LISTS["setting"]:
        raise ValueError(f"unknown setting {setting!r}")
    if mapping is not None and not isinstance(mapping, Mapping):
        mapping = load_mapping(mapping)
    conv = _Converter(path, site_code=site_code, site_name=site_name, setting=setting, mapping=mapping,
                      key=key, today=today or dt.date.today())
    book = read_legacy(path)
    if book.macros:
        conv.finding("CV020")

    planned: list[tuple[LegacySheet, list[ColumnPlan], SheetReport]] = []
    for sheet in book.sheets:
        report = SheetReport(name=sheet.name, kind=sheet.kind, state=sheet.state, header_row=sheet.header_row,
                             reason=sheet.reason)
        conv.reports.append(report)
        if sheet.kind == "ignored":
            if sheet.reason != "empty":
                conv.finding("CV014", sheet=sheet.name, label=sheet.name, value=sheet.reason)
            continue
        plans = conv.plan_columns(sheet)
        report.columns = plans
        planned.append((sheet, plans, report))
        if sheet.state != "visible":
            conv.finding("CV016", sheet=sheet.name, label=f"Sheet '{sheet.name}'")
        for plan in plans:
            col = plan.column
            if col.hidden:
                conv.finding("CV016", sheet=sheet.name, cell=f"{col.letter}{sheet.header_row}",
                             label=f"Column '{col.key}'")
            if plan.names or plan.target == "person_ref":
                rule = "CV010" if plan.target == "person_ref" else "CV011"
                conv.finding(rule, sheet=sheet.name, cell=f"{col.letter}{sheet.header_row}", label=col.key)
        hidden_rows = [r.row for r in sheet.rows if r.hidden and any(v is not None for v in r.values)]
        if hidden_rows:
            conv.finding("CV016", sheet=sheet.name, cell=f"A{hidden_rows[0]}",
                         label=f"{len(hidden_rows)} row(s) from row {hidden_rows[0]}")
    for norm in set(conv.mapping.columns) - conv.mapping_used:
        conv.finding("CV021", value=norm)

    # Every name is known before any free text is written, so names can be taken out of it.
    for sheet, plans, _ in planned:
        conv.collect_names(sheet, plans)

    rows: dict[str, list[_Row]] = {"incidents": [], "actions": []}
    for sheet, plans, report in planned:
        rows[sheet.kind].extend(conv.convert_sheet(sheet, plans, report))
        for pos, plan in enumerate(plans):
            if plan.target == "notes" and plan.how == "unmatched":
                col = plan.column
                filled = sum(1 for r in sheet.rows if r.values[pos] is not None)
                if filled:
                    conv.finding("CV015", sheet=sheet.name, cell=f"{col.letter}{sheet.header_row}",
                                 label=col.key, value=count_rows(filled))

    ref_map = _finish_incidents(conv, rows["incidents"])
    _finish_actions(conv, rows["actions"], ref_map)
    incidents = _frame(conv, "incidents", rows["incidents"])
    actions = _frame(conv, "actions", rows["actions"])
    if conv.scrubber.replacements:
        conv.finding("CV019", value=conv.scrubber.replacements)
        conv.value_fixes[("free text", "personal names", "person ref or [name]")] += conv.scrubber.replacements

    records = SiteRecords(site={"site_code": conv.site_code, "site_name": conv.site_name, "setting": setting},
                          incidents=incidents, actions=actions)
    rows_in = sum(r.rows_in for r in conv.reports)
    rows_out = sum(r.rows_out for r in conv.reports)
    skipped_counts: Counter = Counter()
    for r in conv.reports:
        skipped_counts.update(r.skipped)
    for r in conv.reports:
        if r.rows_in != r.rows_out + sum(r.skipped.values()):
            raise RuntimeError(f"conversion lost rows on sheet {r.name}")  # the invariant; never expected
    if rows_out != len(incidents) + len(actions):
        raise RuntimeError("conversion lost rows")

    findings = [_scrub_finding(conv.scrubber, f) for f in conv.findings]
    fixes = Counter({(k[0], conv.scrubber.scrub(k[1]), k[2]): n for k, n in conv.value_fixes.items()})
    result = ConversionResult(
        records=records, source=path.name, sheets=conv.reports,
        column_mapping={r.name: {p.column.key: p.target for p in r.columns} for r in conv.reports if r.columns},
        value_fixes=fixes, findings=findings, rows_in=rows_in, rows_out=rows_out,
        rows_skipped=dict(skipped_counts), skipped=conv.skipped,
    )
    if validate:
        result.validation = validate_converted(result, today=conv.today)
    return result


def _scrub_finding(scrubber: NameScrubber, f: Finding) -> Finding:
    message = scrubber.scrub(f.message)
    return f if message == f.message else dataclasses.replace(f, message=message)


def _emit(conv: _Converter, row: _Row, ref: str) -> None:
    for pending in row.pending:
        conv.finding(pending.pop("rule"), sheet=row.sheet.name, ref=ref, **pending)


def _norm_ref(value: object) -> str:
    return " ".join(value_text(value).upper().split())


def _finish_incidents(conv: _Converter, rows: list[_Row]) -> dict[str, str]:
    """Refs, site code and the derivable required fields; returns old ref -> new ref for the tracker."""
    site = conv.site_code
    prefix = f"{site}-"
    counts = Counter(_norm_ref(r.rec["incident_ref"]) for r in rows if r.rec["incident_ref"])
    keep: set[str] = set()
    for r in rows:
        old = _norm_ref(r.rec["incident_ref"]) if r.rec["incident_ref"] else ""
        r.original_ref = old or None
        if old and old.startswith(prefix) and old not in keep:
            keep.add(old)
    used = set(keep)
    next_number: dict[int, int] = defaultdict(int)
    for ref in keep:
        m = re.fullmatch(rf"{re.escape(site)}-(\d{{4}})-(\d+)", ref)
        if m:
            next_number[int(m.group(1))] = max(next_number[int(m.group(1))], int(m.group(2)))
    ref_map: dict[str, str] = {}
    ambiguous: set[str] = set()
    kept_once: set[str] = set()
    generated = 0
    blanks: Counter = Counter()
    derived: Counter = Counter()
    for r in rows:
        rec = r.rec
        old = r.original_ref
        if old in keep and old not in kept_once:
            kept_once.add(old)
            new = old
        else:
            when = rec["occurred_at"] if rec["occurred_at"] is not None else rec["reported_at"]
            year = when.year if when is not None else conv.today.year
            while True:
                next_number[year] += 1
                new = f"{site}-{year}-{next_number[year]:04d}"
                if new not in used:
                    break
            used.add(new)
            if old:
                r.notes.insert(0, f"Original ref: {value_text(rec['incident_ref'])}")
                if counts[old] > 1:
                    r.pending.append(dict(rule="CV008", cell=r.cells.get("incident_ref", ""),
                                          value=value_text(rec["incident_ref"])[:40]))
                else:
                    generated += 1
            else:
                generated += 1
        if old:
            if old in ref_map and ref_map[old] != new:
                ambiguous.add(old)
            ref_map.setdefault(old, new)
        rec["incident_ref"] = new

        legacy_site = rec.get("site_code")
        if legacy_site and normalise(legacy_site) not in (normalise(site), normalise(conv.site_name)):
            r.notes.append(f"Site in the old log: {legacy_site}")
        rec["site_code"] = site
        if rec["occurred_time"] is None and r.time_from_date:
            rec["occurred_time"] = r.time_from_date
        if rec["reported_at"] is None and rec["occurred_at"] is not None and "reported_at" not in r.unreadable:
            rec["reported_at"] = rec["occurred_at"]
            r.notes.append("Date reported was blank: set to the date it occurred")
            derived["CV004"] += 1
        if rec["event_type"] is None and rec["physical_harm"] not in (None, "none") and \
                "event_type" not in r.unreadable:
            rec["event_type"] = "incident"
            r.notes.append("Near miss or incident was blank: set to incident because harm is recorded")
            derived["CV007"] += 1
        if rec["status"] is None and "status" not in r.unreadable:
            rec["status"] = "open"
            r.notes.append("Status was blank: set to open")
            derived["CV006"] += 1
        if rec["occurred_at"] is None and not rec["description"]:
            r.pending.append(dict(rule="CV013", cell=f"A{r.source.row}"))
        _emit(conv, r, new)
    _suggest_tiers(conv, rows, derived)
    for rule, n in sorted(derived.items()):
        conv.finding(rule, sheet=INCIDENTS.sheet, value=count_rows(n))
    if generated:
        conv.finding("CV009", sheet=INCIDENTS.sheet, value=count_rows(generated))
    for f in ("occurred_at", "event_type", "category", "physical_harm", "description"):
        blanks[f] = sum(1 for r in rows if r.rec[f] is None)
        if blanks[f]:
            conv.finding("CV023", sheet=INCIDENTS.sheet, label=INCIDENTS.field(f).label, value=count_rows(blanks[f]))
    for old in ambiguous:
        ref_map[old] = ""  # several rows had this ref: actions naming it need a person
    return ref_map


def _suggest_tiers(conv: _Converter, rows: list[_Row], derived: Counter) -> None:
    todo = [r for r in rows if r.rec["response_tier"] is None and r.rec["physical_harm"] is not None
            and "response_tier" not in r.unreadable]
    if not todo:
        return
    frame = pd.DataFrame([r.rec for r in todo])
    for name in ("consequence", "likelihood"):
        frame[name] = pd.array(frame[name].tolist(), dtype="Int64")
    tiers = suggested_tier(frame).tolist()
    for r, tier in zip(todo, tiers):
        if tier in TIERS:
            r.rec["response_tier"] = tier
            r.notes.append(f"Response tier was blank: {tier} suggested")
            derived["CV005"] += 1


_SPLIT_REFS = re.compile(r"\s*(?:[,;/&\n]|\band\b)\s*", re.IGNORECASE)


def _finish_actions(conv: _Converter, rows: list[_Row], ref_map: dict[str, str]) -> None:
    site = conv.site_code
    prefix = f"{site}-A-"
    counts = Counter(_norm_ref(r.rec["action_ref"]) for r in rows if r.rec["action_ref"])
    used = {_norm_ref(r.rec["action_ref"]) for r in rows if r.rec["action_ref"] and
            _norm_ref(r.rec["action_ref"]).startswith(prefix) and counts[_norm_ref(r.rec["action_ref"])] == 1}
    numbers = [int(m.group(1)) for ref in used if (m := re.fullmatch(rf"{re.escape(prefix)}(\d+)", ref))]
    n = max(numbers, default=0)
    derived: Counter = Counter()
    replaced = 0
    for r in rows:
        rec = r.rec
        old = _norm_ref(rec["action_ref"]) if rec["action_ref"] else ""
        if old and old in used:
            new = old
        else:
            n += 1
            while f"{prefix}{n:04d}" in used:
                n += 1
            new = f"{prefix}{n:04d}"
            used.add(new)
            if old:
                replaced += 1
                r.notes.insert(0, f"Original action ref: {value_text(rec['action_ref'])}")
        rec["action_ref"] = new
        if rec["incident_refs"]:
            parts = [p for p in _SPLIT_REFS.split(str(rec["incident_refs"])) if p.strip()]
            mapped = []
            for part in parts:
                key = _norm_ref(part)
                target = ref_map.get(key)
                if target is None and key.isdigit():
                    target = ref_map.get(str(int(key)))
                if target:
                    mapped.append(target)
                else:
                    mapped.append(part.strip())
                    r.pending.append(dict(rule="CV018", cell=r.cells.get("incident_refs", ""),
                                          value=part.strip()[:40]))
            rec["incident_refs"] = ", ".join(dict.fromkeys(mapped))
        if rec["status"] is None and "status" not in r.unreadable:
            rec["status"] = "open"
            r.notes.append("Status was blank: set to open")
            derived["CV006"] += 1
        _emit(conv, r, new)
    for rule, count in sorted(derived.items()):
        conv.finding(rule, sheet=ACTIONS.sheet, value=count_rows(count))
    if replaced:
        conv.finding("CV009", sheet=ACTIONS.sheet, value=count_rows(replaced))


def _frame(conv: _Converter, kind: str, rows: list[_Row]) -> pd.DataFrame:
    table = TABLES[kind]
    notes_field = NOTES_FIELD[kind]
    records = []
    for r in rows:
        rec = dict(r.rec)
        if r.notes:
            existing = rec.get(notes_field)
            joined = "; ".join(r.notes)
            if kind == "actions":
                joined = f"Import notes: {joined}"
            rec[notes_field] = f"{existing}\n{joined}" if existing else joined
        for f in table.input_fields:
            if f.type in ("text", "longtext") and f.name != "person_ref" and isinstance(rec.get(f.name), str):
                rec[f.name] = conv.scrubber.scrub(rec[f.name])
        records.append(rec)
    names = field_names(kind)
    frame = pd.DataFrame(records, columns=names) if records else pd.DataFrame(columns=names)
    for f in table.input_fields:
        if f.type == "date":
            frame[f.name] = pd.to_datetime(pd.Series(frame[f.name].tolist(), index=frame.index, dtype=object),
                                           errors="coerce")
        elif f.type == "int":
            frame[f.name] = pd.array(frame[f.name].tolist(), dtype="Int64")
        else:
            frame[f.name] = frame[f.name].astype(object).where(frame[f.name].notna(), None)
    frame["_row"] = range(2, len(frame) + 2)  # the row each record has in the new workbook
    return frame


# --- validation and writing ---------------------------------------------------------------------------------

def validate_converted(result: ConversionResult, *, today: dt.date | None = None,
                       file: str = "") -> list[Finding]:
    """The validator's findings for the converted records, as they will sit in the new workbook."""
    return list(validate_records(result.records, today=today, file=file or result.source))


def write_conversion(result: ConversionResult, out_path: str | Path, *, overwrite: bool = False) -> Path:
    """Write the converted records as a new site workbook, atomically: a temporary file in the same folder,
    then a rename.  Never replaces an existing file unless ``overwrite``; never leaves half a file."""
    out = Path(out_path)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.stem}-", suffix=".xlsx.tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        build_workbook(tmp, result.records)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as any other file the user writes (mkstemp makes it owner-only)
        if overwrite:
            os.replace(tmp, out)
        else:
            try:
                os.link(tmp, out)  # fails if ``out`` appeared meanwhile: never clobbers
            except FileExistsError:
                raise
            except OSError:
                if out.exists():
                    raise FileExistsError(f"{out} already exists") from None
                os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out
