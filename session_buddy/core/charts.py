"""Small charts as text: an SVG line chart and a one-line unicode sparkline.

No plotting library: SVG is text. The chart draws series of values between 0 and 100 (the
quality score and the test pass rate, one point per session) on a shared axis; every point is
a ``<circle>`` carrying its value (``data-value``), its label (``data-label``) and a
``<title>`` tooltip, so the chart can be checked by reading it. Values may be missing
(``None``): the line breaks there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

SPARKS = "▁▂▃▄▅▆▇█"
WIDTH, HEIGHT = 640, 240
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 40, 16, 28, 40
COLOURS = ("#2563eb", "#16a34a", "#d97706", "#9333ea")


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]


def span(values: Sequence[float | None], minimum: float = 20.0) -> tuple[float, float]:
    """The range a sparkline of ``values`` is drawn on: the values' own, widened to at least
    ``minimum`` points (so noise does not look like a trend), within 0-100."""
    known = [v for v in values if v is not None]
    if not known:
        return 0.0, 100.0
    low, high = min(known), max(known)
    pad = max(0.0, minimum - (high - low)) / 2
    low, high = max(0.0, low - pad), min(100.0, high + pad)
    if high - low < minimum:
        low, high = (0.0, minimum) if low == 0.0 else (100.0 - minimum, 100.0)
    return low, high


def sparkline(
    values: Sequence[float | None], low: float | None = None, high: float | None = None
) -> str:
    """One character per value (``·`` where a value is missing), on ``low``-``high``
    (default: :func:`span` of the values)."""
    if low is None or high is None:
        low, high = span(values)
    width = (high - low) or 1.0
    out = []
    for value in values:
        if value is None:
            out.append("·")
            continue
        level = (min(max(value, low), high) - low) / width
        out.append(SPARKS[min(len(SPARKS) - 1, int(level * len(SPARKS)))])
    return "".join(out)


def _x(index: int, count: int) -> float:
    inner = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    if count <= 1:
        return MARGIN_LEFT + inner / 2
    return MARGIN_LEFT + inner * index / (count - 1)


def _y(value: float) -> float:
    inner = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    return MARGIN_TOP + inner * (1 - min(max(value, 0.0), 100.0) / 100.0)


def _axes(labels: Sequence[str]) -> list[str]:
    parts = []
    for tick in (0, 25, 50, 75, 100):
        y = _y(tick)
        parts.append(
            f'<line x1="{MARGIN_LEFT}" y1="{y:.1f}" x2="{WIDTH - MARGIN_RIGHT}" y2="{y:.1f}" '
            'stroke="#e5e7eb" stroke-width="1"/>'
        )
        parts.append(
            f'<text x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#6b7280">{tick}</text>'
        )
    count = len(labels)
    step = max(1, count // 8)
    for index in range(0, count, step):
        parts.append(
            f'<text x="{_x(index, count):.1f}" y="{HEIGHT - MARGIN_BOTTOM + 16}" '
            f'text-anchor="middle" font-size="10" fill="#6b7280">{escape(labels[index])}</text>'
        )
    return parts


def _series(series: Series, colour: str, labels: Sequence[str]) -> list[str]:
    count = len(series.values)
    parts: list[str] = []
    run: list[str] = []
    for index, value in enumerate([*series.values, None]):
        if value is None:
            if len(run) > 1:
                parts.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                    f'points="{" ".join(run)}"/>'
                )
            run = []
            continue
        run.append(f"{_x(index, count):.1f},{_y(value):.1f}")
    for index, value in enumerate(series.values):
        if value is None:
            continue
        label = labels[index] if index < len(labels) else str(index)
        parts.append(
            f'<circle cx="{_x(index, count):.1f}" cy="{_y(value):.1f}" r="3" fill="{colour}" '
            f"data-series={quoteattr(series.name)} data-label={quoteattr(label)} "
            f'data-value="{value:g}"><title>{escape(f"{series.name} {label}: {value:g}")}'
            "</title></circle>"
        )
    return parts


def line_chart(title: str, labels: Sequence[str], series: Sequence[Series]) -> str:
    """An SVG document: the series over the labels, on a 0-100 axis, with a legend."""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label={quoteattr(title)}>',
        f"<title>{escape(title)}</title>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        f'<text x="{MARGIN_LEFT}" y="18" font-size="13" font-family="sans-serif" '
        f'fill="#111827">{escape(title)}</text>',
        *_axes(labels),
    ]
    legend_x = WIDTH - MARGIN_RIGHT
    for number, s in reversed(list(enumerate(series))):
        colour = COLOURS[number % len(COLOURS)]
        parts += _series(s, colour, labels)
        legend_x -= 8 + 7 * len(s.name) + 14
        parts.append(
            f'<rect x="{legend_x}" y="9" width="10" height="10" fill="{colour}"/>'
            f'<text x="{legend_x + 14}" y="18" font-size="11" font-family="sans-serif" '
            f'fill="#374151">{escape(s.name)}</text>'
        )
    if not any(v is not None for s in series for v in s.values):
        parts.append(
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" font-size="13" '
            'fill="#6b7280">no data yet</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
