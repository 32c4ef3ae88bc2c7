"""Figures for reports, drawn with matplotlib's Agg backend (no display needed) and
returned as PNG bytes, so reports can embed them and files are written atomically."""

from __future__ import annotations

import io
from collections.abc import Sequence

__all__ = ["heatmap_png", "scatter_png", "bars_png"]


def _figure(width: float, height: float):  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=(width, height), dpi=110)


def _png(plt, fig) -> bytes:  # type: ignore[no-untyped-def]
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def heatmap_png(
    rows: Sequence[str], cols: Sequence[str], values: Sequence[Sequence[float]], title: str, label: str
) -> bytes:
    plt, fig = _figure(1.6 + 1.1 * len(cols), 1.2 + 0.35 * len(rows))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(values, cmap="magma_r", aspect="auto")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), [r if len(r) < 40 else "..." + r[-37:] for r in rows], fontsize=7)
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            ax.text(
                j,
                i,
                f"{v:.1f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if v > 0.6 * max(max(r) for r in values) else "black",
            )
    fig.colorbar(image, ax=ax, label=label)
    ax.set_title(title, fontsize=9)
    return _png(plt, fig)


def scatter_png(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
    title: str,
    diagonal: bool = False,
) -> bytes:
    plt, fig = _figure(5.2, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    markers = ["o", "^", "s", "x", "D"]
    for (name, (xs, ys)), marker in zip(series.items(), markers):
        ax.scatter(xs, ys, label=name, marker=marker, alpha=0.8)
    if diagonal:
        lo = min(min(x) for x, _ in series.values() if len(x))
        hi = max(max(x) for x, _ in series.values() if len(x))
        ax.plot([lo, hi], [lo, hi], color="gray", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _png(plt, fig)


def bars_png(labels: Sequence[str], series: dict[str, Sequence[float]], ylabel: str, title: str) -> bytes:
    plt, fig = _figure(1.5 + 0.35 * len(labels), 3.6)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(len(series), 1)
    for k, (name, values) in enumerate(series.items()):
        ax.bar([i + k * width for i in range(len(labels))], values, width, label=name)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))], [str(i) for i in range(len(labels))])
    ax.set_xlabel("layer (index)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _png(plt, fig)
