"""`{% cecilia_dashboard as dash %}`: the admin index's dashboard (conversations.dashboard) for the request's user.

The markup lives in templates/admin/index.html; this tag only reads the request (user, ?clinic=, ?days=) and shapes
the charts into columns the template draws as CSS bars. Bad query-string values fall back to defaults, never an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import template

from conversations.dashboard import Chart, Dashboard, dashboard_for_user

register = template.Library()


@register.simple_tag(takes_context=True)
def cecilia_dashboard(context: template.Context) -> Dashboard | None:
    """The dashboard of the clinic picked by ?clinic= (first of the user's otherwise), None without a request or
    when the user sees no clinic."""
    request = context.get("request")
    if request is None:
        return None
    return dashboard_for_user(user=request.user, clinic_id=request.GET.get("clinic"), days=request.GET.get("days"))


@dataclass(frozen=True)
class Segment:
    key: str
    label: str
    value: float
    height: float  # percent of the chart's height


@dataclass(frozen=True)
class Column:
    day: Any
    segments: tuple[Segment, ...]
    summary: str  # for the bar's tooltip: every series' value in words


@register.filter
def chart_columns(chart: Chart) -> list[Column]:
    """One column per day, its series stacked; heights relative to the chart's scale (0–100)."""
    columns = []
    for day_points in zip(*(series.points for series in chart.series), strict=True):
        segments = tuple(
            Segment(s.key, s.label, p.value, round(100 * p.value / chart.max_value, 2) if chart.max_value else 0)
            for s, p in zip(chart.series, day_points, strict=True)
        )
        summary = "; ".join(f"{s.label}: {p.label}" for s, p in zip(chart.series, day_points, strict=True))
        columns.append(Column(day_points[0].day, segments, summary))
    return columns


@register.filter
def chart_rows(chart: Chart) -> list[tuple[Any, list[str]]]:
    """The chart as table rows for screen readers: (day, [each series' value in words])."""
    return [
        (points[0].day, [p.label for p in points]) for points in zip(*(s.points for s in chart.series), strict=True)
    ]
