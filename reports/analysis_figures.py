"""Figures of the paper's analyses: pre-memorization accuracy against test accuracy (with y = x), the dev R^2 over
candidate thresholds, robustness per pre-memorization bin, and the per-example dynamics heat map.

matplotlib's object API only (Figure + Agg canvas), as in reports.figures: no global state, no window. Each
function returns PNG bytes; reports.analysis_sections makes them sections.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter

from reports.figures import png_bytes


def draw_prediction(points: list[dict], *, r2_identity: float | None = None) -> bytes:
    """Test accuracy against pre-memorization accuracy, one point per (run, checkpoint), one colour per training
    configuration, the checkpoints of a run joined in order; the dashed line is y = x (the paper's prediction).
    Beside it, train accuracy against test accuracy on the same axes: the predictor the paper shows fails."""
    fig = Figure(figsize=(10, 4.6), dpi=120, layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    labels = sorted({p["label"] for p in points}, key=lambda s: [p["label"] for p in points].index(s))
    colours = {lab: colormaps["tab10"](i % 10) for i, lab in enumerate(labels)}
    usable = [p for p in points if p["premem"] is not None and p["test_accuracy"] is not None]
    for ax, key, name in ((axes[0], "premem", "pre-memorization train accuracy"),
                          (axes[1], "train_accuracy", "train accuracy")):
        for run in dict.fromkeys(p["run"] for p in usable):
            rows = sorted((p for p in usable if p["run"] == run and p[key] is not None), key=lambda p: p["checkpoint"])
            if not rows:
                continue
            ax.plot([p[key] for p in rows], [p["test_accuracy"] for p in rows], marker="o", markersize=4,
                    linewidth=0.8, color=colours[rows[0]["label"]], label=rows[0]["label"])
        ax.plot([0, 1], [0, 1], linestyle="--", color="black", linewidth=1, label="y = x")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel(name)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("test accuracy")
    title = "Test accuracy against pre-memorization accuracy"
    if r2_identity is not None and math.isfinite(r2_identity):
        title += f" (R² on y = x: {r2_identity:.2f})"
    axes[0].set_title(title, fontsize="medium")
    axes[1].set_title("... and against train accuracy", fontsize="medium")
    handles, names = axes[0].get_legend_handles_labels()
    unique = dict(zip(names, handles))
    axes[1].legend(unique.values(), unique.keys(), loc="lower right", fontsize="x-small")
    return png_bytes(fig)


def draw_tau_curve(tau: dict) -> bytes:
    """Dev R^2 (which chooses the threshold) and test R^2 (for information only) over the candidate thresholds."""
    fig = Figure(figsize=(7, 4), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    curve = tau["curve"]
    x = np.array([c["value"] for c in curve], dtype=float)
    for key, style, name in (("r2_dev", dict(color="tab:blue", linewidth=2), "dev (chooses the threshold)"),
                             ("r2_test", dict(color="tab:gray", linestyle=":", linewidth=1.5),
                              "test (information only)")):
        y = np.array([np.nan if c[key] is None else c[key] for c in curve], dtype=float)
        if np.isfinite(y).any():
            ax.plot(x, np.maximum(y, -1.0), label=name, **style)
    if tau.get("calibrated") is not None:
        ax.axvline(tau["calibrated"], color="tab:blue", linestyle="--", linewidth=1,
                   label=f"calibrated {tau['parameter']} = {tau['calibrated']:.3g}")
    if tau.get("configured") is not None:
        ax.axvline(tau["configured"], color="tab:red", linestyle="-.", linewidth=1,
                   label=f"configured {tau['parameter']} = {tau['configured']:.3g}")
    if tau["parameter"] == "floor_scale":
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_xticks([0.25, 0.5, 1, 2, 4], ["0.25", "0.5", "1", "2", "4"])
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel(tau["parameter"] + (" (memorized iff NLL < floor_scale × phrasing floor)"
                                      if tau["parameter"] == "floor_scale" else " (memorized iff log(log PPL) < tau)"))
    ax.set_ylabel("R² of accuracy on y = PreMem (clipped at -1)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    return png_bytes(fig)


def draw_robustness(robustness: dict) -> bytes:
    """Mean sample accuracy per pre-memorization bin, unperturbed and under each forced answer prefix, with 95%
    bootstrap intervals over the examples of a bin."""
    fig = Figure(figsize=(7, 4), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    bins = list(dict.fromkeys(b["bin"] for b in robustness["bins"]))
    conditions = list(dict.fromkeys(b["condition"] for b in robustness["bins"]))
    width = 0.8 / max(1, len(conditions))
    for k, condition in enumerate(conditions):
        rows = [next(b for b in robustness["bins"] if b["bin"] == name and b["condition"] == condition)
                for name in bins]
        centres = np.arange(len(bins)) + (k - (len(conditions) - 1) / 2) * width
        mean = np.array([np.nan if r["mean"] is None else r["mean"] for r in rows], dtype=float)
        low = np.array([np.nan if r["ci_low"] is None else r["ci_low"] for r in rows], dtype=float)
        high = np.array([np.nan if r["ci_high"] is None else r["ci_high"] for r in rows], dtype=float)
        err = np.vstack([np.where(np.isfinite(low), mean - low, 0), np.where(np.isfinite(high), high - mean, 0)])
        label = "unperturbed" if condition == "unperturbed" else f"answer forced to begin \"{condition}\""
        ax.bar(centres, mean, width=width, yerr=err, capsize=2, label=label, alpha=0.85)
    counts = [next(b for b in robustness["bins"] if b["bin"] == name)["n_examples"] for name in bins]
    ax.set_xticks(np.arange(len(bins)), [f"{name}\nn={n}" for name, n in zip(bins, counts)], fontsize="small")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("pre-memorization accuracy at the last checkpoint")
    ax.set_ylabel("sample accuracy on the training question")
    ax.set_title(f"Robustness to a forced answer prefix ({robustness['label']})", fontsize="medium")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    return png_bytes(fig)


def draw_heatmap(data: dict) -> bytes:
    """Examples (rows, sorted by the checkpoint they were first memorized at) against checkpoints: sample accuracy
    (brightness) beside the memorized flag, as the paper's data figures show them."""
    acc, mem = data["accuracy"], data["memorized"]
    height = min(9.0, 2.0 + 0.05 * acc.shape[0])
    fig = Figure(figsize=(7, height), dpi=120, layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    shown = axes[0].imshow(np.ma.masked_invalid(acc), aspect="auto", cmap="gray", vmin=0, vmax=1,
                           interpolation="nearest")
    fig.colorbar(shown, ax=axes, location="right", shrink=0.8, label="sample accuracy (left panel)")
    axes[1].imshow(np.ma.masked_invalid(mem), aspect="auto", cmap=ListedColormap(["#dddddd", "#c0392b"]), vmin=0,
                   vmax=1, interpolation="nearest")
    for ax, name in ((axes[0], "sample accuracy"), (axes[1], "memorized (red)")):
        ax.set_xticks(range(len(data["epochs"])), [str(e) for e in data["epochs"]])
        ax.set_xlabel("epoch checkpoint")
        ax.set_title(name, fontsize="medium")
    axes[0].set_ylabel(f"{acc.shape[0]} training examples, by first memorized epoch")
    fig.suptitle(f"Per-example dynamics ({data['label']})", fontsize="medium")
    return png_bytes(fig)
