"""The learning-curve figure: test accuracy against training examples, log x, one line per strategy.

Uses matplotlib's object API (Figure + Agg canvas) and never pyplot, so it sets no global
backend, opens no window and holds no global figure state.
"""

from __future__ import annotations

import io
import itertools
import math
from pathlib import Path

import polars as pl
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from reports.curves import CURVE_POINT_SCHEMA
from reports.efficiency import REFERENCE
from reports.files import atomic_write_bytes


def format_n(n: float) -> str:
    """Short label for an example count: 64, 1.5k, 12k, 1.2M."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if n >= scale:
            v = n / scale
            return f"{v:.1f}".rstrip("0").rstrip(".") + suffix if v < 10 else f"{v:.0f}{suffix}"
    return f"{n:g}"


def _tick_labels(ticks: list[int]) -> list[str]:
    """Label ticks that are far enough apart on the log axis to be read; the others stay unlabelled."""
    if len(ticks) < 2:
        return [format_n(t) for t in ticks]
    span = math.log10(ticks[-1]) - math.log10(ticks[0])
    labels, last = [], None
    for t in ticks:
        if last is None or math.log10(t) - math.log10(last) >= span / 10:
            labels.append(format_n(t))
            last = t
        else:
            labels.append("")
    return labels


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes (the Agg canvas; nothing is written)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def plot_curves(points: pl.DataFrame, path: str | Path, *, reference: str = REFERENCE,
                title: str | None = None) -> Path:
    """Draw `curve_points` output to a PNG at `path` (written atomically) and return the path."""
    return atomic_write_bytes(path, draw_curves(points, reference=reference, title=title))


def draw_curves(points: pl.DataFrame, *, reference: str = REFERENCE, title: str | None = None) -> bytes:
    """The learning curves of `curve_points` output as PNG bytes.

    Reads strategy, n_examples, accuracy_mean, ci_low, ci_high. One line with markers per strategy
    and a shaded 95% band; the reference (i.i.d.) curve is black and dashed, drawn first so the
    strategies sit on top. The x ticks are the measured example counts (the round sizes).
    """
    missing = [c for c in CURVE_POINT_SCHEMA if c not in points.columns]
    if missing:
        raise ValueError(f"curve points frame lacks column(s) {missing}; build it with curve_points()")
    if points.height == 0:
        raise ValueError("curve points frame is empty: nothing to plot")

    fig = Figure(figsize=(7.5, 4.8), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    strategies = sorted(points["strategy"].unique().to_list(), key=lambda s: (s != reference, s))
    palette = itertools.cycle(colormaps["tab10"].colors)
    for strategy in strategies:
        p = points.filter(pl.col("strategy") == strategy).sort("n_examples")
        x = p["n_examples"].to_numpy()
        if strategy == reference:
            style = dict(color="black", linestyle="--", linewidth=2.0, marker="s", label=f"{strategy} (i.i.d.)")
        else:
            style = dict(color=next(palette), linestyle="-", linewidth=1.6, marker="o", label=strategy)
        ax.fill_between(x, p["ci_low"].to_numpy(), p["ci_high"].to_numpy(), color=style["color"], alpha=0.15,
                        linewidth=0)
        ax.plot(x, p["accuracy_mean"].to_numpy(), markersize=4, **style)

    ticks = sorted(points["n_examples"].unique().to_list())
    ax.set_xscale("log")
    ax.set_xticks(ticks, _tick_labels(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("training examples (log scale)")
    ax.set_ylabel("test accuracy")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    n_seeds = int(points["n_seeds"].max())
    ax.set_title(title or f"Test accuracy vs training examples (mean, 95% CI over {n_seeds} seed(s))",
                 fontsize="medium")
    return png_bytes(fig)
