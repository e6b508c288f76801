"""The projects graph as SVG: projects on a circle, dependencies as arrows, groups as
coloured rings around their members (a project in several groups gets several rings).

No layout library: a circle keeps every edge visible for the tens of projects a person has;
every node and edge carries ``data-*`` attributes and a ``<title>``, so the drawing can be
checked by reading it.
"""

from __future__ import annotations

import math
from typing import Any
from xml.sax.saxutils import escape, quoteattr

SIZE = 560
RADIUS = 200
NODE_R = 16
GROUP_COLOURS = ("#2563eb", "#16a34a", "#d97706", "#9333ea", "#db2777", "#0891b2")
EDGE_COLOURS = {"uses": "#374151", "extends": "#2563eb", "references": "#9ca3af"}


def _positions(names: list[str]) -> dict[str, tuple[float, float]]:
    centre = SIZE / 2
    if len(names) == 1:
        return {names[0]: (centre, centre)}
    return {
        name: (
            centre + RADIUS * math.cos(2 * math.pi * i / len(names) - math.pi / 2),
            centre + RADIUS * math.sin(2 * math.pi * i / len(names) - math.pi / 2),
        )
        for i, name in enumerate(names)
    }


def _edge(source: tuple[float, float], target: tuple[float, float], e: dict[str, Any]) -> str:
    (x1, y1), (x2, y2) = source, target
    length = math.hypot(x2 - x1, y2 - y1) or 1.0
    # stop at the target's ring so the arrowhead shows
    x2 -= (x2 - x1) * (NODE_R + 4) / length
    y2 -= (y2 - y1) * (NODE_R + 4) / length
    kind = str(e.get("dependency_type") or "uses")
    colour = EDGE_COLOURS.get(kind, "#374151")
    label = f"{e['source']} {kind} {e['target']}"
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{colour}" '
        f'stroke-width="2" marker-end="url(#arrow)" data-source={quoteattr(e["source"])} '
        f"data-target={quoteattr(e['target'])} data-type={quoteattr(kind)}>"
        f"<title>{escape(label)}</title></line>"
    )


def _node(name: str, at: tuple[float, float], rings: list[str]) -> list[str]:
    x, y = at
    parts = [
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{NODE_R + 4 + 4 * i}" fill="none" '
        f'stroke="{colour}" stroke-width="3"/>'
        for i, colour in enumerate(rings)
    ]
    parts.append(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{NODE_R}" fill="#f3f4f6" stroke="#111827" '
        f"data-project={quoteattr(name)}><title>{escape(name)}</title></circle>"
    )
    # the label sits outside the circle of projects, away from the edges that meet here
    dx, dy = x - SIZE / 2, y - SIZE / 2
    length = math.hypot(dx, dy)
    ux, uy = (dx / length, dy / length) if length else (0.0, 1.0)
    gap = NODE_R + 12 + 4 * len(rings)
    anchor = "middle" if abs(ux) < 0.3 else "start" if ux > 0 else "end"
    parts.append(
        f'<text x="{x + ux * gap:.1f}" y="{y + uy * gap + 4:.1f}" text-anchor="{anchor}" '
        f'font-size="12" font-family="sans-serif" fill="#111827">{escape(name)}</text>'
    )
    return parts


def project_graph_svg(graph: dict[str, Any]) -> str:
    """The SVG of :meth:`ProjectService.get_project_graph` (``project=None``)."""
    names = [str(p["name"]) for p in graph.get("projects", [])]
    title = f"{len(names)} project(s), {len(graph.get('dependencies', []))} dependencies"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {SIZE} {SIZE}" '
        f'width="100%" style="max-width:{SIZE}px" role="img" aria-label={quoteattr(title)}>',
        f"<title>{escape(title)}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#374151"/></marker></defs>',
    ]
    if not names:
        parts.append(
            f'<text x="{SIZE / 2}" y="{SIZE / 2}" text-anchor="middle" font-size="14" '
            'fill="#6b7280">no projects yet</text></svg>'
        )
        return "".join(parts)
    at = _positions(names)
    rings: dict[str, list[str]] = {n: [] for n in names}
    for number, group in enumerate(graph.get("groups", [])):
        for member in group.get("projects", []):
            if member in rings:
                rings[member].append(GROUP_COLOURS[number % len(GROUP_COLOURS)])
    for e in graph.get("dependencies", []):
        if e["source"] in at and e["target"] in at and e["source"] != e["target"]:
            parts.append(_edge(at[e["source"]], at[e["target"]], e))
    for name in names:
        parts += _node(name, at[name], rings[name])
    parts.append("</svg>")
    return "\n".join(parts)


def group_colours(graph: dict[str, Any]) -> list[tuple[str, str]]:
    """Each group's name and ring colour (the legend)."""
    return [
        (str(g["name"]), GROUP_COLOURS[i % len(GROUP_COLOURS)])
        for i, g in enumerate(graph.get("groups", []))
    ]
