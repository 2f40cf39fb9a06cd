"""Loss curves: the per-step history written as CSV and JSON, and plotted to PNG."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np


def write_history(history: list[dict], output_dir: str | Path) -> dict[str, Path]:
    """Write ``curves.csv``, ``curves.json`` and ``curves.png`` of ``history`` into ``output_dir``."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": output_dir / "curves.csv",
        "json": output_dir / "curves.json",
        "png": output_dir / "curves.png",
    }
    columns = sorted({k for row in history for k in row}, key=lambda k: (k not in ("step", "stage"), k))
    with open(paths["csv"], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
    paths["json"].write_text(json.dumps(history))
    if history:
        plot_history(history, paths["png"])
    return paths


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` values (shorter at the start); NaNs ignored."""
    out = np.empty(len(values))
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1) : i + 1]
        out[i] = np.nanmean(chunk) if np.any(~np.isnan(chunk)) else np.nan
    return out


def plot_history(history: list[dict], path: str | Path, window: int = 20) -> Path:
    """One panel per loss term (raw and smoothed), the two stages told apart by colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [
        k
        for k in ("loss", "contrastive", "match", "fine", "cycle", "smoothness", "confidence", "accuracy")
        if any(k in row for row in history)
    ]
    fig, axes = plt.subplots(2, (len(keys) + 1) // 2, figsize=(4 * ((len(keys) + 1) // 2), 6), squeeze=False)
    steps = np.array([row["step"] for row in history])
    for ax, key in zip(axes.flat, keys, strict=False):
        for stage, colour in (("pretrain", "tab:blue"), ("finetune", "tab:orange"), ("pixel", "tab:green")):
            rows = [i for i, row in enumerate(history) if row.get("stage") == stage and key in row]
            if not rows:
                continue
            values = np.array([history[i][key] for i in rows], dtype=float)
            ax.plot(steps[rows], values, color=colour, alpha=0.25, linewidth=0.8)
            ax.plot(steps[rows], moving_average(values, window), color=colour, label=stage)
        ax.set_title(key)
        ax.set_xlabel("step")
    axes.flat[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)
