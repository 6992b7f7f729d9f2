"""The report's figures, as PNG bytes: the results chart, the pretraining loss curves, the forgetting chart, and
the overlap heatmap of `dontstop inspect`."""

from __future__ import annotations

import io
import logging
import os

from ..records import ExperimentSummary, PretrainMetrics, Similarity
from .statistics import points

logger = logging.getLogger(__name__)

BASELINE_COLOR = "#9aa3b2"
PALETTE = ["#2f6fdf", "#e07a1f", "#1f9d6b", "#c43d6b", "#7a5cd6", "#2aa5b8", "#b5892a", "#5b6475"]
DPI = 192  # twice the 96 px per inch the page shows them at: sharp on high-density screens and on paper
PLOT_STYLE = {
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "axes.axisbelow": True,
    "grid.color": "#e3e6ec",
    "axes.edgecolor": "#9aa3b2",
    "xtick.color": "#5b6475",
    "ytick.color": "#5b6475",
    "axes.labelcolor": "#1d2330",
    "font.size": 10,
    "axes.titlesize": 11,
    "legend.frameon": False,
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return buffer.getvalue()


def arm_colors(summary: ExperimentSummary) -> dict[str, str]:
    """One colour per arm, the same in every figure; the baseline grey."""
    names = [arm.name for arm in summary.arms]
    return {name: BASELINE_COLOR if i == 0 else PALETTE[(i - 1) % len(PALETTE)] for i, name in enumerate(names)}


def arm_ticks(ax, x, names: list[str], width: float) -> None:
    """Arm names under the bars, slanted when they would run into each other (about 0.09 inch per character; the
    axes take about two thirds of the figure's width once labels and margins are drawn)."""
    crowded = 0.09 * max(map(len, names)) > 0.65 * width / len(names)
    ax.set_xticks(x, names, rotation=25 if crowded else 0, ha="right" if crowded else "center")


def results_chart(comparison: dict, colors: dict[str, str]) -> tuple[bytes, float]:
    """Bars of the primary metric's mean with ± std error bars and every seed as a dot; returns the PNG and where
    the y axis starts (above 0 when the differences would be invisible from 0)."""
    import numpy as np

    plt = _pyplot()
    metric, runs = comparison["primary_metric"], comparison["runs"]
    stats = [row["metrics"][metric] for row in runs]
    means = np.array([100 * s["mean"] for s in stats])
    stds = np.array([100 * (s["std"] or 0.0) for s in stats])
    seeds = [100 * np.array(s["values"]) for s in stats]
    low = min(min(means - stds), min(v.min() for v in seeds))
    high = max(max(means + stds), max(v.max() for v in seeds))
    span = max(high - low, 1.0)
    bottom = max(0.0, low - 0.8 * span)
    bottom = 0.0 if bottom < 0.3 * high else np.floor(bottom)
    x = np.arange(len(runs))
    with plt.rc_context(PLOT_STYLE):
        fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(runs) + 2.5), 3.9))
        ax.bar(x, means, width=0.62, color=[colors[row["name"]] for row in runs], zorder=2)
        ax.errorbar(x, means, yerr=stds, fmt="none", ecolor="#1d2330", elinewidth=1.2, capsize=6, zorder=3)
        for i, values in enumerate(seeds):
            spread = np.linspace(-0.14, 0.14, len(values)) if len(values) > 1 else np.zeros(1)
            ax.scatter(i + spread, values, s=18, color="white", edgecolor="#1d2330", linewidth=0.9, zorder=4)
        ax.axhline(means[0], color="#5b6475", linestyle="--", linewidth=0.9, zorder=1)
        top = high + 0.35 * span
        for i, s in enumerate(stats[1:], start=1):
            mark = "*" if s["significant"] else ""
            y = max(means[i] + stds[i], seeds[i].max()) + 0.06 * span
            color = "#1f7a4d" if s["significant"] and s["delta"] > 0 else "#5b6475"
            ax.text(i, y, f"{points(s['delta'])}{mark}", ha="center", va="bottom", fontsize=9.5, color=color)
        ax.set_ylim(bottom, top)
        arm_ticks(ax, x, [row["name"] for row in runs], width=fig.get_figwidth())
        ax.set_ylabel(f"{comparison['split']} {metric} (%)")
        ax.set_xlim(-0.6, len(runs) - 0.4)
    return _png(fig), bottom


def pretrain_lines(summary: ExperimentSummary) -> list[dict]:
    """One entry per distinct pretraining stage (a stage shared by arms, the same directory, once): the arms using
    it, the step it starts at in its arm's chain, its head warm-up and its training and held-out loss points."""
    lines: list[dict] = []
    seen: dict[str, dict] = {}
    for arm in summary.arms:
        offset = 0
        for stage in arm.stages:
            if stage.kind != "pretrain":
                continue
            metrics = stage.metrics or PretrainMetrics(objective="mlm")
            key = stage.dir or f"{arm.name}/{stage.name}"
            if key in seen:
                seen[key]["arms"].append(arm.name)
            else:
                seen[key] = {
                    "stage": stage.name,
                    "arms": [arm.name],
                    "offset": offset,
                    "warmup": metrics.head_warmup_steps,
                    "train": [(offset + step, value) for step, value in metrics.train_curve()],
                    "eval": {
                        name: [(offset + step, value) for step, value in points]
                        for name, points in metrics.eval_curves().items()
                    },
                }
                lines.append(seen[key])
            offset += stage.steps or metrics.steps
    return lines


def loss_chart(lines: list[dict]) -> bytes | None:
    """Training loss against step (left) and held-out loss at each evaluation (right, when there are any)."""
    lines = [line for line in lines if line["train"] or line["eval"]]
    if not lines:
        return None
    plt = _pyplot()
    from matplotlib.lines import Line2D

    with_eval = any(line["eval"] for line in lines)
    markers = {}
    for line in lines:
        for name in line["eval"]:
            markers.setdefault(name, "osD^vP"[len(markers) % 6])
    with plt.rc_context({**PLOT_STYLE, "axes.grid.axis": "both"}):
        fig, axes = plt.subplots(1, 2 if with_eval else 1, figsize=(11 if with_eval else 7, 3.8), squeeze=False)
        train_ax = axes[0][0]
        values = []
        for i, line in enumerate(lines):
            color = PALETTE[i % len(PALETTE)]
            label = f"{line['stage']} ({', '.join(line['arms'])})"
            if line["warmup"]:
                end = line["offset"] + line["warmup"]
                train_ax.axvspan(line["offset"], end, color=color, alpha=0.08, linewidth=0)
            if line["train"]:
                steps, losses = zip(*line["train"], strict=True)
                train_ax.plot(steps, losses, color=color, linewidth=1.6, label=label)
                values += losses
            for name, evals in line["eval"].items():
                steps, losses = zip(*evals, strict=True)
                axes[0][-1].plot(steps, losses, color=color, marker=markers[name], markersize=4.5, linewidth=1.1)
                values += losses
        positive = [v for v in values if v > 0]
        log = bool(positive) and max(positive) / min(positive) > 4  # a fresh head starts far above where it ends
        for ax in axes[0]:
            ax.set_xlabel("pretraining step along the arm's chain")
            ax.set_yscale("log" if log else "linear")
        train_ax.set_ylabel("loss")
        train_ax.set_title("training loss", loc="left")
        # Below the panel: inside it, a legend of several stages would hide the curves.
        train_ax.legend(fontsize=8.5, loc="upper left", bbox_to_anchor=(0, -0.2), ncol=1 if len(lines) > 4 else 2)
        if with_eval:
            eval_ax = axes[0][1]
            eval_ax.set_title("held-out loss", loc="left")
            handles = [
                Line2D([], [], color="#5b6475", marker=m, linestyle="-", markersize=4.5, label=name)
                for name, m in markers.items()
            ]
            eval_ax.legend(handles=handles, fontsize=8.5, loc="upper right", title="held-out set", title_fontsize=8.5)
    return _png(fig)


def forgetting_rows(summary: ExperimentSummary) -> list[tuple[str, str, float | None, float | None]]:
    """(arm, held-out set, loss before, loss after) for every arm that measured its held-out sets."""
    return [(arm.name, name, v.before, v.after) for arm in summary.arms for name, v in arm.lm_eval.items()]


def loss_axis(values: list[float]) -> tuple[float, float]:
    """The y range of a panel of losses: from just below the lowest, so that a change of 0.1 nats shows."""
    low, high = min(values), max(values)
    span = max(high - low, 0.05 * high, 1e-3)
    return max(0.0, low - 0.5 * span), high + 0.35 * span


def forgetting_chart(rows: list[tuple], colors: dict[str, str]) -> bytes | None:
    """One panel per held-out set: per arm, the starting checkpoint's loss (grey) beside the arm's (its colour)."""
    import numpy as np
    from matplotlib.patches import Patch

    if not rows:
        return None
    plt = _pyplot()
    sets = list(dict.fromkeys(name for _, name, _, _ in rows))
    nan = float("nan")
    per_set = {name: [r for r in rows if r[1] == name] for name in sets}
    ratios = [max(len(present), 1.5) for present in per_set.values()]  # a panel as wide as its arms need
    width = min(11.0, 0.95 * sum(ratios) + 0.9 * len(sets))
    with plt.rc_context(PLOT_STYLE):
        fig, axes = plt.subplots(
            1, len(sets), figsize=(width, 3.5), squeeze=False, gridspec_kw={"width_ratios": ratios}
        )
        for ax, (name, present), ratio in zip(axes[0], per_set.items(), ratios, strict=True):
            x = np.arange(len(present))
            before = [nan if r[2] is None else r[2] for r in present]
            after = [nan if r[3] is None else r[3] for r in present]
            ax.bar(x - 0.2, before, 0.38, color="#d5d9e0", zorder=2)
            ax.bar(x + 0.2, after, 0.38, color=[colors[r[0]] for r in present], zorder=2)
            for i, (b, a) in enumerate(zip(before, after, strict=True)):
                if not (np.isnan(a) or np.isnan(b)):
                    color = "#b3261e" if a > b else "#1f7a4d"
                    ax.text(i + 0.2, a, f"{a - b:+.2f}", ha="center", va="bottom", fontsize=8.5, color=color)
            ax.set_xlim(-0.6, len(present) - 0.4)
            arm_ticks(ax, x, [r[0] for r in present], width=width * ratio / sum(ratios))
            ax.set_title(name, loc="left")
            values = [v for v in before + after if not np.isnan(v)]
            if values:
                ax.set_ylim(*loss_axis(values))
        axes[0][0].set_ylabel("held-out LM loss")
        handles = [
            Patch(color="#d5d9e0", label="before (starting checkpoint)"),
            Patch(color="#5b6475", label="after (the arm's colour)"),
        ]
        fig.legend(handles=handles, loc="lower right", ncol=2, fontsize=9, bbox_to_anchor=(1.0, 1.0))
    return _png(fig)


def overlap(inspect_dir: str | None) -> tuple[bytes | None, Similarity | None]:
    """The heatmap PNG and the record (similarity.json) of an inspect directory; (None, None) without one."""
    if not inspect_dir:
        return None, None
    image, record = None, None
    png = os.path.join(inspect_dir, "overlap.png")
    if os.path.isfile(png):
        with open(png, "rb") as f:
            image = f.read()
    if os.path.isfile(os.path.join(inspect_dir, Similarity.FILE)):
        record = Similarity.load(inspect_dir)
    if image is None and record is None:
        logger.warning("%s: no overlap.png or similarity.json; the report leaves vocabulary overlap out", inspect_dir)
    return image, record
