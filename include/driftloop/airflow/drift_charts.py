"""The drift page's charts: inline SVG line charts, standard library only (no CDN, no script).

* :func:`score_chart` — drift over time: per daily check, the drift **score** of the features
  that reached the highest scores in the shown period (:data:`TOP_SCORED` lines; a score is
  the feature's effect over its warn effect, :mod:`driftloop.drift.feature_scores`, so 1.0 is
  its warn threshold), the highest of the other features as one grey line (its tooltip lists
  them), dashed reference lines at 1 (warn) and at the critical/warn ratio when the features
  shown share one; checks recorded before scores were kept are "no scores recorded" markers.
  The axis is log(1 + score): a feature near its warn threshold stays visible next to one
  at twenty times it.
  Every tooltip carries the check's counts of features at warn and critical.
* :func:`performance_chart` — measured and estimated mAP@0.5:0.95 per day, with the champion's
  own evaluation as the baseline.

Pure functions of :mod:`driftloop.drift.history_views`' dicts; every value is HTML-escaped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date
from html import escape
from typing import Any

from driftloop.drift.feature_scores import critical_ratio

NO_LABELED_DAYS = "no labeled days yet"
NO_CHECKS = "no drift checks yet"
NO_SCORES = "no scores recorded"
OTHERS = "other features (highest)"
#: features with a line of their own: those with the highest scores in the shown period
TOP_SCORED = 5
#: other features named in a tooltip (the rest are counted)
TOOLTIP_OTHERS = 8
SCORE_TITLE = "Drift: feature scores per daily check (1 = warn threshold)"
PERFORMANCE_TITLE = "Performance: mAP@0.5:0.95 per day (all cameras)"
_W, _H, _PAD = 760, 220, 40
_COLORS = ("#c53030", "#2b6cb0", "#2f855a", "#d69e2e", "#805ad5")
_GREY = "#a0aec0"


def _x_positions(days: Sequence[str]) -> dict[str, float]:
    ordinals = sorted({date.fromisoformat(d).toordinal() for d in days})
    if not ordinals:
        return {}
    lo, hi = ordinals[0], ordinals[-1]
    span = max(hi - lo, 1)
    return {
        date.fromordinal(o).isoformat(): _PAD + (o - lo) / span * (_W - 2 * _PAD)
        if hi > lo
        else _W / 2
        for o in ordinals
    }


#: where the ticks of a log-scaled axis may fall (scores: 1 is warn)
_LOG_TICKS = (0, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def _y(value: float, top: float, log: bool = False) -> float:
    """The y of ``value`` on an axis from 0 to ``top``; ``log``: log(1 + value), so that
    scores near the warn threshold (1) stay readable next to large ones."""
    if log:
        value, top = math.log1p(max(value, 0.0)), math.log1p(top)
    return _H - _PAD - (value / top if top else 0) * (_H - 2 * _PAD)


def _ticks(top: float, log: bool) -> list[float]:
    if not log:
        return [top * frac for frac in (0.0, 0.5, 1.0)]
    return [t for t in _LOG_TICKS if t <= top]


def _legend(series: Sequence[Mapping[str, Any]]) -> tuple[list[str], int]:
    """Legend entries of the drawn series, wrapped into rows; (svg parts, number of rows)."""
    parts, x, row = [], _PAD + 10, 0
    for s in series:
        width = 24 + 6 * len(s["name"])
        if x + width > _W - 10 and x > _PAD + 10:
            x, row = _PAD + 10, row + 1
        y = _H - 9 + 13 * row
        parts.append(
            f'<rect x="{x}" y="{y - 5}" width="10" height="4" fill="{s["color"]}"/>'
            f'<text x="{x + 14}" y="{y}" font-size="10">{escape(s["name"])}</text>'
        )
        x += width
    return parts, row + 1


def line_chart(
    title: str,
    series: Sequence[Mapping[str, Any]],
    *,
    y_label: str,
    empty: str,
    references: Sequence[tuple[float, str]] = (),
    log: bool = False,
) -> str:
    """An inline SVG line chart. ``series``: ``{"name", "color", "dash", "line", "points":
    [(day, value, tooltip)]}``; days are ISO dates (x), values numbers (y from 0); ``dash``:
    ``True`` (dashed) or an SVG dasharray ("2,3": dotted); ``line: False`` draws markers only.
    ``references``: ``(value, label)`` dashed horizontal lines; ``log``: a log(1 + y) axis."""
    points = [p for s in series for p in s["points"] if p[1] is not None]

    def head(height: int) -> str:
        return (
            f'<svg role="img" aria-label="{escape(title)}" width="{_W}" height="{height}" '
            f'viewBox="0 0 {_W} {height}" xmlns="http://www.w3.org/2000/svg">'
            f'<text x="{_PAD}" y="16" font-size="13" font-weight="600">{escape(title)}</text>'
        )

    if not points:
        return (
            head(_H) + f'<text x="{_W / 2}" y="{_H / 2}" text-anchor="middle" fill="#718096" '
            f'class="empty">{escape(empty)}</text></svg>'
        )
    xs = _x_positions([p[0] for p in points])
    top = max([p[1] for p in points] + [value for value, _ in references]) or 1.0
    top = top * 1.1
    parts = []
    axis = 'stroke="#a0aec0" stroke-width="1"'
    parts.append(f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_H - _PAD}" {axis}/>')
    parts.append(f'<line x1="{_PAD}" y1="{_PAD}" x2="{_PAD}" y2="{_H - _PAD}" {axis}/>')
    for value in _ticks(top, log):
        parts.append(
            f'<text x="{_PAD - 4}" y="{_y(value, top, log) + 4:.1f}" font-size="10" '
            f'text-anchor="end">{f"{value:g}" if log else f"{value:.2f}"}</text>'
        )
    for value, label in references:
        y = _y(value, top, log)
        parts.append(
            f'<line class="reference" data-value="{value:g}" x1="{_PAD}" y1="{y:.1f}" '
            f'x2="{_W - _PAD}" y2="{y:.1f}" stroke="#718096" stroke-width="1" '
            f'stroke-dasharray="4,4"/><text x="{_W - _PAD - 2}" y="{y - 3:.1f}" '
            f'font-size="10" fill="#718096" text-anchor="end">{escape(label)}</text>'
        )
    days = sorted(xs)
    for day in {days[0], days[-1]}:
        parts.append(
            f'<text x="{xs[day]:.1f}" y="{_H - _PAD + 14}" font-size="10" '
            f'text-anchor="middle">{day}</text>'
        )
    parts.append(
        f'<text x="10" y="{_H / 2}" font-size="10" transform="rotate(-90 10 {_H / 2})" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    drawn = []
    for s in series:
        pts = [(xs[d], _y(v, top, log), tip) for d, v, tip in s["points"] if v is not None]
        if not pts:
            continue
        drawn.append(s)
        name = escape(s["name"])
        if s.get("line", True):
            pattern = "5,4" if s.get("dash") is True else s.get("dash")
            dash = f' stroke-dasharray="{pattern}"' if pattern else ""
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in pts)
            parts.append(
                f'<polyline class="series" data-series="{name}" points="{path}" '
                f'fill="none" stroke="{s["color"]}" stroke-width="2"{dash}/>'
            )
            marker = f'r="3" fill="{s["color"]}"'
        else:
            marker = f'r="4" fill="#fff" stroke="{s["color"]}" stroke-width="2"'
        for x, y, tip in pts:
            parts.append(
                f'<circle data-series="{name}" cx="{x:.1f}" cy="{y:.1f}" {marker}>'
                f"<title>{escape(tip)}</title></circle>"
            )
    legend, rows = _legend(drawn)
    return head(_H + 13 * (rows - 1)) + "".join(parts + legend) + "</svg>"


def chart_features(points: Sequence[Mapping[str, Any]], top: int = TOP_SCORED) -> list[str]:
    """The features with the highest scores in ``points`` (:func:`check_scores`' points),
    highest first (ties: by name), at most ``top``."""
    best: dict[str, float] = {}
    for point in points:
        for feature, entry in (point.get("scores") or {}).items():
            if entry.get("score") is not None:
                best[feature] = max(best.get(feature, float("-inf")), float(entry["score"]))
    return [f for f, _ in sorted(best.items(), key=lambda item: (-item[1], item[0]))[:top]]


def common_critical_ratio(
    points: Sequence[Mapping[str, Any]], features: Sequence[str]
) -> float | None:
    """The critical/warn ratio of ``features`` in ``points`` when they all share one."""
    ratios = [
        critical_ratio(entry)
        for point in points
        for feature, entry in (point.get("scores") or {}).items()
        if feature in features
    ]
    if not ratios or None in ratios:
        return None
    distinct = {round(r, 9) for r in ratios}
    return distinct.pop() if len(distinct) == 1 else None


def _check_text(point: Mapping[str, Any]) -> str:
    override = " [override]" if point.get("override") else ""
    return (
        f"check: {point['n_critical']} critical, {point['n_warn']} warn of "
        f"{point['n_features']} features ({point['severity']}){override}"
    )


def _score_tip(day: str, feature: str, entry: Mapping[str, Any], point) -> str:
    effect = entry.get("effect")
    measured = f"{entry.get('method')} {'—' if effect is None else f'{effect:.4g}'}"
    extra = "" if entry.get("alert", True) else ", charted only"
    return (
        f"{day} {feature}: score {entry['score']:.2f} ({measured} on {entry.get('window')}; "
        f"warn {entry.get('warn')}, critical {entry.get('critical')}{extra}) · "
        + _check_text(point)
    )


def _others_tip(day: str, others: list[tuple[float, str]], point) -> str:
    named = ", ".join(f"{name} {score:.2f}" for score, name in others[:TOOLTIP_OTHERS])
    more = len(others) - TOOLTIP_OTHERS
    return f"{day} other features: {named}{f' (+{more} more)' if more > 0 else ''} · " + (
        _check_text(point)
    )


def score_chart(points: Sequence[Mapping[str, Any]]) -> str:
    """The drift chart of :func:`check_scores`' ``points`` (see the module's docstring)."""
    shown = chart_features(points)
    lines: dict[str, list[tuple[str, float | None, str]]] = {f: [] for f in shown}
    others_line, unscored = [], []
    for point in points:
        day, scores = point["window"]["end"], point.get("scores")
        if scores is None:
            tip = f"{day}: {NO_SCORES} (checked before scores were kept) · {_check_text(point)}"
            unscored.append((day, 0.0, tip))
            continue
        for feature in shown:
            entry = scores.get(feature)
            if entry is not None and entry.get("score") is not None:
                lines[feature].append((day, entry["score"], _score_tip(day, feature, entry, point)))
        others = sorted(
            ((float(e["score"]), f) for f, e in scores.items()
             if f not in lines and e.get("score") is not None),
            key=lambda item: (-item[0], item[1]),
        )  # fmt: skip
        if others:
            others_line.append((day, others[0][0], _others_tip(day, others, point)))
    series: list[dict[str, Any]] = [
        {"name": f, "color": _COLORS[i % len(_COLORS)], "points": lines[f]}
        for i, f in enumerate(shown)
    ]
    series.append({"name": OTHERS, "color": _GREY, "dash": True, "points": others_line})
    series.append({"name": NO_SCORES, "color": _GREY, "line": False, "points": unscored})
    references = [(1.0, "warn")]
    ratio = common_critical_ratio(points, shown)
    if ratio is not None and ratio != 1.0:
        references.append((ratio, "critical"))
    return line_chart(
        SCORE_TITLE,
        series,
        y_label="score (effect / warn), log scale",
        empty=NO_CHECKS,
        references=references,
        log=True,
    )


def performance_chart(series: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    def points(source: str, key: str) -> list[tuple[str, float | None, str]]:
        out = []
        for row in series.get(source, ()):
            ci = ""
            if row.get("map50_95_low") is not None and row.get("map50_95_high") is not None:
                ci = f" [{row['map50_95_low']:.3f}, {row['map50_95_high']:.3f}]"
            value = row.get(key)
            out.append(
                (
                    row["day"],
                    value,
                    f"{row['day']} v{row['model_version']} {source} {key}="
                    f"{'—' if value is None else f'{value:.3f}'}{ci if key == 'map50_95' else ''}"
                    f" (n={row['n_frames']})",
                )
            )
        return out

    return line_chart(
        PERFORMANCE_TITLE,
        [
            {"name": "measured", "color": "#2b6cb0", "points": points("measured", "map50_95")},
            {
                "name": "estimated",
                "color": "#805ad5",
                "dash": True,
                "points": points("estimated", "map50_95"),
            },
            {
                "name": "champion baseline",
                "color": "#718096",
                "dash": "2,3",
                "points": _baseline_points(series),
            },
        ],
        y_label="mAP@0.5:0.95",
        empty=NO_LABELED_DAYS,
    )


def _baseline_points(
    series: Mapping[str, Sequence[Mapping[str, Any]]],
) -> list[tuple[str, float | None, str]]:
    """The champion's baseline on every charted day, measured or only estimated (a day with
    both: the measured row's, the baseline the verdict compared against)."""
    by_day = {row["day"]: row for name in ("estimated", "measured") for row in series.get(name, ())}
    out = []
    for day in sorted(by_day):
        row = by_day[day]
        value = row.get("baseline_map50_95")
        shown = "—" if value is None else f"{value:.3f}"
        out.append((day, value, f"{day} v{row['model_version']} champion baseline={shown}"))
    return out
