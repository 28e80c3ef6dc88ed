"""Server-side SVG of a key measure's XmR chart (Making Data Count style), for the summary pages.

:func:`xmr_svg` draws one measure of a summary (``MeasureResult.to_dict()`` of
:mod:`addin.trends`): the monthly values as a grey line with points, the mean as a solid
line, the process limits dashed, special-cause points coloured (improvement blue, concern
orange, no preferred direction purple: the Making Data Count colours, each with a dark ring so
they stand out on white), month labels along the bottom and value labels up the side.  The
chart carries an accessible ``<title>`` and ``<desc>`` (what is plotted, the average and limits,
the latest value and the signal) and each point a tooltip.  :func:`chart_figure` wraps it in a
``<figure>`` with the signal in plain words beneath.

Only numbers and our own labels are drawn; everything is escaped.  Nothing here computes SPC:
the limits and point types are the summary's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup, escape

WIDTH, HEIGHT = 560, 250
LEFT, RIGHT, TOP, BOTTOM = 50, 12, 12, 34
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

COLOURS = {  # fill, ring (Making Data Count fills; rings darker for contrast)
    "common_cause": ("#7B7D7D", "#7B7D7D"),
    "special_cause_improvement": ("#289DE0", "#0B5E8E"),
    "special_cause_concern": ("#FAB428", "#9A5B00"),
    "special_cause_neutral_high": ("#361475", "#361475"),
    "special_cause_neutral_low": ("#361475", "#361475"),
}
POINT_WORDS = {
    "common_cause": "common cause",
    "special_cause_improvement": "improvement",
    "special_cause_concern": "concern",
    "special_cause_neutral_high": "unusually high (no preferred direction)",
    "special_cause_neutral_low": "unusually low (no preferred direction)",
}
VERDICTS = {  # (badge text, css class) of the latest point
    "special_cause_improvement": ("Improvement", "improvement"),
    "special_cause_concern": ("Concern", "concern"),
    "special_cause_neutral_high": ("Unusually high", "neutral"),
    "special_cause_neutral_low": ("Unusually low", "neutral"),
    "common_cause": ("No signal", "common"),
    None: ("No data", "nodata"),
}
LINE_GREY, MEAN_COLOUR, LIMIT_COLOUR, GRID = "#7B7D7D", "#212B32", "#4C6272", "#E8EDEE"


def month_word(label: str | None) -> str:
    """ "2026-03" -> "Mar 2026"."""
    if not label:
        return ""
    year, month = label.split("-")
    return f"{MONTHS[int(month) - 1]} {year}"


def _short_month(label: str) -> str:
    year, month = label.split("-")
    return f"{MONTHS[int(month) - 1]} {year[2:]}"


def format_value(value: Any, kind: str, *, digits: int | None = None) -> str:
    """A measure's value as people read it: counts whole, shares and percentages with %, rates 1 d.p."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    v = float(value)
    if kind == "share":
        return f"{v * 100:.{0 if digits is None else digits}f}%"
    if kind == "percent":
        return f"{v:.{0 if digits is None else digits}f}%"
    if kind == "rate":
        return f"{v:.{1 if digits is None else digits}f}"
    if digits is not None:
        return f"{v:.{digits}f}"
    return f"{v:.0f}" if v.is_integer() else f"{v:.1f}"


def signal_text(measure: Mapping[str, Any]) -> str:
    """The summary's signal as a sentence: "Falls with harm: 7 months in a row above average (concern)."."""
    text = str(measure.get("signal") or "").strip()
    if not text:
        return ""
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def verdict(measure: Mapping[str, Any]) -> tuple[str, str]:
    """(badge words, css class) of the latest point."""
    return VERDICTS.get(measure.get("latest_point_type"), VERDICTS[None])


def _nice_step(span: float, target: int = 4) -> float:
    raw = span / target
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * power >= raw:
            return m * power
    return 10 * power


def _finite(values: Sequence[Any]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _axis(measure: Mapping[str, Any]) -> tuple[float, float, list[float]]:
    """y range (lo, hi) and tick values: starts at 0 for these non-negative measures, tops at 100%."""
    spc = measure["spc"]
    values = _finite(measure["values"])
    limits = _finite(spc["mean"]) + _finite(spc["upl"]) + [v for v in _finite(spc["lpl"]) if v > 0]
    ceiling = {"share": 1.0, "percent": 100.0}.get(measure["kind"])
    top = max(values + limits, default=1.0)
    if ceiling is not None:
        top = min(top, ceiling)
    lo = 0.0
    hi = top if top > lo else lo + 1.0
    step = _nice_step(hi - lo)
    hi = math.ceil(hi / step - 1e-9) * step
    if ceiling is not None:
        hi = min(hi, ceiling)
    ticks = [lo + i * step for i in range(int(round((hi - lo) / step)) + 1)]
    return lo, hi, ticks


def _runs(points: list[tuple[float, float] | None]) -> list[list[tuple[float, float]]]:
    """Consecutive non-missing points, as separate polylines."""
    runs: list[list[tuple[float, float]]] = [[]]
    for p in points:
        if p is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append(p)
    return [r for r in runs if r]


def _polyline(points: list[tuple[float, float]], **attrs: str) -> str:
    if len(points) == 1:  # one month alone: a short tick so it is still visible
        x, y = points[0]
        points = [(x - 6, y), (x + 6, y)]
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    extra = " ".join(f'{k.replace("_", "-")}="{escape(v)}"' for k, v in attrs.items())
    return f'<polyline points="{coords}" fill="none" {extra}/>'


def describe(measure: Mapping[str, Any]) -> str:
    """The chart's <desc>: what is plotted, average and limits, the latest value, the signal."""
    kind = measure["kind"]
    months = measure["months"]
    spc = measure["spc"]
    parts = []
    if months:
        parts.append(f"Monthly {measure['label']} from {month_word(months[0])} to {month_word(months[-1])}.")
    valid = [i for i, v in enumerate(measure["values"]) if v is not None]
    if valid:
        last = valid[-1]
        mean, lpl, upl = spc["mean"][last], spc["lpl"][last], spc["upl"][last]
        if mean is not None:
            parts.append(f"Average {format_value(mean, kind, digits=1)}.")
        if upl is not None and lpl is not None:
            low = format_value(lpl, kind, digits=1) if lpl > 0 else "below zero (not shown)"
            parts.append(f"Process limits {low} to {format_value(upl, kind, digits=1)}.")
        parts.append(f"Latest, {month_word(months[last])}: {format_value(measure['values'][last], kind)}.")
        flagged = [f"{month_word(months[i])} ({POINT_WORDS.get(spc['point_type'][i], spc['point_type'][i])})"
                   for i in valid if spc["point_type"][i] not in (None, "common_cause")]
        if flagged:
            parts.append("Special cause months: " + ", ".join(flagged) + ".")
    else:
        parts.append("No values yet.")
    parts.append(signal_text(measure))
    return " ".join(p for p in parts if p)


def xmr_svg(measure: Mapping[str, Any], *, chart_id: str | None = None) -> Markup:
    """The XmR chart of one key measure (a ``MeasureResult.to_dict()``) as inline SVG."""
    cid = escape(chart_id or f"chart-{measure['name']}")
    kind = measure["kind"]
    months: list[str] = list(measure["months"])
    values = list(measure["values"])
    spc = measure["spc"]
    n = len(months)
    lo, hi, ticks = _axis(measure)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (i + 0.5) * plot_w / max(n, 1)

    def y(v: float) -> float:
        return TOP + plot_h - (v - lo) / (hi - lo) * plot_h

    def inside(v: Any) -> bool:
        return v is not None and lo - 1e-9 <= float(v) <= hi + 1e-9

    title = str(measure["label"])
    title = title[:1].upper() + title[1:]
    out = [f'<svg class="xmr" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{cid}-t {cid}-d" '
           f'xmlns="http://www.w3.org/2000/svg" focusable="false">',
           f'<title id="{cid}-t">{escape(title)}: SPC chart</title>',
           f'<desc id="{cid}-d">{escape(describe(measure))}</desc>']
    # grid and y labels
    out.append('<g class="grid">')
    for t in ticks:
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="{GRID}"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y(t) + 4:.1f}" text-anchor="end" class="tick">'
                   f'{escape(format_value(t, kind, digits=_tick_digits(ticks, kind)))}</text>')
    out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" '
               f'stroke="{LIMIT_COLOUR}"/>')
    out.append("</g>")
    # month labels
    every = max(1, math.ceil(n / 9))
    out.append('<g class="months">')
    for i, label in enumerate(months):
        if (n - 1 - i) % every == 0:  # always label the latest month
            out.append(f'<text x="{x(i):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" class="tick">'
                       f"{escape(_short_month(label))}</text>")
    out.append("</g>")
    # limits (dashed) and mean (solid)
    for key, attrs in (("upl", {"stroke": LIMIT_COLOUR, "stroke_dasharray": "6 4", "class": "limit"}),
                       ("lpl", {"stroke": LIMIT_COLOUR, "stroke_dasharray": "6 4", "class": "limit"}),
                       ("mean", {"stroke": MEAN_COLOUR, "class": "mean"})):
        pts = [(x(i), y(float(v))) if inside(v) and values[i] is not None else None
               for i, v in enumerate(spc[key])]
        for run in _runs(pts):
            out.append(_polyline(run, stroke_width="1.5", **attrs))
    # values
    pts = [(x(i), y(min(max(float(v), lo), hi))) if v is not None else None for i, v in enumerate(values)]
    for run in _runs(pts):
        out.append(_polyline(run, stroke=LINE_GREY, stroke_width="2", **{"class": "value"}))
    out.append('<g class="points">')
    for i, v in enumerate(values):
        if v is None:
            continue
        point_type = spc["point_type"][i] or "common_cause"
        fill, ring = COLOURS.get(point_type, COLOURS["common_cause"])
        special = point_type != "common_cause"
        r = 5.5 if special else 3.5
        tip = f"{month_word(months[i])}: {format_value(v, kind)}"
        if special:
            tip += f" ({POINT_WORDS.get(point_type, point_type)})"
        cls = point_type.replace("_", "-")
        out.append(f'<circle cx="{pts[i][0]:.1f}" cy="{pts[i][1]:.1f}" r="{r}" fill="{fill}" stroke="{ring}" '
                   f'stroke-width="{1.5 if special else 0}" class="pt {cls}"><title>{escape(tip)}</title></circle>')
    out.append("</g>")
    if not values or all(v is None for v in values):
        out.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" class="empty">No values yet</text>')
    out.append("</svg>")
    return Markup("".join(out))


def _tick_digits(ticks: list[float], kind: str) -> int:
    if len(ticks) < 2:
        return 0
    step = ticks[1] - ticks[0]
    if kind == "share":
        step *= 100
    return 0 if float(step).is_integer() else (1 if (step * 10).is_integer() else 2)


def chart_figure(measure: Mapping[str, Any], *, chart_id: str | None = None, heading_level: int = 3) -> Markup:
    """A ``<figure>``: heading, the SVG chart, and the signal in plain words beneath (with a badge)."""
    words, css = verdict(measure)
    cid = chart_id or f"chart-{measure['name']}"
    label = str(measure["label"])
    label = label[:1].upper() + label[1:]
    latest = ""
    if measure.get("latest_month"):
        latest = (f'<span class="latest">Latest, {escape(month_word(measure["latest_month"]))}: '
                  f'<strong>{escape(format_value(measure.get("latest_value"), measure["kind"]))}</strong></span>')
    notes = [text for text in (_earlier_note(measure), _limits_note(measure)) if text]
    if measure.get("trial_limits") and measure.get("points") and "trial limits" not in str(measure.get("signal")):
        notes.append("Trial limits: fewer than 12 months of data, so the limits may move as months are added.")
    extra = "".join(f' <span class="note">{escape(text)}</span>' for text in notes)
    h = f"h{heading_level}"
    return Markup(
        f'<figure class="chart" id="{escape(cid)}-fig" aria-labelledby="{escape(cid)}-h">'
        f'<{h} class="chart-title" id="{escape(cid)}-h">{escape(label)} '
        f'<span class="badge badge-{css}">{escape(words)}</span></{h}>'
        f"{xmr_svg(measure, chart_id=cid)}"
        f'<figcaption class="signal signal-{css}"><span class="signal-words">{escape(signal_text(measure))}</span> '
        f"{latest}{extra}</figcaption>"
        "</figure>")


def _earlier_note(measure: Mapping[str, Any]) -> str:
    """Explain coloured points when the latest month itself is not a signal."""
    if measure.get("latest_point_type") not in ("common_cause", None):
        return ""
    types = [t for v, t in zip(measure["values"], measure["spc"]["point_type"]) if v is not None]
    if any(t not in (None, "common_cause") for t in types):
        return "Coloured points are earlier months that were unusual; the latest month is within the usual range."
    return ""


def _limits_note(measure: Mapping[str, Any]) -> str:
    """Say why no limit lines are drawn when both lie beyond what the measure can be (0 to 100%)."""
    if measure["kind"] not in ("share", "percent"):
        return ""
    spc = measure["spc"]
    valid = [i for i, v in enumerate(measure["values"]) if v is not None]
    if not valid:
        return ""
    i = valid[-1]
    lpl, upl = spc["lpl"][i], spc["upl"][i]
    top = 1.0 if measure["kind"] == "share" else 100.0
    if lpl is None or upl is None or not (lpl < 0 and upl > top):
        return ""
    return (f"The process limits ({format_value(lpl, measure['kind'])} to {format_value(upl, measure['kind'])}) "
            "lie beyond 0 to 100%, so they are not drawn: the monthly figure varies a lot, and any value "
            "is within the usual range.")


def chart_rows(measure: Mapping[str, Any]) -> list[dict[str, str]]:
    """The chart's numbers, month by month, for a table under it."""
    kind, spc = measure["kind"], measure["spc"]
    rows = []
    for i, month in enumerate(measure["months"]):
        v = measure["values"][i]
        rows.append({"month": month_word(month), "value": format_value(v, kind),
                     "mean": format_value(spc["mean"][i], kind, digits=1),
                     "lpl": format_value(spc["lpl"][i], kind, digits=1),
                     "upl": format_value(spc["upl"][i], kind, digits=1),
                     "point": "" if v is None else POINT_WORDS.get(spc["point_type"][i], "")})
    return rows
