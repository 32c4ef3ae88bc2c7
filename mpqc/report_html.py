"""`report.html`: one self-contained page (inline CSS, PNG plots as data URIs) that opens
offline in any browser."""

from __future__ import annotations

import base64
import html
from typing import Any

from mpqc.plots import heatmap_png, scatter_png

__all__ = ["render", "plots"]


def _uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _metric(report: dict[str, Any]) -> str:
    return next(iter(report["budget"]["absolute"]))


def plots(report: dict[str, Any], candidates: list[Any], winner: Any, probes: Any) -> dict[str, bytes]:
    metric = _metric(report)
    unit, factor = {
        "latency": ("ms", 1e3),
        "size": ("KB", 1 / 1024),
        "memory": ("KB", 1 / 1024),
        "bops": ("GBOPs", 1e-9),
    }[metric]
    fitting = [c for c in candidates if c.fits and c.ptq is not None]
    series = {
        "PTQ": ([c.cost.metric(metric) * factor for c in fitting], [100 * c.ptq for c in fitting]),
        "QAT": (
            [c.cost.metric(metric) * factor for c in fitting if c.qat is not None],
            [100 * c.qat for c in fitting if c.qat is not None],
        ),
        "winner": ([winner.cost.metric(metric) * factor], [100 * winner.accuracy]),
    }
    pareto = scatter_png(
        series,
        f"{metric} ({unit}) on {report['target']['name']}",
        "validation top-1 (%)",
        f"candidates under budget {report['budget']['text']}",
    )
    layers = list(winner.scheme.layers)
    bits = {
        "weight bits": [p.w_bits or 32 for p in winner.scheme.layers.values()],
        "activation bits": [p.a_bits or 32 for p in winner.scheme.layers.values()],
    }
    from mpqc.plots import bars_png

    per_layer = bars_png(layers, bits, "bits (32 = float)", f"winner: {winner.scheme.summary()}")
    variants = probes.variants
    values = [[100 * probes.table[layer][v].necessity for v in variants] for layer in probes.table]
    heat = heatmap_png(list(probes.table), variants, values, "QAT necessity per layer (points)", "N (points)")
    return {"pareto": pareto, "bits": per_layer, "necessity": heat}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def render(report: dict[str, Any], candidates: list[Any], winner: Any, probes: Any) -> str:
    images = plots(report, candidates, winner, probes)
    metric = _metric(report)
    rows = []
    for c in sorted(candidates, key=lambda c: (not c.fits, -c.accuracy)):
        p = c.prediction
        rows.append(
            "<tr{}><td>{}</td><td>{}</td><td>{:.4g}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
            "<td>{}</td></tr>".format(
                ' class="win"' if c is winner else "",
                html.escape(c.scheme.summary()),
                html.escape(c.origin),
                c.cost.metric(metric),
                "yes" if c.fits else "no",
                f"{100 * c.predicted_ptq:.2f}",
                "-" if c.ptq is None else f"{100 * c.ptq:.2f}",
                "-" if p is None else f"{100 * p.necessity:.2f} ({100 * p.confidence:.0f}%)",
                html.escape(c.decision),
                "-" if c.qat is None else f"{100 * c.qat:.2f}",
            )
        )
    layer_rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{p.label}</td></tr>" for name, p in winner.scheme.layers.items()
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report["notes"])
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>mpqc compile report</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ccc; padding: 3px 8px; }}
th {{ background: #f3f3f3; }} tr.win td {{ background: #e8f6e8; font-weight: 600; }}
img {{ max-width: 100%; border: 1px solid #eee; margin: .5em 0; }} code {{ background: #f6f6f6; }}
</style></head><body>
<h1>mpqc compile</h1>
<p><b>Target</b> {html.escape(report["target"]["name"])}: {html.escape(report["target"]["description"])}<br>
<b>Budget</b> {html.escape(report["budget"]["text"])} &rarr; {html.escape(str(report["budget"]["absolute"]))}<br>
<b>Winner</b> {html.escape(winner.scheme.summary())} via {winner.recovery.upper()}:
top-1 {100 * winner.accuracy:.2f}% (float {100 * report["float_top1"]:.2f}%),
{report["qat_runs"]} QAT run(s) of at most {report["max_qat_runs"]}, {report["seconds"]:.1f} s</p>
<p><b>Objective.</b> {html.escape(report["objective"])}.</p>
<h2>Pareto front</h2><img alt="pareto" src="{_uri(images["pareto"])}">
<h2>Per-layer bit widths of the winner</h2><img alt="bits" src="{_uri(images["bits"])}">
<table><tr><th>layer</th><th>precision</th></tr>{layer_rows}</table>
<h2>QAT necessity heat map</h2><img alt="necessity" src="{_uri(images["necessity"])}">
<h2>Candidates</h2>
<table><tr><th>scheme</th><th>origin</th><th>{metric}</th><th>fits</th><th>predicted PTQ %</th>
<th>PTQ %</th><th>predicted N (confidence)</th><th>decision</th><th>QAT %</th></tr>
{"".join(rows)}</table>
<h2>Notes</h2><ul>{notes}</ul>
</body></html>
"""
