"""A finding: one thing in a workbook that a person should look at."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from workbook_templates.rules import RULES_BY_ID


@dataclass(frozen=True)
class Finding:
    file: str  # the workbook's file name as the user knows it
    sheet: str  # "Log", "Actions", "Site" or "" for the workbook as a whole
    cell: str  # e.g. "F14"; "" when it is about a whole sheet or workbook
    ref: str  # incident_ref or action_ref of the row, "" when none
    rule: str  # stable rule id from workbook_templates.rules, e.g. "NM022"
    severity: str  # "error" | "warning"
    message: str  # what to do, in a care manager's words

    def to_dict(self) -> dict:
        """JSON form: the ref is named incident_ref or action_ref by the sheet it is on."""
        key = "action_ref" if self.sheet == "Actions" else "incident_ref"
        # Spelled out, not dataclasses.asdict (which deep-copies every field): an upload answers with hundreds.
        return {"file": self.file, "sheet": self.sheet, "cell": self.cell, "rule": self.rule,
                "severity": self.severity, "message": self.message, key: self.ref}


def make_finding(rule_id: str, *, file: str = "", sheet: str = "", cell: str = "", ref: str = "",
                 label: str = "", value: object = "") -> Finding:
    """A finding for a declared rule, its message filled in from the rule's template."""
    rule = RULES_BY_ID[rule_id]
    message = rule.message.format(label=label or rule.field, value=value)
    return Finding(file=file, sheet=sheet, cell=cell, ref=ref, rule=rule_id, severity=rule.severity,
                   message=message)


def findings_of(rule_id: str, label: str, file: str, sheet: str, cells: Iterable[str], refs: Iterable[str],
                values: Iterable[str]) -> list[Finding]:
    """``make_finding`` of one rule and label on one sheet of one file, one finding per (cell, ref, value).

    The rule is looked up once and each distinct value's message formatted once.
    """
    rule = RULES_BY_ID[rule_id]
    template, severity, label = rule.message, rule.severity, label or rule.field
    messages: dict[str, str] = {}
    out = []
    for cell, ref, value in zip(cells, refs, values):
        message = messages.get(value)
        if message is None:
            message = messages[value] = template.format(label=label, value=value)
        out.append(Finding(file, sheet, cell, ref, rule_id, severity, message))
    return out
