"""The report of a `dontstop run` experiment: `report.md`, a self-contained `report.html` and the figures beside them.

    from dontstop.report import write_report
    write_report(summary, "runs/demo/report")  # summary: what experiment.py gathered, see below

In order: a verdict (the best arm on the primary metric and whether it beats the baseline significantly, in plain
words), the results table (mean ± std over seeds, Δ in points against the baseline and Welch's p, all computed by
`compare.py`), a bar chart of the primary metric, the pretraining loss curves, the held-out LM loss before and after
each arm (forgetting), the vocabulary overlap of the corpora (from `dontstop inspect`), compute per arm, each arm's
chain of stages with its directories, and every setting. The content is built once as a list of blocks (heading,
paragraph, table, figure, ...) and rendered twice: Markdown for the repository, HTML (inline CSS, PNGs as base64 data
URIs, nothing fetched) for people.

The summary: {"name", "config_path", "settings", "model", "split", "primary_metric" (optional), "baseline",
"wall_seconds", "inspect_dir", "arms": [{"name", "description", "finetune_dir", "stages": [{"name", "kind", "dir",
"cached", "metrics" (pretrain's metrics.json) or "selection" (select's selection.json), "steps", "tokens",
"wall_seconds"}], "lm_eval": {held-out set: {"before", "after"}}, "compute": {"pretrain_steps", "pretrain_tokens",
"pretrain_seconds", "finetune_seconds", "cached_seconds"}}]}, the baseline first. Missing optional keys are shown as
n/a or leave their section out.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import os
import re

from .compare import ALPHA, METHOD, available_metrics, check_comparable, compare_runs, load_run
from .errors import UsageError
from .outputs import staged
from .scoring import PRIMARY_METRIC, mean_std_percent

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


# --- numbers as words -------------------------------------------------------------------------------------------


def points(delta: float) -> str:
    return f"{round(100 * delta, 1) + 0.0:+.1f}"  # + 0.0: no "-0.0" for a tie


def p_text(stats: dict) -> str:
    p = stats.get("p_value")
    return "n/a" if p is None else ("<0.001" if p < 0.001 else f"{p:.2g}")


def p_phrase(stats: dict) -> str:
    """For sentences: p = 0.03, or p < 0.001."""
    text = p_text(stats)
    return f"p < {text[1:]}" if text.startswith("<") else f"p = {text}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, s = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def loss(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def count(n: int | None) -> str:
    return "n/a" if n is None else f"{n:,}"


# --- the statistics (all of them from compare.py) ---------------------------------------------------------------


def baseline_first(summary: dict) -> dict:
    """The summary with its baseline arm (named by "baseline", else the first) first, as compare.py expects."""
    arms = summary.get("arms") or []
    if not arms:
        raise UsageError("the experiment has no arms to report")
    name = summary.get("baseline") or arms[0]["name"]
    ordered = sorted(arms, key=lambda arm: arm["name"] != name)  # stable: the others keep their order
    if ordered[0]["name"] != name:
        raise UsageError(f"baseline {name!r}: no arm of that name (arms: {', '.join(a['name'] for a in arms)})")
    return {**summary, "arms": ordered}


def compare_arms(summary: dict) -> dict:
    """`compare.compare_runs` over the arms' fine-tuning runs, the primary metric first and named in the result."""
    runs = [load_run(f"{arm['name']}={arm['finetune_dir']}") for arm in summary["arms"]]
    split = summary.get("split") or ("test" if runs[0].has_split("test") else "dev")
    check_comparable(runs, split)
    metrics = available_metrics(runs, split)
    primary = summary.get("primary_metric")
    if primary and primary not in metrics:
        raise UsageError(f"primary metric {primary}: not reported on {split} (available: {', '.join(metrics)})")
    if not primary:
        # results.json names the metric that chose the best epoch; "loss" is no score, so fall back to the task's.
        base = runs[0].results
        candidates = [base.get("primary_metric"), PRIMARY_METRIC.get(base["task_type"]), *metrics]
        primary = next(m for m in candidates if m in metrics)
    comparison = compare_runs(runs, split, [primary] + [m for m in metrics if m != primary])
    comparison["primary_metric"] = primary
    return comparison


def verdict(comparison: dict) -> dict:
    """The headline: which arm is best on the primary metric and whether it beats the baseline significantly.
    Returns {"text" (Markdown), "tone" ("win", "unclear" or "none"), "best" (arm name)}."""
    metric, runs = comparison["primary_metric"], comparison["runs"]
    label = f"{comparison['split']} {metric}"
    base, others = runs[0], runs[1:]

    def stats(row: dict) -> dict:
        return row["metrics"][metric]

    if not others:
        return {
            "best": base["name"],
            "tone": "none",
            "text": f"Only the baseline ran: {label} {mean_std_percent(stats(base))}.",
        }
    best = max(runs, key=lambda row: stats(row)["mean"])  # the first of equals, so a tie goes to the baseline
    if best is base:
        closest = max(others, key=lambda row: stats(row)["mean"])
        s = stats(closest)
        how = "significantly" if s["significant"] else f"not significantly ({p_phrase(s)})"
        text = (
            f"No arm beats the baseline on {label}: **{base['name']}** scores {mean_std_percent(stats(base))}, and "
            f"the closest arm, **{closest['name']}**, is {points(s['delta'])} points from it, {how}."
        )
        tone = "none"
    else:
        s = stats(best)
        seeds = f"{len(base['seeds'])} vs {len(best['seeds'])} seeds"
        text = (
            f"**{best['name']}** is best on {label} ({mean_std_percent(s)}), {points(s['delta'])} points over "
            f"**{base['name']}**"
        )
        if s["significant"]:
            text += f": a significant gain (Welch's {p_phrase(s)}, {seeds})."
            tone = "win"
        elif s["p_value"] is None:
            text += f", but significance could not be tested ({s['p_note']})."
            tone = "unclear"
        else:
            text += f", but the gain is not significant ({p_phrase(s)}, {seeds}): it may be seed noise."
            tone = "unclear"
    rest = [row for row in others if row is not best and stats(row)["significant"]]
    for word, sign in (("above", 1), ("below", -1)):
        named = [f"{row['name']} ({points(stats(row)['delta'])})" for row in rest if sign * stats(row)["delta"] > 0]
        if named:
            text += f" Also significantly {word} the baseline: {', '.join(named)}."
    return {"best": best["name"], "tone": tone, "text": text}


def results_table(summary: dict, comparison: dict | None = None) -> str:
    """The terminal's table (Markdown): per arm the primary metric's mean ± std, Δ and p, then the other metrics'
    means, and the verdict under it."""
    comparison = comparison or compare_arms(baseline_first(summary))
    primary, others = comparison["primary_metric"], comparison["metrics"][1:]
    header = ["arm", "seeds", f"{primary}", "Δ", "p", *others]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "--:|" * (len(header) - 1)]
    for i, row in enumerate(comparison["runs"]):
        s = row["metrics"][primary]
        delta = ("baseline", "") if i == 0 else (points(s["delta"]) + ("*" if s["significant"] else ""), p_text(s))
        cells = [row["name"], str(len(row["seeds"])), mean_std_percent(s), *delta]
        lines.append("| " + " | ".join(cells + [mean_std_percent(row["metrics"][m]) for m in others]) + " |")
    plain = verdict(comparison)["text"].replace("**", "")
    lines += [
        "",
        f"{comparison['split']} split, percent, mean ± std over seeds; Δ in points against {comparison['baseline']}, "
        f"Welch's t-test, * p < {ALPHA}.",
        f"Verdict: {plain}",
    ]
    return "\n".join(lines)


# --- figures ----------------------------------------------------------------------------------------------------


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


def arm_colors(summary: dict) -> dict[str, str]:
    """One colour per arm, the same in every figure; the baseline grey."""
    names = [arm["name"] for arm in summary["arms"]]
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


def pretrain_lines(summary: dict) -> list[dict]:
    """One entry per distinct pretraining stage (a stage shared by arms, the same directory, once): the arms using
    it, the step it starts at in its arm's chain, its head warm-up and its training and held-out loss points."""
    lines: list[dict] = []
    seen: dict[str, dict] = {}
    for arm in summary["arms"]:
        offset = 0
        for stage in arm.get("stages") or []:
            if stage.get("kind") != "pretrain":
                continue
            metrics = stage.get("metrics") or {}
            history = [e for e in metrics.get("history") or [] if isinstance(e, dict) and "step" in e]
            key = stage.get("dir") or f"{arm['name']}/{stage['name']}"
            if key in seen:
                seen[key]["arms"].append(arm["name"])
            else:
                evals: dict[str, list] = {}
                for e in history:
                    for k, v in e.items():
                        if k.startswith("eval_") and k.endswith("_loss") and isinstance(v, (int, float)):
                            evals.setdefault(k[len("eval_") : -len("_loss")] or "eval", []).append(
                                (offset + e["step"], v)
                            )
                seen[key] = {
                    "stage": stage["name"],
                    "arms": [arm["name"]],
                    "offset": offset,
                    "warmup": (metrics.get("head_warmup") or {}).get("steps") or 0,
                    "train": [(offset + e["step"], e["loss"]) for e in history if "loss" in e],
                    "eval": evals,
                }
                lines.append(seen[key])
            offset += stage.get("steps") or max((e["step"] for e in history), default=0)
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


def forgetting_rows(summary: dict) -> list[tuple[str, str, float | None, float | None]]:
    """(arm, held-out set, loss before, loss after) for every arm that measured its held-out sets."""
    return [
        (arm["name"], name, (v or {}).get("before"), (v or {}).get("after"))
        for arm in summary["arms"]
        for name, v in (arm.get("lm_eval") or {}).items()
    ]


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
            ax.margins(y=0.12)
        axes[0][0].set_ylabel("held-out LM loss")
        handles = [
            Patch(color="#d5d9e0", label="before (starting checkpoint)"),
            Patch(color="#5b6475", label="after (the arm's colour)"),
        ]
        fig.legend(handles=handles, loc="lower right", ncol=2, fontsize=9, bbox_to_anchor=(1.0, 1.0))
    return _png(fig)


def overlap(inspect_dir: str | None) -> tuple[bytes | None, dict | None]:
    """The heatmap PNG and the overlap entry of similarity.json ({"names", "matrix", "description"}) of an
    inspect directory; (None, None) without one."""
    if not inspect_dir:
        return None, None
    image, matrix = None, None
    png = os.path.join(inspect_dir, "overlap.png")
    if os.path.isfile(png):
        with open(png, "rb") as f:
            image = f.read()
    similarity = os.path.join(inspect_dir, "similarity.json")
    if os.path.isfile(similarity):
        with open(similarity, encoding="utf-8") as f:
            matrix = json.load(f).get("overlap")
    if image is None and matrix is None:
        logger.warning("%s: no overlap.png or similarity.json; the report leaves vocabulary overlap out", inspect_dir)
    return image, matrix


# --- the content, as blocks -------------------------------------------------------------------------------------


def table(header: list[str], rows: list[list], align: str, row_classes: list[str] | None = None, compact=False):
    """A table block; a cell is text or (text, css class); `align` is one letter per column (l or r); a compact
    table is only as wide as its cells."""
    return {
        "kind": "table",
        "header": header,
        "rows": rows,
        "align": align,
        "row_classes": row_classes,
        "compact": compact,
    }


def stage_losses(metrics: dict) -> str:
    """A pretrain stage's held-out losses, as "held-out loss validation 3.210 → 2.700"; from the loss after the head
    warm-up where there was one (before it the loss measures a random head)."""
    start = (metrics.get("head_warmup") or {}).get("eval_after_warmup") or metrics.get("before") or {}
    parts = []
    for key, value in (metrics.get("after") or {}).items():
        if key.startswith("eval_") and key.endswith("_loss") and isinstance(value, (int, float)):
            name, was = key[len("eval_") : -len("_loss")] or "eval", start.get(key)
            parts.append(f"{name} {was:.3f} → {value:.3f}" if was is not None else f"{name} {value:.3f}")
    return "held-out loss " + ", ".join(parts) if parts else ""


def stage_line(stage: dict) -> str:
    kind = stage.get("kind", "stage")
    parts = [f"**{stage['name']}** ({kind}{', cached' if stage.get('cached') else ''})"]
    if kind == "pretrain":
        parts += [f"{count(stage.get('steps'))} steps", f"{count(stage.get('tokens'))} tokens"]
        parts.append(stage_losses(stage.get("metrics") or {}))
    selection = stage.get("selection") or {}
    if selection.get("strategy"):
        k = f" (k={selection['k']})" if selection.get("k") else ""
        parts.append(f"{selection['strategy']}{k}: {count(selection.get('selected_pool_documents'))} documents")
    parts += [duration(stage.get("wall_seconds")), f"`{stage.get('dir', 'n/a')}`"]
    return " · ".join(p for p in parts if p)


def settings_yaml(settings: dict) -> str:
    import yaml

    plain = json.loads(json.dumps(settings, default=str))  # tuples, paths, ... as YAML's safe types
    return yaml.safe_dump(plain, sort_keys=False, allow_unicode=True, default_flow_style=False).rstrip()


def build(summary: dict, comparison: dict, figures: dict[str, bytes], overlap_matrix: dict | None, bottom: float):
    """The report as blocks, section by section, from the summary, the comparison and the figures (by file name)."""
    return [
        *headline(summary, comparison),
        *results_section(summary, comparison, bottom),
        *pretraining_section(figures),
        *forgetting_section(summary),
        *overlap_section(overlap_matrix, figures),
        *compute_section(summary),
        *arms_section(summary, comparison),
        *settings_section(summary),
    ]


def caption(text: str) -> dict:
    return {"kind": "caption", "text": text}


def headline(summary: dict, comparison: dict) -> list[dict]:
    """Title, one line of facts, the verdict and four numbers."""
    metric, split, runs = comparison["primary_metric"], comparison["split"], comparison["runs"]
    found = verdict(comparison)
    base = runs[0]
    best = next(row for row in runs if row["name"] == found["best"])
    seeds = "/".join(map(str, sorted({len(row["seeds"]) for row in runs})))
    wall = duration(summary.get("wall_seconds"))
    facts = f"model `{summary.get('model', 'n/a')}` · {len(runs)} arms · {seeds} seeds each · {split} split"
    facts += f" · wall time {wall}" + (f" · config `{summary['config_path']}`" if summary.get("config_path") else "")
    s = best["metrics"][metric]
    if best is base:
        gain, p = ("—", "the baseline is best"), ("—", "")
    else:
        gain = (f"{points(s['delta'])} pts", f"over {base['name']}")
        p = (p_text(s), "significant" if s["significant"] else "not significant")
    cards = [("best arm", best["name"], f"{split} {metric} {mean_std_percent(s)}"), ("gain", *gain)]
    cards += [("Welch's p", *p), ("wall time", wall, f"{len(runs)} arms")]
    return [
        {"kind": "title", "text": f"Experiment {summary.get('name', '')}".strip()},
        {"kind": "meta", "text": facts},
        {"kind": "verdict", "text": found["text"], "tone": found["tone"]},
        {"kind": "cards", "cards": cards},
    ]


def results_section(summary: dict, comparison: dict, bottom: float) -> list[dict]:
    """The primary metric in detail (Δ, its confidence interval, p), every metric in brief, and the bar chart."""
    metric, split, runs = comparison["primary_metric"], comparison["split"], comparison["runs"]
    descriptions = {arm["name"]: arm.get("description", "") for arm in summary["arms"]}
    best = verdict(comparison)["best"]
    rows, classes = [], []
    for i, row in enumerate(runs):
        s = row["metrics"][metric]
        if i == 0:
            delta, ci, p, sig = "baseline", "", "", ""
        else:
            delta = (points(s["delta"]), ("pos" if s["delta"] > 0 else "neg") if s["significant"] else "")
            ci = "n/a" if s["ci_low"] is None else f"[{points(s['ci_low'])}, {points(s['ci_high'])}]"
            p, sig = p_text(s), ("yes", "sig") if s["significant"] else "no"
        cells = [row["name"], descriptions.get(row["name"], ""), str(len(row["seeds"])), mean_std_percent(s)]
        rows.append([*cells, delta, ci, p, sig])
        classes.append("best" if row["name"] == best else "")
    header = ["arm", "what it does", "seeds", metric, "Δ", "95% CI", "p", "significant"]
    primary = table(header, rows, "llrrrrrl", row_classes=classes)

    metrics, rows = comparison["metrics"], []
    for i, row in enumerate(runs):
        cells = [row["name"]]
        for m in metrics:
            s = row["metrics"][m]
            if i == 0:
                cells += [mean_std_percent(s), ""]
                continue
            tone = ("pos" if s["delta"] > 0 else "neg") if s["significant"] else "muted"
            cells += [
                mean_std_percent(s),
                (f"{points(s['delta'])}{'*' if s['significant'] else ''} ({p_phrase(s).replace(' ', '')})", tone),
            ]
        rows.append(cells)
    header = ["arm"] + [h for m in metrics for h in (m, "Δ")]
    axis = f" The y axis starts at {bottom:.0f}%, not 0." if bottom > 0 else ""
    return [
        {"kind": "h2", "text": "Results", "id": "results"},
        caption(
            f"{split} {metric} (the primary metric), percent: mean ± sample std over seeds; Δ and its 95% confidence "
            f"interval in points against **{runs[0]['name']}**; significant at p < {ALPHA}."
        ),
        primary,
        caption(f"Every metric on {split}, percent; * p < {ALPHA}. {METHOD}."),
        table(header, rows, "l" + "r" * (len(header) - 1)),
        {
            "kind": "figure",
            "file": "results.png",
            "caption": f"{split} {metric} per arm: bar = mean, whiskers = ± std, dots = seeds; dashed line = the "
            f"baseline's mean; above each bar its Δ in points (* significant).{axis}",
        },
    ]


def pretraining_section(figures: dict[str, bytes]) -> list[dict]:
    blocks = [{"kind": "h2", "text": "Pretraining", "id": "pretraining"}]
    if "loss_curves.png" not in figures:
        return blocks + [{"kind": "p", "text": "No pretraining stage logged a loss history."}]
    text = (
        "Loss of every pretraining stage (legend: the stage, then the arms that use it; a stage shared by arms is "
        "drawn once). A stage that continues another starts at the step where that one ended. Shaded: the head "
        "warm-up, where only the new MLM head trains."
    )
    return blocks + [{"kind": "figure", "file": "loss_curves.png", "caption": text}]


def forgetting_section(summary: dict) -> list[dict]:
    """Held-out LM loss before and after each arm: adaptation on the domain, forgetting on general text."""
    blocks = [{"kind": "h2", "text": "Forgetting", "id": "forgetting"}]
    found = forgetting_rows(summary)
    if not found:
        return blocks + [{"kind": "p", "text": "No arm measured its held-out LM loss."}]
    rows = []
    for arm, name, before, after in found:
        change = (
            "n/a"
            if before is None or after is None
            else (f"{after - before:+.3f}", "neg" if after > before else "pos")
        )
        rows.append([arm, name, loss(before), loss(after), change])
    return blocks + [
        caption(
            "Held-out LM loss of the starting checkpoint (before) and of each arm's final checkpoint (after); lower "
            "is better. A fall on the domain is adaptation; a rise on general text is forgetting."
        ),
        table(["arm", "held-out set", "before", "after", "change"], rows, "llrrr"),
        {
            "kind": "figure",
            "file": "forgetting.png",
            "caption": "Held-out LM loss before (grey) and after (the arm's colour) each arm, with the change.",
        },
    ]


def overlap_section(matrix: dict | None, figures: dict[str, bytes]) -> list[dict]:
    """The vocabulary-overlap matrix of `dontstop inspect` and its heatmap; nothing without them."""
    if not matrix and "overlap.png" not in figures:
        return []
    blocks = [{"kind": "h2", "text": "Vocabulary overlap", "id": "overlap"}]
    if matrix:
        names = matrix["names"]
        rows = [[f"**{n}**"] + [f"{v:.1f}" for v in matrix["matrix"][i]] for i, n in enumerate(names)]
        blocks += [
            caption(f"Vocabulary overlap of the corpora: {matrix.get('description', 'percent')}."),
            table([""] + names, rows, "l" + "r" * len(names), compact=True),
        ]
    if "overlap.png" in figures:
        text = (
            "Vocabulary overlap (`dontstop inspect`). The less a domain shares with the text the model was trained "
            "on, the more DAPT tends to pay (Gururangan et al., 2020)."
        )
        blocks.append({"kind": "figure", "file": "overlap.png", "caption": text})
    return blocks


def compute_section(summary: dict) -> list[dict]:
    rows = []
    for arm in summary["arms"]:
        c = arm.get("compute") or {}
        cached = ", ".join(stage["name"] for stage in arm.get("stages") or [] if stage.get("cached")) or "—"
        steps, tokens = count(c.get("pretrain_steps")), count(c.get("pretrain_tokens"))
        pretraining = duration(c.get("pretrain_seconds")) if arm.get("stages") else "—"
        rows.append([arm["name"], steps, tokens, pretraining, duration(c.get("finetune_seconds")), cached])
    wall = duration(summary.get("wall_seconds"))
    return [
        {"kind": "h2", "text": "Compute", "id": "compute"},
        caption(
            f"Per arm, over its chain of stages; cached stages were reused from an earlier run. The whole "
            f"experiment: {wall}."
        ),
        table(["arm", "pretrain steps", "pretrain tokens", "pretraining", "fine-tuning", "cached"], rows, "lrrrrl"),
    ]


def arms_section(summary: dict, comparison: dict) -> list[dict]:
    """Each arm's chain: its stages in order, then the fine-tuning, each with its directory."""
    seeds = {row["name"]: len(row["seeds"]) for row in comparison["runs"]}
    blocks = [{"kind": "h2", "text": "Arms", "id": "arms"}]
    for arm in summary["arms"]:
        items = [stage_line(stage) for stage in arm.get("stages") or []]
        finetune = duration((arm.get("compute") or {}).get("finetune_seconds"))
        items.append(f"**fine-tune** · {seeds[arm['name']]} seeds · {finetune} · `{arm['finetune_dir']}`")
        head = f"**{arm['name']}**" + (f": {arm['description']}" if arm.get("description") else "")
        blocks += [{"kind": "p", "text": head}, {"kind": "list", "items": items}]
    return blocks


def settings_section(summary: dict) -> list[dict]:
    blocks = [{"kind": "h2", "text": "Settings", "id": "settings"}]
    if not summary.get("settings"):
        return blocks + [{"kind": "p", "text": "No settings were recorded."}]
    source = f" (from `{summary['config_path']}`)" if summary.get("config_path") else ""
    return blocks + [
        caption(f"The resolved experiment configuration{source}."),
        {"kind": "pre", "text": settings_yaml(summary["settings"])},
    ]


# --- rendering --------------------------------------------------------------------------------------------------


def _text(cell) -> str:
    return cell[0] if isinstance(cell, tuple) else cell


def render_markdown(blocks: list[dict]) -> str:
    lines: list[str] = []
    figure = 0
    for b in blocks:
        kind = b["kind"]
        if kind == "title":
            lines += [f"# {b['text']}", ""]
        elif kind == "h2":
            lines += [f"## {b['text']}", ""]
        elif kind in ("meta", "p", "caption"):
            lines += [b["text"], ""]
        elif kind == "verdict":
            lines += [f"> **Verdict:** {b['text']}", ""]
        elif kind == "cards":
            lines += [" · ".join(f"{label}: **{value}**" for label, value, _ in b["cards"]), ""]
        elif kind == "table":
            lines.append("| " + " | ".join(b["header"]) + " |")
            lines.append("|" + "|".join("--:" if a == "r" else "---" for a in b["align"]) + "|")
            for row in b["rows"]:
                lines.append("| " + " | ".join(_text(c).replace("|", "\\|") for c in row) + " |")
            lines.append("")
        elif kind == "figure":
            figure += 1
            lines += [f"![figure {figure}]({b['file']})", "", f"**Figure {figure}.** {b['caption']}", ""]
        elif kind == "list":
            lines += [f"{i}. {item}" for i, item in enumerate(b["items"], start=1)] + [""]
        elif kind == "pre":
            lines += ["```yaml", b["text"], "```", ""]
    return "\n".join(lines)


def inline(text: str) -> str:
    """Escaped HTML with the Markdown we write inline: `code` and **bold**."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)


def png_css_width(data: bytes) -> int | None:
    """The width in CSS pixels (96 per inch) of a PNG, from its pixel width and the resolution in its pHYs chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    width = int.from_bytes(data[16:20], "big")
    at = data.find(b"pHYs")
    if at > 0 and data[at + 12] == 1:  # unit 1: pixels per metre
        per_inch = int.from_bytes(data[at + 4 : at + 8], "big") * 0.0254
        if per_inch > 0:
            return round(width * 96 / per_inch)
    return width


def _class(*names: str) -> str:
    joined = " ".join(n for n in names if n)
    return f' class="{joined}"' if joined else ""


def html_table(b: dict) -> str:
    numeric = ["num" if a == "r" else "" for a in b["align"]]
    head = "".join(f"<th{_class(n)}>{html.escape(h)}</th>" for h, n in zip(b["header"], numeric, strict=True))
    rows = []
    for row, row_class in zip(b["rows"], b["row_classes"] or [""] * len(b["rows"]), strict=True):
        cells = []
        for cell, num in zip(row, numeric, strict=True):
            text, extra = cell if isinstance(cell, tuple) else (cell, "")
            cells.append(f"<td{_class(num, extra)}>{inline(text)}</td>")
        rows.append(f"<tr{_class(row_class)}>{''.join(cells)}</tr>")
    table = f"<table{_class('compact' if b['compact'] else '')}><thead><tr>{head}</tr></thead>"
    return f'<div class="table">{table}<tbody>{"".join(rows)}</tbody></table></div>'


def render_html(blocks: list[dict], figures: dict[str, bytes]) -> str:
    body: list[str] = []
    nav = [f'<a href="#{b["id"]}">{html.escape(b["text"])}</a>' for b in blocks if b["kind"] == "h2"]
    figure = 0
    for b in blocks:
        kind = b["kind"]
        if kind == "title":
            body.append(f"<header><h1>{inline(b['text'])}</h1>")
        elif kind == "meta":
            body.append(f'<p class="meta">{inline(b["text"])}</p><nav>{" ".join(nav)}</nav></header>')
        elif kind == "verdict":
            body.append(f'<div class="verdict {b["tone"]}"><span>Verdict</span>{inline(b["text"])}</div>')
        elif kind == "cards":
            cards = "".join(
                f'<div class="card"><div class="label">{html.escape(label)}</div>'
                f'<div class="value">{html.escape(value)}</div><div class="sub">{html.escape(sub)}</div></div>'
                for label, value, sub in b["cards"]
            )
            body.append(f'<div class="cards">{cards}</div>')
        elif kind == "h2":
            body.append(f'<h2 id="{b["id"]}">{html.escape(b["text"])}</h2>')
        elif kind == "p":
            body.append(f"<p>{inline(b['text'])}</p>")
        elif kind == "caption":
            body.append(f'<p class="caption">{inline(b["text"])}</p>')
        elif kind == "table":
            body.append(html_table(b))
        elif kind == "figure":
            figure += 1
            data = figures[b["file"]]
            width = png_css_width(data)
            size = f' width="{width}"' if width else ""
            uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
            body.append(
                f'<figure><img src="{uri}" alt="figure {figure}: {html.escape(b["file"])}"{size}>'
                f"<figcaption><strong>Figure {figure}.</strong> {inline(b['caption'])}</figcaption></figure>"
            )
        elif kind == "list":
            body.append("<ol>" + "".join(f"<li>{inline(item)}</li>" for item in b["items"]) + "</ol>")
        elif kind == "pre":
            body.append(f"<pre><code>{html.escape(b['text'], quote=False)}</code></pre>")
    title = next((b["text"] for b in blocks if b["kind"] == "title"), "dontstop report")
    return PAGE.format(title=html.escape(title), css=CSS, body="\n".join(body))


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="dontstop">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<main>
{body}
<footer>Written by <code>dontstop run</code>. Every number comes from the runs' <code>results.json</code> and
<code>metrics.json</code>; the figures are the PNGs beside this file.</footer>
</main>
</body>
</html>
"""

CSS = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #e3e6ec; --soft: #f6f7f9; --accent: #2f6fdf;
        --win: #1f7a4d; --warn: #8a5a00; --loss: #b3261e; }
* { box-sizing: border-box; }
html { background: var(--soft); }
body { margin: 0; color: var(--ink); font: 15px/1.55 -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto,
       "Helvetica Neue", Arial, "Noto Sans", sans-serif; -webkit-font-smoothing: antialiased; }
main { max-width: 1040px; margin: 0 auto; padding: 44px 48px 56px; background: #fff; min-height: 100vh; }
h1 { font-size: 30px; line-height: 1.2; margin: 0 0 6px; letter-spacing: -0.015em; }
h2 { font-size: 20px; margin: 44px 0 12px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
.meta { color: var(--muted); font-size: 14px; margin: 0 0 10px; }
nav { font-size: 13px; }
nav a { color: var(--accent); text-decoration: none; margin-right: 14px; }
nav a:hover { text-decoration: underline; }
.verdict { margin: 26px 0 18px; padding: 16px 20px; border-radius: 8px; border-left: 6px solid var(--muted);
           background: var(--soft); font-size: 17.5px; line-height: 1.5; }
.verdict span { display: block; font-size: 12px; font-weight: 700; letter-spacing: .08em; text-transform: uppercase;
                color: var(--muted); margin-bottom: 2px; }
.verdict.win { background: #eaf6ef; border-color: var(--win); }
.verdict.win span { color: var(--win); }
.verdict.unclear { background: #fdf5e4; border-color: #d49a1f; }
.verdict.unclear span { color: var(--warn); }
.verdict.none { background: #fbeceb; border-color: var(--loss); }
.verdict.none span { color: var(--loss); }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 12px; margin-bottom: 8px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
.card .label { font-size: 11.5px; font-weight: 600; letter-spacing: .06em; text-transform: uppercase;
               color: var(--muted); }
.card .value { font-size: 24px; font-weight: 650; font-variant-numeric: tabular-nums; margin: 2px 0;
               overflow-wrap: anywhere; }
.card .sub { font-size: 12.5px; color: var(--muted); }
.caption { color: var(--muted); font-size: 13.5px; margin: 18px 0 6px; }
.table { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 14px; font-variant-numeric: tabular-nums; }
table.compact { width: auto; min-width: 50%; }
th, td { padding: 7px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { font-size: 11.5px; font-weight: 650; letter-spacing: .05em; text-transform: uppercase; color: var(--muted);
     border-bottom: 2px solid #cfd4dc; white-space: nowrap; }
.num { text-align: right; white-space: nowrap; }
tr.best td { background: #f2f6fe; font-weight: 600; }
.pos { color: var(--win); }
.neg { color: var(--loss); }
.sig { color: var(--win); font-weight: 650; }
.muted { color: var(--muted); }
figure { margin: 22px 0 10px; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { color: var(--muted); font-size: 13.5px; margin-top: 8px; }
figcaption strong { color: var(--ink); }
ol { padding-left: 22px; margin: 4px 0 16px; }
li { margin: 3px 0; font-size: 14px; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: .88em;
       background: var(--soft); padding: 1px 4px; border-radius: 4px; overflow-wrap: anywhere; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px;
      font-size: 12.5px; line-height: 1.45; overflow-x: auto; }
pre code { background: none; padding: 0; font-size: inherit; }
footer { margin-top: 48px; padding-top: 12px; border-top: 1px solid var(--line); color: var(--muted);
         font-size: 12.5px; }
@media (max-width: 720px) { main { padding: 24px 16px; } .cards { grid-template-columns: repeat(2, 1fr); } }
@media print {
  html, main { background: #fff; }
  body { font-size: 10.5pt; }
  main { max-width: none; padding: 0; }
  nav { display: none; }
  h2 { break-after: avoid; }
  figure, table, .verdict, .cards, .card { break-inside: avoid; }
  .caption { break-after: avoid; }
  pre { white-space: pre-wrap; overflow-wrap: anywhere; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""


# --- writing ----------------------------------------------------------------------------------------------------


def write_report(summary: dict, output_dir: str) -> dict:
    """Write report.md, report.html and the figures into `output_dir` (all or nothing). Returns {"html", "markdown",
    "paths" (every file by name), "comparison" (`compare.compare_runs`'s, plus "primary_metric"), "verdict"}; pass
    the comparison on to `results_table` to skip computing it again."""
    summary = baseline_first(summary)
    comparison = compare_arms(summary)
    colors = arm_colors(summary)
    figures: dict[str, bytes] = {}
    figures["results.png"], bottom = results_chart(comparison, colors)
    curves = loss_chart(pretrain_lines(summary))
    if curves is not None:
        figures["loss_curves.png"] = curves
    forgetting = forgetting_chart(forgetting_rows(summary), colors)
    if forgetting is not None:
        figures["forgetting.png"] = forgetting
    heatmap, matrix = overlap(summary.get("inspect_dir"))
    if heatmap is not None:
        figures["overlap.png"] = heatmap
    blocks = build(summary, comparison, figures, matrix, bottom)
    markdown, page = render_markdown(blocks), render_html(blocks, figures)
    with staged(output_dir) as path:
        for name, data in figures.items():
            with open(path(name), "wb") as f:
                f.write(data)
        with open(path("report.md"), "w", encoding="utf-8") as f:
            f.write(markdown)
        with open(path("report.html"), "w", encoding="utf-8") as f:
            f.write(page)
    paths = {name: os.path.join(output_dir, name) for name in ["report.md", "report.html", *figures]}
    logger.info("Report: %s", paths["report.html"])
    return {
        "html": paths["report.html"],
        "markdown": paths["report.md"],
        "paths": paths,
        "comparison": comparison,
        "verdict": verdict(comparison),
    }
