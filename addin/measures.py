"""The key governance measures, declared once as data.

Each :class:`Measure` says what is counted (a filter over the incidents or the
actions, written as ``field -> allowed codes``), what kind of number it is, the
direction that counts as improvement (spc.md, "Which direction for which
measure") and whether it is also shown per 1,000 exposure units.
:mod:`addin.trends` reads these declarations; nothing else restates them.

Kinds:

- ``count``: rows of ``frame`` matching ``where``, per month;
- ``share``: rows matching ``where`` over rows matching ``of``, a fraction 0-1;
- ``percent``: as share, times 100 (used for the actions' on-time percentage);
- ``rate``: rows matching ``where`` per 1,000 exposure units of the month.

Incident measures are placed in the month of ``occurred_at``.  Action measures
name a ``statistic`` that :mod:`addin.trends` computes (they depend on dates
relative to each month's end, not on a filter alone):

- ``overdue_at_month_end``: actions open or in progress at the month's end
  (or today, for the current month) and past their due date then;
- ``done_by_due_date``: of the actions due in the month (not cancelled, and
  with a known outcome), the percentage done on or before the due date.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from workbook_templates.codelists import HARM_LEVELS
from workbook_templates.contract import TABLE_SHEETS

KINDS = ("count", "share", "percent", "rate")
IMPROVEMENTS = ("increase", "decrease", "neutral")
FRAMES = ("incidents", "actions")
ACTION_STATISTICS = ("overdue_at_month_end", "done_by_due_date")
REPORT_TYPES = ("near_miss", "incident")  # event types that make a report of known type
PER = 1000  # rates are per 1,000 exposure units


@dataclass(frozen=True)
class Measure:
    name: str  # stable identifier (JSON key, server column)
    label: str  # the words a manager reads, e.g. "falls with harm"
    frame: str  # "incidents" | "actions"
    kind: str  # "count" | "share" | "percent" | "rate"
    improvement: str  # "increase" | "decrease" | "neutral"
    where: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # rows counted
    of: Mapping[str, tuple[str, ...]] | None = None  # share/percent denominator rows (None: all rows)
    statistic: str = ""  # action measures: one of ACTION_STATISTICS
    exposure_rate: bool = False  # also shown per 1,000 exposure units
    description: str = ""

    def __post_init__(self) -> None:
        if self.frame not in FRAMES:
            raise ValueError(f"{self.name}: frame must be one of {FRAMES}")
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind must be one of {KINDS}")
        if self.improvement not in IMPROVEMENTS:
            raise ValueError(f"{self.name}: improvement must be one of {IMPROVEMENTS}")
        if self.frame == "actions" and self.statistic not in ACTION_STATISTICS:
            raise ValueError(f"{self.name}: action measures name a statistic from {ACTION_STATISTICS}")
        if self.frame == "incidents" and self.statistic:
            raise ValueError(f"{self.name}: incident measures are filters, not statistics")
        if self.exposure_rate and (self.frame != "incidents" or self.kind != "count"):
            raise ValueError(f"{self.name}: only incident counts have an exposure rate")
        sheet = TABLE_SHEETS[self.frame]
        for filt in (self.where, self.of or {}):
            for name, values in filt.items():
                f = sheet.field(name)  # KeyError for a field the contract does not have
                unknown = set(values) - set(f.allowed or values)
                if unknown:
                    raise ValueError(f"{self.name}: {sorted(unknown)} are not codes of {name}")

    def to_dict(self) -> dict:
        """The declaration in JSON form (what the server and workbooks show as 'how counted')."""
        return {
            "name": self.name, "label": self.label, "frame": self.frame, "kind": self.kind,
            "improvement": self.improvement,
            "where": {k: list(v) for k, v in self.where.items()},
            "of": None if self.of is None else {k: list(v) for k, v in self.of.items()},
            "statistic": self.statistic or None, "exposure_rate": self.exposure_rate,
            "description": self.description,
        }


INCIDENT = ("incident",)

MEASURES: tuple[Measure, ...] = (
    Measure("all_reports", "all reports", "incidents", "count", "neutral",
            exposure_rate=True, description="Every near miss and incident, by month it happened."),
    Measure("near_misses", "near-miss reports", "incidents", "count", "increase",
            where={"event_type": ("near_miss",)},
            description="Near misses reported: more is usually a healthier reporting culture."),
    Measure("near_miss_share", "near-miss share", "incidents", "share", "increase",
            where={"event_type": ("near_miss",)}, of={"event_type": REPORT_TYPES},
            description="Near misses as a share of all reports (near misses and incidents)."),
    Measure("incidents_with_harm", "incidents with harm", "incidents", "count", "decrease",
            where={"event_type": INCIDENT, "physical_harm": HARM_LEVELS}, exposure_rate=True,
            description="Incidents with physical harm graded low, moderate, severe or fatal."),
    Measure("falls_with_harm", "falls with harm", "incidents", "count", "decrease",
            where={"event_type": INCIDENT, "category": ("falls",), "physical_harm": HARM_LEVELS},
            exposure_rate=True, description="Falls incidents with physical harm graded low or worse."),
    Measure("medication_errors_reached", "medication errors that reached the person", "incidents", "count",
            "decrease", where={"event_type": INCIDENT, "category": ("medication",)}, exposure_rate=True,
            description="Medication incidents (not near misses): the error reached the person."),
    Measure("overdue_actions", "overdue actions", "actions", "count", "decrease",
            statistic="overdue_at_month_end",
            description="Actions open or in progress and past their due date at each month's end."),
    Measure("actions_on_time", "actions completed on time (%)", "actions", "percent", "increase",
            statistic="done_by_due_date",
            description="Of the actions due in the month, the percentage done by their due date "
                        "(cancelled actions, and open actions not yet due, are left out)."),
)

MEASURES_BY_NAME: dict[str, Measure] = {m.name: m for m in MEASURES}

# The measures shown with SPC in summaries, in display order.
KEY_MEASURES: tuple[str, ...] = tuple(m.name for m in MEASURES)

# Improvement direction per measure, from the declarations (spc.md).
DEFAULT_DIRECTIONS: dict[str, str] = {m.name: m.improvement for m in MEASURES}


def get(name_or_measure: str | Measure) -> Measure:
    if isinstance(name_or_measure, Measure):
        return name_or_measure
    try:
        return MEASURES_BY_NAME[name_or_measure]
    except KeyError:
        raise KeyError(f"unknown measure {name_or_measure!r}; known: {sorted(MEASURES_BY_NAME)}") from None


def with_directions(measures, directions: Mapping[str, str] | None = None) -> list[Measure]:
    """``measures`` (names or Measures) with improvement directions overridden by name.

    ``directions`` maps a measure name to "increase", "decrease" or "neutral";
    a name not among ``measures`` or an unknown direction is a ValueError, so a
    typo never silently keeps the default.
    """
    out = [get(m) for m in measures]
    directions = dict(directions or {})
    names = {m.name for m in out}
    unknown = set(directions) - names
    if unknown:
        raise ValueError(f"directions name unknown measures {sorted(unknown)}; known: {sorted(names)}")
    bad = {k: v for k, v in directions.items() if v not in IMPROVEMENTS}
    if bad:
        raise ValueError(f"directions must be one of {IMPROVEMENTS}, got {bad}")
    return [replace(m, improvement=directions.get(m.name, m.improvement)) for m in out]
