"""`report.html`: one self-contained page (inline CSS, PNG plots as data URIs) that opens
offline in any browser. Built from `report.json` alone, so any run folder can be shown."""

from __future__ import annotations

import base64
import html
from typing import Any

from mpqc.metrics import METRICS
from mpqc.plots import bars_png, heatmap_png, pareto_png

__all__ = ["render", "plots"]


def _uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _metric(report: dict[str, Any]) -> str:
    return next(iter(report["budget"]["bounds"]))


def _cost(candidate: dict[str, Any], metric: str) -> float:
    cost = candidate["cost"]
    return {
        "latency": cost["latency_s"],
        "size": cost["weight_bytes"],
        "memory": cost["peak_activation_bytes"],
        "bops": cost["bops"],
    }[metric]


def plots(report: dict[str, Any]) -> dict[str, bytes]:
    """The report's figures as PNG bytes: Pareto front, winner's bits, necessity heat map."""
    metric = _metric(report)
    m = METRICS[metric]
    measure = report["measure"]["name"]
    fitting = [c for c in report["candidates"] if c["fits"] and c["ptq"] is not None]
    x = m.display_factor
    series = {
        "PTQ": [(_cost(c, metric) * x, 100 * c["ptq"]) for c in fitting],
        "QAT": [(_cost(c, metric) * x, 100 * c["qat"]) for c in fitting if c["qat"] is not None],
    }
    winner = report["winner"]
    images = {
        "pareto": pareto_png(
            series,
            (_cost(winner, metric) * x, 100 * winner["validation"]),
            report["budget"]["bounds"][metric]["value"] * x,
            f"{metric} ({m.display_unit}) on {report['target']['name']}",
            f"validation {measure} (%)",
            f"candidates that fit {report['budget']['text']}",
            None
            if report.get("max_drop_points") is None
            else 100 * report["float"]["validation"] - report["max_drop_points"],
        )
    }
    layers = list(winner["scheme"])
    labels = list(winner["scheme"].values())
    images["bits"] = bars_png(
        layers,
        {
            "weight bits": [_bits(label, "w") for label in labels],
            "activation bits": [_bits(label, "a") for label in labels],
        },
        "bits (32 = float)",
        f"winner: {winner['summary']}",
    )
    probes = report.get("probes")
    if probes:
        variants = probes["variants"]
        rows = [layer for layer in winner["scheme"] if layer in probes["layers"]]  # the model's order
        values = [[100 * probes["layers"][r][v]["necessity"] for v in variants] for r in rows]
        images["necessity"] = heatmap_png(rows, variants, values, "QAT necessity per layer (points)", "N (points)")
    return images


def _bits(label: str, which: str) -> int:
    from mpqc.precision import Precision

    p = Precision.parse(label)
    value = p.w_bits if which == "w" else (p.a_bits if p.quantizes_activations or p.form == "dynamic" else None)
    return 32 if value is None else value


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _prediction(p: dict[str, Any]) -> str:
    """Predicted N with its 95% interval, and "uncertain" when that straddles the tolerance."""
    low, high = p.get("interval", (p["necessity"] - 1.96 * p["sigma"], p["necessity"] + 1.96 * p["sigma"]))
    flag = " uncertain" if p.get("decision") == "uncertain" else ""
    return f"{100 * p['necessity']:.2f} [{100 * low:.2f}, {100 * high:.2f}]{flag}"


def render(report: dict[str, Any]) -> str:
    """report.html: one offline page built from report.json alone."""
    images = plots(report)
    metric = _metric(report)
    m = METRICS[metric]
    winner = report["winner"]
    measure = report["measure"]["name"]
    rows = []
    for c in sorted(report["candidates"], key=lambda c: (not c["fits"], -max(c["ptq"] or -1, c["qat"] or -1))):
        p = c["predicted"]
        prediction = "-" if p is None else _prediction(p)
        rows.append(
            "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
            "<td>{}</td></tr>".format(
                ' class="win"' if c["key"] == winner["key"] else "",
                html.escape(c["summary"]),
                html.escape(c["origin"]),
                html.escape(m.format(_cost(c, metric))),
                "yes" if c["fits"] else "no",
                f"{min(100.0, max(0.0, 100 * c['predicted_ptq'])):.2f}",
                _pct(c["ptq"]),
                prediction,
                html.escape(c["decision"]),
                _pct(c["qat"]),
            )
        )
    layer_rows = "".join(
        f"<tr><td>{i}</td><td>{html.escape(name)}</td><td>{html.escape(label)}</td></tr>"
        for i, (name, label) in enumerate(winner["scheme"].items())
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report["notes"])
    achieved = "<br>".join(html.escape(line) for line in winner["achieved"])
    heat = (
        f'<h2>QAT necessity heat map</h2><img alt="necessity" src="{_uri(images["necessity"])}">'
        if "necessity" in images
        else "<p>No layer probes in this run (the policy does not use them).</p>"
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>mpqc compile report</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ccc; padding: 3px 8px; }}
th {{ background: #f3f3f3; }} tr.win td {{ background: #e8f6e8; font-weight: 600; }}
img {{ max-width: 100%; border: 1px solid #eee; margin: .5em 0; }}
</style></head><body>
<h1>mpqc compile</h1>
<p><b>Target</b> {html.escape(report["target"]["name"])}: {html.escape(report["target"]["description"])}<br>
<b>Budget</b> {html.escape(report["budget"]["described"])}<br>
<b>Quality</b> {html.escape(report["measure"]["description"])} ({measure}); {html.escape(_splits(report))}<br>
<b>Winner</b> {html.escape(winner["summary"])} via {winner["recovery"].upper()}:
validation {_pct(winner["validation"])}%, test {_pct(winner["test"])}%
(float {_pct(report["float"]["validation"])}% / {_pct(report["float"]["test"])}%),
{report["qat_runs"]} QAT run(s), policy {html.escape(report["qat_policy"])}, {report["seconds"]:.1f} s<br>
<b>Cost reached</b><br>{achieved}{_elsewhere(report)}</p>
<p><b>Objective.</b> {html.escape(report["objective"])}.</p>
<h2>Candidates and the Pareto front</h2><img alt="pareto" src="{_uri(images["pareto"])}">
<h2>Per-layer bit widths of the winner</h2><img alt="bits" src="{_uri(images["bits"])}">
<table><tr><th>#</th><th>layer</th><th>precision</th></tr>{layer_rows}</table>
{heat}
<h2>Candidates</h2>
<table><tr><th>scheme</th><th>origin</th><th>{metric}</th><th>fits</th><th>predicted PTQ %</th>
<th>PTQ %</th><th>predicted N [95% interval] (points)</th><th>decision</th><th>QAT %</th></tr>
{"".join(rows)}</table>
<h2>Notes</h2><ul>{notes}</ul>
</body></html>
"""


def _elsewhere(report: dict[str, Any]) -> str:
    """The winner timed on the other measured CPU runtime, if the run did."""
    other = report.get("elsewhere")
    if not other:
        return ""
    if "error" in other:
        return f"<br><b>On {html.escape(other['target'])}</b>: could not run ({html.escape(other['error'])})"
    return (
        f"<br><b>On {html.escape(other['target'])}</b>: the same model runs in {other['winner_ms']:.3f} ms, "
        f"{other['ratio_to_float']:.3f}x its float model there ({other['float_ms']:.3f} ms), same run"
    )


def _splits(report: dict[str, Any]) -> str:
    s = report["splits"]
    return (
        f"train {s['train']['samples']}, validation {s['validation']['samples']}, test {s['test']['samples']} "
        f"samples ({'disjoint' if s['disjoint'] else 'not disjoint'})"
    )
