"""A readable report of a violation: one HTML page with an SVG timeline of the failing key.

Each client is a lane; each operation a bar from its call to its return (an unknown outcome runs
dashed to the right edge). Operations of the shortest failing sub-history are drawn bold and
listed below; faults are shaded bands across all lanes. No JavaScript, no external files.
"""
from __future__ import annotations

import html

from fastkv.chaos.history import CAS, DELETE, GET, PUT, Op

COLORS = {GET: "#2b7bb9", PUT: "#2e9e44", DELETE: "#c0392b", CAS: "#8e44ad"}


def _label(op: Op) -> str:
    if op.kind == GET:
        return f"get→{op.out if not op.unknown else '?'}"
    if op.kind == PUT:
        return f"put {op.value}"
    if op.kind == DELETE:
        return "del" + ("" if op.unknown else f"→{op.out}")
    res = "?" if op.unknown else ("ok" if op.out else f"✗ read {op.read}")
    return f"cas {op.expected}→{op.value} {res}"


def write_timeline(path: str, key_result, key_ops: list[Op], faults, verdict) -> str:
    failing = key_result.failing or key_ops
    failing_ids = {id(o) for o in failing}
    lo = min(o.call for o in failing)
    hi = max((o.ret for o in failing if o.ret is not None), default=lo + 1)
    span = max(hi - lo, 1e-3)
    lo, hi = lo - span * 0.3, hi + span * 0.3
    shown = [o for o in key_ops if o.call <= hi and (o.ret is None or o.ret >= lo)]
    lanes = sorted({o.client for o in shown})
    lane_y = {c: 40 + i * 34 for i, c in enumerate(lanes)}
    width, left = 1100, 90
    height = 60 + 34 * len(lanes)

    def x(t):
        return left + (min(max(t, lo), hi) - lo) / (hi - lo) * (width - left - 10)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="monospace" font-size="11">']
    for f in faults:
        end = f.end or hi
        if end >= lo and f.start <= hi:
            parts.append(f'<rect x="{x(f.start):.1f}" y="20" width="{max(x(end) - x(f.start), 1):.1f}" '
                         f'height="{height - 30}" fill="#f5d76e" opacity="0.35"/>'
                         f'<text x="{x(f.start) + 2:.1f}" y="16">{html.escape(f.kind)} {html.escape(f.member)}</text>')
    for c, y in lane_y.items():
        parts.append(f'<text x="4" y="{y + 14}">client {c}</text>')
    for o in shown:
        y = lane_y[o.client]
        x0, x1 = x(o.call), x(o.ret if o.ret is not None else hi)
        bold = id(o) in failing_ids
        dash = ' stroke-dasharray="4,3"' if o.unknown else ""
        parts.append(f'<rect x="{x0:.1f}" y="{y}" width="{max(x1 - x0, 2):.1f}" height="20" '
                     f'fill="{COLORS[o.kind]}" fill-opacity="{0.85 if bold else 0.3}" '
                     f'stroke="#000" stroke-width="{2 if bold else 0.5}"{dash}>'
                     f'<title>{html.escape(o.describe())}</title></rect>'
                     f'<text x="{x0 + 2:.1f}" y="{y + 14}" fill="#fff">{html.escape(_label(o))}</text>')
    parts.append("</svg>")
    rows = "\n".join(f"<li><code>{html.escape(o.describe())}</code></li>" for o in failing)
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>fastkv chaos: violation on {html.escape(key_result.key)} (seed {verdict.seed})</title></head>
<body style="font-family:sans-serif">
<h1>Not linearizable: key <code>{html.escape(key_result.key)}</code></h1>
<p>target {html.escape(verdict.target)}, {verdict.members} member(s), seed {verdict.seed}, duration {verdict.duration}s.
Replay: <code>fastkv chaos --target {html.escape(verdict.target)} --members {verdict.members}
--duration {verdict.duration:g} --seed {verdict.seed}</code>. History: <code>{html.escape(verdict.history_path)}</code></p>
<p>{html.escape(key_result.failing_note)}. The search could not get past:
<code>{html.escape(key_result.stuck.describe() if key_result.stuck else "?")}</code></p>
{''.join(parts)}
<h2>Shortest failing sub-history ({len(failing)} ops)</h2><ol>{rows}</ol>
<p>Bars: call to return, per client; dashed = outcome unknown; bold = in the failing sub-history;
yellow bands = faults. Times are monotonic seconds.</p>
</body></html>"""
    with open(path, "w") as f:
        f.write(page)
    return path
