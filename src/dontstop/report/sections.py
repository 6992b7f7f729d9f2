"""The report's content, section by section, as a list of blocks (heading, paragraph, table, figure, ...) that
`render.py` turns into Markdown and HTML."""

from __future__ import annotations

import json

from ..compare import ALPHA, METHOD
from ..records import ExperimentSummary, PretrainMetrics, StageSummary
from ..scoring import mean_std_percent
from .figures import forgetting_rows
from .statistics import count, duration, loss, p_phrase, p_text, points


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


def caption(text: str) -> dict:
    return {"kind": "caption", "text": text}


def stage_losses(metrics: PretrainMetrics | None) -> str:
    """A pretrain stage's held-out losses, as "held-out loss validation 3.210 → 2.700"; from the loss after the head
    warm-up where there was one (before it the loss measures a random head)."""
    if metrics is None:
        return ""
    start = metrics.losses("start")
    parts = []
    for name, value in metrics.losses("after").items():
        was = start.get(name)
        parts.append(f"{name} {was:.3f} → {value:.3f}" if was is not None else f"{name} {value:.3f}")
    return "held-out loss " + ", ".join(parts) if parts else ""


def stage_line(stage: StageSummary) -> str:
    parts = [f"**{stage.name}** ({stage.kind}{', cached' if stage.cached else ''})"]
    if stage.kind == "pretrain":
        parts += [f"{count(stage.steps)} steps", f"{count(stage.tokens)} tokens", stage_losses(stage.metrics)]
    selection = stage.selection
    if selection is not None and selection.strategy:
        k = f" (k={selection.k})" if selection.k else ""
        parts.append(f"{selection.strategy}{k}: {count(selection.selected_pool_documents)} documents")
    parts += [duration(stage.wall_seconds), f"`{stage.dir or 'n/a'}`"]
    return " · ".join(p for p in parts if p)


def settings_yaml(settings: dict) -> str:
    import yaml

    plain = json.loads(json.dumps(settings, default=str))  # tuples, paths, ... as YAML's safe types
    return yaml.safe_dump(plain, sort_keys=False, allow_unicode=True, default_flow_style=False).rstrip()


def build(summary: ExperimentSummary, comparison: dict, figures: dict[str, bytes], overlap_matrix, bottom: float):
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


def headline(summary: ExperimentSummary, comparison: dict) -> list[dict]:
    """Title, one line of facts, the verdict and four numbers."""
    metric, split, runs = comparison["primary_metric"], comparison["split"], comparison["runs"]
    found = comparison["verdict"]
    base = runs[0]
    best = next(row for row in runs if row["name"] == found["best"])
    seeds = "/".join(map(str, sorted({len(row["seeds"]) for row in runs})))
    wall = duration(summary.wall_seconds)
    facts = f"model `{summary.model or 'n/a'}` · {len(runs)} arms · {seeds} seeds each · {split} split"
    facts += f" · wall time {wall}" + (f" · config `{summary.config_path}`" if summary.config_path else "")
    s = best["metrics"][metric]
    if best is base:
        gain, p = ("—", "the baseline is best"), ("—", "")
    else:
        gain = (f"{points(s['delta'])} pts", f"over {base['name']}")
        p = (p_text(s), "significant" if s["significant"] else "not significant")
    cards = [("best arm", best["name"], f"{split} {metric} {mean_std_percent(s)}"), ("gain", *gain)]
    cards += [("Welch's p", *p), ("wall time", wall, f"{len(runs)} arms")]
    return [
        {"kind": "title", "text": f"Experiment {summary.name}".strip()},
        {"kind": "meta", "text": facts},
        {"kind": "verdict", "text": found["text"], "tone": found["tone"]},
        {"kind": "cards", "cards": cards},
    ]


def results_section(summary: ExperimentSummary, comparison: dict, bottom: float) -> list[dict]:
    """The primary metric in detail (Δ, its confidence interval, p), every metric in brief, and the bar chart."""
    metric, split, runs = comparison["primary_metric"], comparison["split"], comparison["runs"]
    descriptions = {arm.name: arm.description for arm in summary.arms}
    best = comparison["verdict"]["best"]
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


def forgetting_section(summary: ExperimentSummary) -> list[dict]:
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


def compute_section(summary: ExperimentSummary) -> list[dict]:
    rows = []
    for arm in summary.arms:
        c = arm.compute
        cached = ", ".join(stage.name for stage in arm.stages if stage.cached) or "—"
        pretraining = duration(c.pretrain_seconds) if arm.stages else "—"
        rows.append(
            [
                arm.name,
                count(c.pretrain_steps),
                count(c.pretrain_tokens),
                pretraining,
                duration(c.finetune_seconds),
                cached,
            ]
        )
    wall = duration(summary.wall_seconds)
    return [
        {"kind": "h2", "text": "Compute", "id": "compute"},
        caption(
            f"Per arm, over its chain of stages; cached stages were reused from an earlier run. The whole "
            f"experiment: {wall}."
        ),
        table(["arm", "pretrain steps", "pretrain tokens", "pretraining", "fine-tuning", "cached"], rows, "lrrrrl"),
    ]


def arms_section(summary: ExperimentSummary, comparison: dict) -> list[dict]:
    """Each arm's chain: its stages in order, then the fine-tuning, each with its directory."""
    seeds = {row["name"]: len(row["seeds"]) for row in comparison["runs"]}
    blocks = [{"kind": "h2", "text": "Arms", "id": "arms"}]
    for arm in summary.arms:
        items = [stage_line(stage) for stage in arm.stages]
        finetune = duration(arm.compute.finetune_seconds)
        items.append(f"**fine-tune** · {seeds[arm.name]} seeds · {finetune} · `{arm.finetune_dir}`")
        head = f"**{arm.name}**" + (f": {arm.description}" if arm.description else "")
        blocks += [{"kind": "p", "text": head}, {"kind": "list", "items": items}]
    return blocks


def settings_section(summary: ExperimentSummary) -> list[dict]:
    blocks = [{"kind": "h2", "text": "Settings", "id": "settings"}]
    if not summary.settings:
        return blocks + [{"kind": "p", "text": "No settings were recorded."}]
    source = f" (from `{summary.config_path}`)" if summary.config_path else ""
    return blocks + [
        caption(f"The resolved experiment configuration{source}."),
        {"kind": "pre", "text": settings_yaml(summary.settings)},
    ]
