"""Pictures of a sweep: the Pareto plot (a PNG, and a self-contained interactive HTML page) and a
trial's per-round curves.

The y axis is TEST accuracy: the papers publish test error, and their points are drawn on the same
axes. The front itself is the one the sweep chose on its objective (validation accuracy), so a
front point may sit below a dominated one here; the hover text gives both accuracies.

matplotlib is used through `Figure` alone, never `pyplot`: no global state, no GUI backend, safe in
Ray workers and threads (a Figure's canvas is Agg). The HTML page draws inline SVG with a few lines
of script: no CDN, no network, so it works inside the MLflow UI's sandboxed artifact frame.
"""

from __future__ import annotations

import html
import json
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from sparsetune.atomic import atomic_file, atomic_write_text
from sparsetune.pruning import METHODS
from sparsetune.report.published import PublishedPoint

# One colour per method, by its place in the method registry's (sorted) names: stable across
# sweeps, whatever subset of methods a sweep searched. Okabe-Ito's colour-blind-safe colours first.
PALETTE = (
    "#555555",  # dense: the grey reference
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#8C564B",
    "#F0E442",
    "#17BECF",
)
FRONT_LINE = "#222222"


def method_colour(method: str) -> str:
    order = METHODS.names()
    if method in order:
        return PALETTE[order.index(method) % len(PALETTE)]
    return PALETTE[zlib.crc32(method.encode()) % len(PALETTE)]


def _method_order(methods: Iterable[str]) -> list[str]:
    order = METHODS.names()
    present = set(methods)
    return [m for m in order if m in present] + sorted(present - set(order))


def _short_source(source: str) -> str:
    """'Tartaglione et al. 2018 (unspecific)' -> 'Tartaglione 2018': a label that fits beside a
    point (the hover text and the legend give the rest)."""
    words = source.split(" (")[0].split(",")[0].split()
    year = next((w for w in reversed(words) if w.isdigit()), "")
    return f"{words[0]} {year}".strip() if words else source


def _label_below(published: Sequence[PublishedPoint]) -> list[bool]:
    """Alternate labels above and below in compression order, so neighbours do not overprint."""
    order = sorted(range(len(published)), key=lambda i: published[i].compression)
    below = [False] * len(published)
    for rank, index in enumerate(order):
        below[index] = rank % 2 == 1
    return below


def _point(row: Mapping[str, Any]) -> tuple[float, float] | None:
    """(compression, test accuracy %) of a row, or None when it has no numbers."""
    try:
        compression, test_acc = float(row["compression"]), float(row["test_acc"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (math.isfinite(compression) and math.isfinite(test_acc)) or compression <= 0:
        return None
    return compression, 100.0 * test_acc


def _front_line(front: Sequence[Mapping[str, Any]]) -> list[tuple[float, float]]:
    """The front as a staircase in compression order: between two front points the best
    accuracy reachable at that compression or more is the next point's."""
    points = sorted(p for p in (_point(row) for row in front) if p is not None)
    line: list[tuple[float, float]] = []
    for index, (x, y) in enumerate(points):
        if index:
            line.append((points[index - 1][0], y))
        line.append((x, y))
    return line


# -- PNG -------------------------------------------------------------------------------------


def pareto_figure(
    rows: Sequence[Mapping[str, Any]],
    front: Sequence[Mapping[str, Any]],
    published: Sequence[PublishedPoint],
    *,
    title: str = "Pareto front",
    staircase: bool = True,
) -> Figure:
    """Every (trial, round) a small dot, the front large with a black edge (and a staircase when
    compression is an objective), the papers' points as labelled stars; x on a log scale."""
    figure = Figure(figsize=(9.0, 5.6), dpi=110, layout="constrained")
    axes = figure.add_subplot()
    methods = _method_order(
        [str(r.get("method")) for r in rows] + [str(r.get("method")) for r in front]
    )
    for method in methods:
        points = [p for r in rows if r.get("method") == method and (p := _point(r))]
        if points:
            axes.scatter(
                *zip(*points, strict=True),
                s=18,
                color=method_colour(method),
                alpha=0.45,
                edgecolors="none",
                label=method,
                gid=f"rows:{method}",
            )
    front_points = [(p, str(r.get("method"))) for r in front if (p := _point(r))]
    if front_points and staircase:
        axes.plot(
            *zip(*_front_line(front), strict=True),
            color=FRONT_LINE,
            linewidth=1.2,
            alpha=0.7,
            label="Pareto front (chosen on val acc)",
            gid="front-line",
        )
    if front_points:
        axes.scatter(
            [p[0] for p, _ in front_points],
            [p[1] for p, _ in front_points],
            s=70,
            color=[method_colour(m) for _, m in front_points],
            edgecolors="black",
            linewidths=1.2,
            zorder=3,
            label=None if staircase else "Pareto front (chosen on val acc)",
            gid="front",
        )
    if published:
        axes.scatter(
            [p.compression for p in published],
            [100.0 - p.test_error for p in published],
            marker="*",
            s=190,
            color=[method_colour(p.method) for p in published],
            edgecolors="black",
            linewidths=0.8,
            zorder=4,
            label="published (test)",
            gid="published",
        )
        for point, below in zip(published, _label_below(published), strict=True):
            axes.annotate(
                _short_source(point.source),
                (point.compression, 100.0 - point.test_error),
                xytext=(6, -11 if below else 5),
                textcoords="offset points",
                fontsize=7,
                color="#333333",
            )
    axes.set_xscale("log")
    axes.margins(x=0.08, y=0.08)
    axes.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.yaxis.set_major_locator(MaxNLocator(nbins=8))
    axes.set_xlabel("compression (prunable weights / nonzero weights, log scale)")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(title, loc="left", fontsize=11)
    axes.grid(True, which="major", alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8, loc="best", framealpha=0.85)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    path = Path(path)
    with atomic_file(path) as staging:
        figure.savefig(staging, format=path.suffix.lstrip(".") or "png")
    return path


@dataclass(frozen=True)
class ParetoPlot:
    """What a Pareto plot shows, as a PNG or as HTML: every (trial, round), the front, the
    papers' points; a staircase along the front when it is 2-D over compression and accuracy."""

    rows: Sequence[Mapping[str, Any]]
    front: Sequence[Mapping[str, Any]]
    published: Sequence[PublishedPoint]
    title: str = "Pareto front"
    staircase: bool = True


def pareto_png(plot: ParetoPlot, path: Path) -> Path:
    figure = pareto_figure(
        plot.rows, plot.front, plot.published, title=plot.title, staircase=plot.staircase
    )
    return _save(figure, path)


def round_curves_png(rounds: Sequence[Mapping[str, Any]], path: Path, *, title: str = "") -> Path:
    """A trial's rounds: accuracy (val and test) above, compression (log) below, against round."""
    ordered = sorted(rounds, key=lambda r: int(r["round"]))
    steps = [int(r["round"]) for r in ordered]
    figure = Figure(figsize=(6.4, 5.0), dpi=100, layout="constrained")
    accuracy, compression = figure.subplots(2, 1, sharex=True)
    for key, label in (("val_acc", "val accuracy"), ("test_acc", "test accuracy")):
        accuracy.plot(
            steps, [100.0 * float(r[key]) for r in ordered], marker="o", label=label, gid=key
        )
    accuracy.set_ylabel("accuracy (%)")
    accuracy.legend(fontsize=8)
    accuracy.grid(True, alpha=0.3)
    compression.plot(steps, [float(r["compression"]) for r in ordered], marker="o", color="#D55E00")
    compression.set_yscale("log")
    compression.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    compression.set_ylabel("compression (log)")
    compression.set_xlabel("pruning round")
    compression.xaxis.set_major_locator(MaxNLocator(integer=True))
    compression.grid(True, alpha=0.3)
    if title:
        accuracy.set_title(title, loc="left", fontsize=10)
    return _save(figure, path)


# -- HTML ------------------------------------------------------------------------------------

_WIDTH, _HEIGHT = 920, 540
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 230, 50, 60

_SCRIPT = """
(function () {
  var off = {};
  var tip = document.getElementById('tip');
  function refresh() {
    document.querySelectorAll('[data-groups]').forEach(function (el) {
      var hide = el.getAttribute('data-groups').split(' ').some(function (g) { return off[g]; });
      el.style.display = hide ? 'none' : '';
    });
    document.querySelectorAll('.legend').forEach(function (el) {
      el.style.opacity = off[el.getAttribute('data-toggle')] ? 0.35 : 1;
    });
  }
  document.querySelectorAll('.legend').forEach(function (el) {
    el.addEventListener('click', function () {
      var g = el.getAttribute('data-toggle');
      off[g] = !off[g];
      refresh();
    });
  });
  document.querySelectorAll('.pt').forEach(function (el) {
    el.addEventListener('mousemove', function (ev) {
      var info = JSON.parse(el.getAttribute('data-info'));
      tip.innerHTML = '';
      Object.keys(info).forEach(function (k) {
        var line = document.createElement('div');
        var key = document.createElement('b');
        key.textContent = k + ': ';
        line.appendChild(key);
        line.appendChild(document.createTextNode(info[k]));
        tip.appendChild(line);
      });
      tip.style.display = 'block';
      tip.style.left = (ev.pageX + 14) + 'px';
      tip.style.top = (ev.pageY + 10) + 'px';
    });
    el.addEventListener('mouseleave', function () { tip.style.display = 'none'; });
  });
})();
"""

_STYLE = """
body { font: 13px system-ui, sans-serif; margin: 16px; color: #222; }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
.legend { cursor: pointer; }
.pt { cursor: crosshair; }
#tip { position: absolute; display: none; background: #fff; border: 1px solid #999;
       padding: 6px 8px; box-shadow: 0 2px 6px rgba(0,0,0,.2); max-width: 420px;
       pointer-events: none; font-size: 12px; }
table { border-collapse: collapse; margin-top: 12px; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th.l, td.l { text-align: left; }
.note { color: #555; }
"""


class _Scale:
    """Data to SVG pixels: log10 on x, linear on y."""

    def __init__(self, xs: Sequence[float], ys: Sequence[float]):
        lo, hi = min(xs, default=1.0), max(xs, default=10.0)
        lo, hi = lo / 1.3, hi * 1.3
        if hi / lo < 3:
            middle = math.sqrt(lo * hi)
            lo, hi = middle / math.sqrt(3), middle * math.sqrt(3)
        self.x_lo, self.x_hi = math.log10(lo), math.log10(hi)
        y_lo, y_hi = min(ys, default=0.0), max(ys, default=100.0)
        pad = max(0.5, 0.06 * (y_hi - y_lo))
        self.y_lo, self.y_hi = max(0.0, y_lo - pad), min(100.0, y_hi + pad)
        if self.y_hi - self.y_lo < 1.0:
            self.y_lo, self.y_hi = self.y_lo - 0.5, self.y_hi + 0.5

    def x(self, value: float) -> float:
        span = _WIDTH - _LEFT - _RIGHT
        return _LEFT + span * (math.log10(value) - self.x_lo) / (self.x_hi - self.x_lo)

    def y(self, value: float) -> float:
        span = _HEIGHT - _TOP - _BOTTOM
        return _TOP + span * (1 - (value - self.y_lo) / (self.y_hi - self.y_lo))

    def x_ticks(self) -> list[float]:
        ticks = []
        for exponent in range(math.floor(self.x_lo), math.ceil(self.x_hi) + 1):
            for mantissa in (1, 2, 5):
                value = mantissa * 10.0**exponent
                if self.x_lo <= math.log10(value) <= self.x_hi:
                    ticks.append(value)
        return ticks

    def y_ticks(self) -> list[float]:
        span = self.y_hi - self.y_lo
        step = next(s for s in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50) if span / s <= 8)
        first = math.ceil(self.y_lo / step) * step
        return [first + i * step for i in range(int((self.y_hi - first) / step + 1e-9) + 1)]


def _attr(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any, digits: int = 4) -> str:
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return "" if value is None else str(value)


def _params_text(params: Any) -> str:
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except ValueError:
            return params
    if not isinstance(params, Mapping):
        return ""
    return " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


def _row_info(row: Mapping[str, Any], on_front: bool) -> dict[str, str]:
    info = {
        "method": str(row.get("method")),
        "test acc": _fmt(row.get("test_acc")),
        "val acc": _fmt(row.get("val_acc")),
        "compression": f"{float(row['compression']):.2f}x",
        "round": str(row.get("round")),
        "run id": str(row.get("run_id") or ""),
        "trial": str(row.get("trial_id") or ""),
        "hyperparameters": _params_text(row.get("key_params") or row.get("params")),
    }
    if on_front:
        info["on the front"] = "yes"
    return info


def _star(cx: float, cy: float, outer: float = 9.0, inner: float = 4.0) -> str:
    points = []
    for i in range(10):
        radius = outer if i % 2 == 0 else inner
        angle = math.pi / 2 + i * math.pi / 5
        points.append(f"{cx + radius * math.cos(angle):.1f},{cy - radius * math.sin(angle):.1f}")
    return " ".join(points)


def pareto_html(plot: ParetoPlot, path: Path, *, notes: Sequence[str] = ()) -> Path:
    """The same plot as `pareto_png`, as one HTML file: hover a point for its method, accuracies,
    compression, round, run id and hyperparameters; click a legend entry to hide or show it.
    The front follows as a table."""
    rows, front, published = plot.rows, plot.front, plot.published
    title, staircase = plot.title, plot.staircase
    front_keys = {(str(r.get("trial_id")), str(r.get("round"))) for r in front}
    plotted = [(r, p) for r in rows if (p := _point(r))]
    front_plotted = [(r, p) for r in front if (p := _point(r))]
    xs = [p[0] for _, p in plotted + front_plotted] + [p.compression for p in published]
    ys = [p[1] for _, p in plotted + front_plotted] + [100 - p.test_error for p in published]
    scale = _Scale(xs, ys)
    methods = _method_order([str(r.get("method")) for r, _ in plotted + front_plotted])
    methods += [m for m in _method_order(p.method for p in published) if m not in methods]

    svg: list[str] = [
        f'<svg width="{_WIDTH}" height="{_HEIGHT}" viewBox="0 0 {_WIDTH} {_HEIGHT}" '
        'role="img" aria-label="Pareto plot">',
        f'<rect x="{_LEFT}" y="{_TOP}" width="{_WIDTH - _LEFT - _RIGHT}" '
        f'height="{_HEIGHT - _TOP - _BOTTOM}" fill="#fff" stroke="#999"/>',
    ]
    bottom, right = _HEIGHT - _BOTTOM, _WIDTH - _RIGHT
    for tick in scale.x_ticks():
        x = scale.x(tick)
        svg.append(f'<line x1="{x:.1f}" y1="{_TOP}" x2="{x:.1f}" y2="{bottom}" stroke="#eee"/>')
        svg.append(f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{tick:g}x</text>')
    for tick in scale.y_ticks():
        y = scale.y(tick)
        svg.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#eee"/>')
        svg.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:g}</text>')
    svg.append(
        f'<text x="{(_LEFT + right) / 2:.0f}" y="{_HEIGHT - 18}" text-anchor="middle">'
        "compression (prunable weights / nonzero weights, log scale)</text>"
    )
    svg.append(
        f'<text transform="translate(18,{(_TOP + bottom) / 2:.0f}) rotate(-90)" '
        'text-anchor="middle">test accuracy (%)</text>'
    )
    svg.append(f'<text x="{_LEFT}" y="28" style="font-size:14px">{_attr(title)}</text>')

    for row, (cx, cy) in plotted:
        method = str(row.get("method"))
        if (str(row.get("trial_id")), str(row.get("round"))) in front_keys:
            continue  # drawn below, larger
        info = _attr(json.dumps(_row_info(row, False)))
        svg.append(
            f'<circle class="pt" cx="{scale.x(cx):.1f}" cy="{scale.y(cy):.1f}" r="4" '
            f'fill="{method_colour(method)}" fill-opacity="0.55" '
            f'data-groups="m:{_attr(method)}" data-info="{info}"/>'
        )
    if staircase and front_plotted:
        line = " ".join(f"{scale.x(x):.1f},{scale.y(y):.1f}" for x, y in _front_line(front))
        svg.append(
            f'<polyline points="{line}" fill="none" stroke="{FRONT_LINE}" stroke-width="1.5" '
            'stroke-opacity="0.7" data-groups="front"/>'
        )
    for row, (cx, cy) in front_plotted:
        method = str(row.get("method"))
        svg.append(
            f'<circle class="pt front" cx="{scale.x(cx):.1f}" cy="{scale.y(cy):.1f}" r="7" '
            f'fill="{method_colour(method)}" stroke="#000" stroke-width="1.5" '
            f'data-groups="m:{_attr(method)}" data-run-id="{_attr(row.get("run_id") or "")}" '
            f'data-info="{_attr(json.dumps(_row_info(row, True)))}"/>'
        )
    for point, below in zip(published, _label_below(published), strict=True):
        px, py = scale.x(point.compression), scale.y(100 - point.test_error)
        # Labels stay inside the plot: near the right edge they go to the star's left.
        near_edge = px > right - 90
        lx, anchor = (px - 9, "end") if near_edge else (px + 9, "start")
        info = {
            "published": point.source,
            "method": point.method,
            "test error": f"{point.test_error:g}%",
            "test acc": f"{100 - point.test_error:.2f}%",
            "compression": f"{point.compression:g}x",
        }
        svg.append(
            f'<g data-groups="published m:{_attr(point.method)}">'
            f'<polygon class="pt published" points="{_star(px, py)}" '
            f'fill="{method_colour(point.method)}" stroke="#000" stroke-width="0.8" '
            f'data-info="{_attr(json.dumps(info))}"/>'
            f'<text x="{lx:.1f}" y="{py + 14 if below else py - 6:.1f}" '
            f'text-anchor="{anchor}" style="font-size:9px">'
            f"{_attr(_short_source(point.source))}</text></g>"
        )

    entries = [(f"m:{m}", m, "circle", method_colour(m)) for m in methods]
    if front_plotted:
        entries.append(("front", "Pareto front (chosen on val acc)", "line", FRONT_LINE))
    if published:
        entries.append(("published", "published (papers, test)", "star", "#ffffff"))
    for index, (group, label, shape, colour) in enumerate(entries):
        ly = _TOP + 10 + 20 * index
        lx = right + 18
        if shape == "circle":
            mark = f'<circle cx="{lx}" cy="{ly}" r="5" fill="{colour}"/>'
        elif shape == "line":
            mark = f'<line x1="{lx - 7}" y1="{ly}" x2="{lx + 7}" y2="{ly}" stroke="{colour}" '
            mark += 'stroke-width="2"/>'
        else:
            mark = f'<polygon points="{_star(lx, ly, 7, 3)}" fill="{colour}" stroke="#000"/>'
        svg.append(
            f'<g class="legend" data-toggle="{_attr(group)}">{mark}'
            f'<text x="{lx + 12}" y="{ly + 4}">{_attr(label)}</text></g>'
        )
    svg.append("</svg>")

    table = [
        "<table><thead><tr>",
        *(
            f'<th class="{"l" if h in ("method", "run id", "hyperparameters") else ""}">{h}</th>'
            for h in (
                "method",
                "val acc",
                "test acc",
                "test err%",
                "compression",
                "FLOPs",
                "round",
                "run id",
                "hyperparameters",
            )
        ),
        "</tr></thead><tbody>",
    ]
    for row in sorted(front, key=lambda r: float(r.get("compression") or 0)):
        flops = row.get("flops_ratio")
        table.append(
            "<tr>"
            f'<td class="l">{_attr(row.get("method"))}</td>'
            f"<td>{_fmt(row.get('val_acc'))}</td><td>{_fmt(row.get('test_acc'))}</td>"
            f"<td>{_fmt(row.get('test_error'), 2)}</td>"
            f"<td>{_fmt(row.get('compression'), 1)}x</td>"
            f"<td>{'' if flops is None else f'{100 * float(flops):.1f}%'}</td>"
            f"<td>{_attr(row.get('round'))}</td>"
            f'<td class="l"><code>{_attr(row.get("run_id") or "")}</code></td>'
            f'<td class="l">{_attr(_params_text(row.get("key_params") or row.get("params")))}'
            "</td></tr>"
        )
    table.append("</tbody></table>")

    page = "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{_attr(title)}</title>",
            f"<style>{_STYLE}</style></head><body>",
            *svg,
            *(f'<p class="note">{_attr(note)}</p>' for note in notes),
            '<p class="note">Hover a point for its details; click a legend entry to hide or '
            "show it. Large points with a black edge are the front, chosen on validation "
            "accuracy; the y axis is test accuracy, as the papers report.</p>",
            f"<h3>Pareto front ({len(front)} points)</h3>",
            *table,
            '<div id="tip"></div>',
            f"<script>{_SCRIPT}</script>",
            "</body></html>",
        ]
    )
    path = Path(path)
    atomic_write_text(path, page + "\n")
    return path
