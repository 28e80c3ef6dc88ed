"""Synthetic site logs for tests, demos and benchmarks.

Incident data is health data about real people, so nothing in this project
ever uses a real log: every example is made here, from a seed.  The rows follow
the domain rules (a near miss has no harm, serious tiers have actions and
notifications, closed rows have learning) unless ``flaw_rate`` asks for
mistakes, which then show up as validation findings, as in real logs.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from .codelists import CODE_LISTS, EXPOSURE_UNIT_BY_SETTING, SUBCATEGORY_OF
from .records import SiteRecords, field_names

CATEGORY_WEIGHTS = {
    "falls": 30, "medication": 22, "behaviour": 9, "missed_or_late_visit": 6, "pressure_care": 6,
    "safeguarding": 5, "infection": 3, "equipment": 4, "environment": 3, "information_governance": 2,
    "deterioration_escalation": 3, "moving_and_handling": 3, "choking": 1, "self_harm": 1, "death": 1, "other": 1,
}
HARM_WEIGHTS = {"none": 45, "low": 35, "moderate": 15, "severe": 4, "fatal": 1}
THEMES = ["handover", "discharge_information", "escalation_thresholds", "boundaries", "scheduling_data",
          "medication_rounds", "falls_prevention", "staffing_levels", "equipment_checks", "communication"]
ROLES = ["care_assistant", "senior_carer", "nurse", "team_leader", "deputy_manager", "domiciliary_carer"]
OWNERS = ["registered_manager", "deputy_manager", "clinical_lead", "training_lead", "team_leader"]
ACTION_TEXT = {
    "care_plan": "Update the care plan and falls risk assessment; brief the team at handover",
    "training": "Refresher training for the team on the procedure involved",
    "supervision": "Reflective supervision with the staff involved",
    "process": "Add the step to the handover checklist and audit it weekly for a month",
    "equipment": "Replace and check the equipment; add it to the monthly equipment audit",
    "staffing": "Review the rota so the task has two trained staff at the busy time",
    "system_data": "Correct the scheduling data and add a check when visits are changed",
}
PHRASES = {
    "falls": "Person lost balance while walking to the bathroom",
    "medication": "Medication round: a discrepancy was found in the administration record",
    "behaviour": "Person became distressed during personal care",
    "missed_or_late_visit": "Scheduled visit was not delivered at the planned time",
    "pressure_care": "Skin check found reddened area on the heel",
    "safeguarding": "Concern raised about unexplained bruising",
    "infection": "Symptoms of a chest infection noticed on the morning shift",
    "equipment": "Hoist sling showed wear at the seams during the pre-use check",
    "environment": "Wet floor in the corridor after cleaning with no sign displayed",
    "information_governance": "Handover sheet left in a shared area",
    "deterioration_escalation": "Change in breathing not escalated until the next shift",
    "moving_and_handling": "Transfer attempted with one member of staff instead of two",
    "choking": "Person coughed while eating a meal of the wrong texture",
    "self_harm": "Person was found with a superficial scratch to the arm",
    "death": "Person died; the death was expected and the GP attended",
    "other": "Event outside the usual categories",
}
TIMES = ["morning", "lunchtime", "afternoon", "evening", "night"]
SUBCATS_BY_CATEGORY = {
    cat: [code for code, owner in SUBCATEGORY_OF.items() if owner == cat]
    for cat in CODE_LISTS["category"]
}


def _choice(rng: np.random.Generator, weights: dict[str, float], size: int) -> np.ndarray:
    keys = np.array(list(weights))
    p = np.array(list(weights.values()), dtype=float)
    return rng.choice(keys, size=size, p=p / p.sum())


def make_site(
    site_code: str = "OAK",
    site_name: str = "Oakview House",
    *,
    setting: str = "care_home",
    months: int = 24,
    reports_per_month: float = 12.0,
    end: dt.date | None = None,
    seed: int = 0,
    flaw_rate: float = 0.0,
    provider: str = "Synthetic Care Ltd",
    commissioners: str = "Northshire County Council",
    beds: int = 40,
) -> SiteRecords:
    """A site's log over ``months`` months ending with the month of ``end`` (default: today)."""
    rng = np.random.default_rng(seed)
    end = end or dt.date.today()
    last_month = pd.Timestamp(end.year, end.month, 1)
    first_month = last_month - pd.DateOffset(months=months - 1)
    end_ts = pd.Timestamp(end)

    n = int(rng.poisson(reports_per_month * months))
    span_days = max((end_ts - first_month).days, 1)
    occurred = (first_month + pd.to_timedelta(np.sort(rng.integers(0, span_days + 1, n)), unit="D"))
    reported = np.minimum(occurred + pd.to_timedelta(rng.integers(0, 3, n), unit="D"), end_ts)

    event = np.where(rng.random(n) < 0.4, "near_miss", "incident")
    category = _choice(rng, CATEGORY_WEIGHTS, n)
    harm = np.where(event == "near_miss", "none", _choice(rng, HARM_WEIGHTS, n))
    harm = np.where(category == "death", "none", harm)
    subcategory = np.array([rng.choice(SUBCATS_BY_CATEGORY[c]) if SUBCATS_BY_CATEGORY[c] else "" for c in category])
    harm_rank = pd.Series(harm).map({"none": 1, "low": 2, "moderate": 3, "severe": 4, "fatal": 5}).to_numpy()
    consequence = np.clip(harm_rank + rng.integers(0, 2, n), 1, 5)
    likelihood = rng.integers(1, 5, n)

    # Tiers as a careful manager sets them: in proportion to harm, risk band (NPSA high 8-12,
    # extreme 15-25) and notifications, so clean synthetic logs raise no tier warnings.
    risk = consequence * likelihood
    tier = np.select([np.isin(harm, ["severe", "fatal"]) | (risk >= 15),
                      (harm == "moderate") | (category == "safeguarding") | (risk >= 8)],
                     ["serious", "moderate"], "low")
    cqc = np.select(
        [category == "death", harm == "fatal", harm == "severe", (category == "safeguarding") & (event == "incident")],
        ["reg16_death", "reg16_death", "reg18_serious_injury", "reg18_abuse_allegation"], "none")
    tier = np.where((cqc != "none") & (tier == "low"), "moderate", tier)

    notified = np.minimum(reported + pd.to_timedelta(rng.integers(0, 2, n), unit="D"), end_ts)  # never after end
    age_days = (end_ts - reported).days.to_numpy()
    closed = (age_days > 60) & (rng.random(n) < 0.95) | (age_days > 20) & (rng.random(n) < 0.5)
    close_date = reported + pd.to_timedelta(rng.integers(3, 40, n), unit="D")
    closed &= close_date <= end_ts
    status = np.where(closed, "closed", np.where(rng.random(n) < 0.5, "open", "under_review"))

    years = occurred.year.to_numpy()
    seq = pd.Series(np.ones(n, dtype=int)).groupby(years).cumsum().to_numpy()
    refs = [f"{site_code}-{y}-{s:04d}" for y, s in zip(years, seq)]

    serious = tier == "serious"
    safeguarding_yes = serious | (category == "safeguarding")
    nat = pd.NaT
    inc = pd.DataFrame({
        "incident_ref": refs,
        "site_code": site_code,
        "occurred_at": occurred,
        "occurred_time": [f"{h:02d}:{m:02d}" for h, m in zip(rng.integers(0, 24, n), rng.integers(0, 60, n))],
        "reported_at": reported,
        "event_type": event,
        "category": category,
        "subcategory": subcategory,
        "location": EXPOSURE_UNIT_BY_SETTING[setting] == "occupied_bed_days" and "care_home" or "own_home",
        "physical_harm": harm,
        "psychological_harm": np.where(rng.random(n) < 0.8, "none", "low"),
        "consequence": consequence,
        "likelihood": likelihood,
        "response_tier": tier,
        "tier_override_reason": "",
        "learning_response": pd.Series(tier).map({"low": "reflective_supervision", "moderate": "structured_review",
                                                  "serious": "formal_investigation"}).to_numpy(),
        "description": [f"{PHRASES[c]} in the {rng.choice(TIMES)}." for c in category],
        "immediate_action": "Made the person safe, checked for injury and informed the senior on shift.",
        "person_ref": [f"{site_code}-P{i:03d}" for i in rng.integers(1, max(beds, 2) + 1, n)],
        "age_band": _choice(rng, {"46-65": 1, "66-85": 4, "85+": 5}, n),
        "gender": _choice(rng, {"female": 6, "male": 4}, n),
        "staff_role": rng.choice(ROLES, n),
        "safeguarding_considered": np.where(safeguarding_yes, "yes", "no"),
        "safeguarding_referral_date": np.where(category == "safeguarding", notified, nat),
        "police_involved": "no",
        "cqc_notification": cqc,
        "cqc_notified_date": np.where(cqc != "none", notified, nat),
        "commissioner_notified_date": np.where(serious, notified, nat),
        "riddor_reportable": np.where(harm == "severe", "yes", "no"),
        "riddor_ref": [f"RIDDOR-{seed:03d}{i:05d}" if h == "severe" else "" for i, h in enumerate(harm)],
        "duty_of_candour": np.where(np.isin(harm, ["moderate", "severe", "fatal"]), "yes", "no"),
        "candour_date": np.where(np.isin(harm, ["moderate", "severe", "fatal"]), notified, nat),
        "pressure_ulcer_grade": np.where(subcategory == "new_pressure_ulcer",
                                         rng.choice(["category_1", "category_2", "category_3"], n), ""),
        "status": status,
        "learning_theme": np.where(closed, rng.choice(THEMES, n), ""),
        "feedback_to_reporter_date": np.where(closed, close_date, nat),
        "closed_date": np.where(closed, close_date, nat),
        "notes": "",
    })
    for col in ("safeguarding_referral_date", "cqc_notified_date", "commissioner_notified_date", "candour_date",
                "feedback_to_reporter_date", "closed_date"):
        inc[col] = pd.to_datetime(inc[col])
    inc["consequence"] = inc["consequence"].astype("Int64")
    inc["likelihood"] = inc["likelihood"].astype("Int64")

    actions = _make_actions(rng, inc, site_code, end_ts)
    if flaw_rate > 0:
        _add_flaws(rng, inc, actions, flaw_rate)

    month_index = pd.date_range(first_month, last_month, freq="MS")
    occupancy = rng.uniform(0.85, 0.98, len(month_index))
    unit = EXPOSURE_UNIT_BY_SETTING[setting]
    exposure = pd.DataFrame({
        "month": month_index,
        "occupied_bed_days": np.round(beds * occupancy * month_index.days_in_month) if unit == "occupied_bed_days"
        else np.nan,
        "care_hours": np.round(beds * 55 * occupancy * 4.3) if unit == "care_hours" else np.nan,
        "visits": np.round(beds * 90 * occupancy) if unit == "care_hours" else np.nan,
        "people_supported": np.round(beds * occupancy),
    })
    site = {
        "site_code": site_code, "site_name": site_name, "provider": provider, "setting": setting,
        "cqc_location_id": f"1-{100000000 + seed * 7919 % 899999999}", "commissioners": commissioners,
        "people_supported": int(round(beds * 0.93)),
    }
    return SiteRecords(site=site, incidents=inc[field_names("incidents")],
                       actions=actions[field_names("actions")], exposure=exposure)


def _make_actions(rng: np.random.Generator, inc: pd.DataFrame, site_code: str, end: pd.Timestamp) -> pd.DataFrame:
    needs = inc[(inc["response_tier"] != "low") | (rng.random(len(inc)) < 0.1)]
    repeat = np.where(needs["response_tier"] == "serious", 2, 1)
    src = needs.loc[needs.index.repeat(repeat)].reset_index(drop=True)
    m = len(src)
    action_type = rng.choice(list(ACTION_TEXT), m)
    raised = np.minimum(src["reported_at"] + pd.to_timedelta(rng.integers(0, 5, m), unit="D"), end)
    due = raised + pd.to_timedelta(rng.integers(14, 60, m), unit="D")
    completed = raised + pd.to_timedelta(rng.integers(5, 70, m), unit="D")
    done = completed <= end
    status = np.where(done, "done", np.where(rng.random(m) < 0.6, "in_progress", "open"))
    checked = done & (completed + pd.Timedelta(days=30) <= end)
    check_date = completed + pd.Timedelta(days=30)
    return pd.DataFrame({
        "action_ref": [f"{site_code}-A-{i:04d}" for i in range(1, m + 1)],
        "incident_refs": src["incident_ref"].to_numpy(),
        "action": [ACTION_TEXT[t] for t in action_type],
        "action_type": action_type,
        "owner_role": rng.choice(OWNERS, m),
        "raised_date": raised,
        "due_date": due,
        "status": status,
        "completed_date": pd.to_datetime(np.where(done, completed, pd.NaT)),
        "evidence": np.where(done, "Audit and supervision notes on the shared drive", ""),
        "effectiveness_check_date": pd.to_datetime(np.where(checked, check_date, pd.NaT)),
        "effective": np.where(checked, rng.choice(["yes", "yes", "yes", "no"], m), np.where(done, "not_yet", "")),
    })


def _add_flaws(rng: np.random.Generator, inc: pd.DataFrame, actions: pd.DataFrame, rate: float) -> None:
    """Typical mistakes of real logs, each one a rule the validator must catch."""
    n = len(inc)
    pick = lambda: rng.random(n) < rate  # noqa: E731 - a fresh draw per flaw
    closed = inc["status"] == "closed"
    inc.loc[pick() & closed, "learning_theme"] = ""
    inc.loc[pick() & (inc["event_type"] == "near_miss"), "physical_harm"] = "low"
    mask = pick()
    inc.loc[mask, "reported_at"] = inc.loc[mask, "occurred_at"] - pd.Timedelta(days=2)
    mask = pick()
    # 9434765919 is a well-formed (check digit valid) but synthetic NHS number.
    inc.loc[mask, "description"] = inc.loc[mask, "description"] + " NHS no 943 476 5919 noted."
    mask = pick()
    inc.loc[mask, "description"] = inc.loc[mask, "description"] + " Mrs Jones was upset."
    if len(actions):
        am = rng.random(len(actions)) < rate
        actions.loc[am & (actions["status"] == "done"), "completed_date"] = pd.NaT
