"""Figures for reports, drawn with matplotlib's Agg backend (no display needed) and
returned as PNG bytes, so reports embed them and files are written atomically. Figures
are cropped to their contents, so long labels and colour bars are never cut."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["heatmap_png", "scatter_png", "bars_png", "pareto_png", "pareto_front"]


def _figure(width: float, height: float) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=(width, height), dpi=110)


def _png(plt: Any, fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None}, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    return buffer.getvalue()


def _short(label: str, limit: int = 40) -> str:
    return label if len(label) <= limit else "..." + label[-(limit - 3) :]


def heatmap_png(
    rows: Sequence[str], cols: Sequence[str], values: Sequence[Sequence[float]], title: str, label: str
) -> bytes:
    """A labelled heat map (rows x cols), values written in the cells."""
    longest = max((len(_short(r)) for r in rows), default=4)
    plt, fig = _figure(2.5 + 0.055 * longest + 1.0 * len(cols), 1.4 + 0.3 * len(rows))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(values, cmap="magma_r", aspect="auto")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), [_short(r) for r in rows], fontsize=7)
    top = max((abs(v) for row in values for v in row), default=1.0) or 1.0
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=7, color="white" if v > 0.6 * top else "black")
    fig.colorbar(image, ax=ax, label=label, fraction=0.08, pad=0.03)
    ax.set_title(title, fontsize=9)
    return _png(plt, fig)


def scatter_png(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
    title: str,
    diagonal: bool = False,
) -> bytes:
    """Several series of points, optionally with the y = x diagonal."""
    plt, fig = _figure(5.2, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    markers = ["o", "^", "s", "x", "D"]
    for (name, (xs, ys)), marker in zip(series.items(), markers):
        ax.scatter(xs, ys, label=name, marker=marker, alpha=0.8)
    if diagonal:
        xs_all = [x for xs, _ in series.values() for x in xs]
        if xs_all:
            ax.plot([min(xs_all), max(xs_all)], [min(xs_all), max(xs_all)], color="gray", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _png(plt, fig)


def bars_png(labels: Sequence[str], series: dict[str, Sequence[float]], ylabel: str, title: str) -> bytes:
    """Grouped bars per label, labels shown by index (long layer names go in a table beside)."""
    plt, fig = _figure(1.8 + 0.3 * len(labels), 3.6)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(len(series), 1)
    for k, (name, values) in enumerate(series.items()):
        ax.bar([i + k * width for i in range(len(labels))], values, width, label=name)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))], [str(i) for i in range(len(labels))], fontsize=7)
    ax.set_xlabel("layer (index in the table below)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _png(plt, fig)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both cost (lower) and quality (higher), by cost."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def pareto_png(
    series: Mapping[str, Sequence[tuple[float, float]]],
    winner: tuple[float, float],
    budget: float | None,
    xlabel: str,
    ylabel: str,
    title: str,
    floor: float | None = None,
) -> bytes:
    """Candidates (one series per recovery), the Pareto front over all of them, the budget
    as a vertical line, the quality floor of a max-drop run as a horizontal one, the winner
    ringed."""
    plt, fig = _figure(6.0, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    markers = {"PTQ": "o", "QAT": "^"}
    everything: list[tuple[float, float]] = []
    for name, points in series.items():
        if points:
            ax.scatter(
                [p[0] for p in points], [p[1] for p in points], label=name, marker=markers.get(name, "s"), alpha=0.75
            )
            everything.extend(points)
    front = pareto_front(everything)
    if front:
        ax.step(
            [p[0] for p in front], [p[1] for p in front], where="post", color="gray", linewidth=1, label="Pareto front"
        )
    if budget is not None:
        ax.axvline(budget, color="tab:red", linestyle="--", linewidth=1, label="budget")
    if floor is not None:
        ax.axhline(floor, color="tab:green", linestyle=":", linewidth=1, label="float - max drop")
    ax.scatter([winner[0]], [winner[1]], s=160, facecolors="none", edgecolors="black", linewidths=1.5, label="winner")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # never over a point
    return _png(plt, fig)
