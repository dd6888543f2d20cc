"""PNG plots of the evaluations (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence


def _pyplot():
    """pyplot on the Agg backend, imported on first use: matplotlib costs start-up time only a plot needs."""
    import matplotlib  # deliberate lazy import (see the docstring)

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _style(label: str) -> dict:
    """Baselines dashed/grey-ish so the method stands out."""
    low = label.lower()
    if low.startswith("random"):
        return {"linestyle": "--", "color": "0.45"}
    if low.startswith("baseline") or low.startswith("frequency"):
        return {"linestyle": ":"}
    return {}


def line_panels(
    x: Sequence[float],
    panels: Mapping[str, Mapping[str, Sequence[float]]],
    path: str | Path,
    *,
    xlabel: str,
    ylabel: str,
    title: str,
) -> Path:
    """`line_grid` with one row: a subplot per panel (panel title -> line label -> y values); returns the PNG's path."""
    return line_grid(x, {"": panels}, path, xlabel=xlabel, ylabel=ylabel, title=title)


def bar_panels(
    categories: Sequence[str],
    panels: Mapping[str, Mapping[str, Sequence[float]]],
    path: str | Path,
    *,
    ylabel: str,
    title: str,
) -> Path:
    """One subplot per panel, grouped bars (one bar per label in each category); saved as PNG.

    Args:
        categories: the groups along x (e.g. judges).
        panels: panel title -> bar label -> one value per category.
        path: the PNG file to write.
        ylabel, title: axis label and figure title.

    Returns:
        The written path.
    """
    plt = _pyplot()
    n = max(1, len(panels))
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.6), squeeze=False)
    for ax, (name, bars) in zip(axes[0], panels.items()):
        width = 0.8 / max(1, len(bars))
        for i, (label, ys) in enumerate(bars.items()):
            xs = [c + (i - (len(bars) - 1) / 2) * width for c in range(len(categories))]
            ax.bar(xs, list(ys), width=width, label=label)
        ax.set_xticks(range(len(categories)))
        ax.set_xticklabels(list(categories), fontsize=8)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_title(name)
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=8)
    return _save(plt, fig, title, path)


def line_grid(
    x: Sequence[float],
    rows: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]],
    path: str | Path,
    *,
    xlabel: str,
    ylabel: str,
    title: str,
) -> Path:
    """A grid of line plots: one row per row title (e.g. deletion, insertion), one column per panel (e.g. judge).

    Args:
        x: shared x values.
        rows: row title -> panel title -> line label -> y values (same length as x).
        path: the PNG file to write.
        xlabel, ylabel, title: axis labels and the figure title.

    Returns:
        The written path.
    """
    plt = _pyplot()
    n_rows = max(1, len(rows))
    n_cols = max([1] + [len(panels) for panels in rows.values()])
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.2 * n_cols, 3.3 * n_rows), squeeze=False, sharey=True)
    for r, (row, panels) in enumerate(rows.items()):
        for ax, (name, lines) in zip(axes[r], panels.items()):
            for label, ys in lines.items():
                ax.plot(list(x), list(ys), marker="o", markersize=3, label=label, **_style(label))
            ax.set_title(f"{name}: {row}" if row else name, fontsize=9 if row else None)
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3)
        axes[r][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=8)
    return _save(plt, fig, title, path)


def _save(plt, fig, title: str, path: str | Path) -> Path:
    """Title, tight layout, PNG at 110 dpi; the figure is closed."""
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
