"""The report's content, section by section, as a list of blocks (heading, paragraph, table, figure, ...) that
`render.py` turns into Markdown and HTML."""

from __future__ import annotations

import json

from ..errors import UsageError
from ..evidence import ALPHA
from ..inspect import RELEVANT_SHARE
from ..records import ExperimentSummary, FinetuneResults, LabelIssues, PretrainMetrics, Similarity, StageSummary
from ..scoring import mean_std_percent
from .figures import forgetting_rows
from .statistics import count, duration, loss, p_text, points


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
        parts += knowledge_notes(stage.metrics)
    selection = stage.selection
    if selection is not None and selection.strategy:
        k = f" (k={selection.k})" if selection.k else ""
        parts.append(f"{selection.strategy}{k}: {count(selection.selected_pool_documents)} documents")
    parts += [duration(stage.wall_seconds), f"`{stage.dir or 'n/a'}`"]
    return " · ".join(p for p in parts if p)


def knowledge_notes(metrics: PretrainMetrics | None) -> list[str]:
    """What a pretraining stage appended (--glossary, --triples) and added (--ngram_adapter)."""
    notes = []
    k = metrics.knowledge if metrics else None
    if k:
        notes.append(f"knowledge: {count(k['terms_expanded'])} terms ({count(k['distinct_terms'])} distinct) expanded "
                     f"in {count(k['examples_with_terms'])} of {count(k['examples'])} examples")  # fmt: skip
    n = metrics.ngram_adapter if metrics else None
    if n:
        notes.append(f"n-gram adapter: {count(n['ngrams'])} n-grams, {n['layers']} layers")
    return notes


def settings_yaml(settings: dict) -> str:
    import yaml

    plain = json.loads(json.dumps(settings, default=str))  # tuples, paths, ... as YAML's safe types
    return yaml.safe_dump(plain, sort_keys=False, allow_unicode=True, default_flow_style=False).rstrip()


def build(summary: ExperimentSummary, comparison: dict, figures: dict, similarity, bottom: float, curves=()):
    """The report as blocks, section by section, from the summary, the comparison, the figures (by file name) and
    the sections of the curves (`curves.py`)."""
    return [
        *headline(summary, comparison),
        *results_section(summary, comparison, bottom),
        *curves,
        *pretraining_section(figures),
        *forgetting_section(summary),
        *overlap_section(similarity, figures),
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
    cards += [("p (Holm)", *p), ("wall time", wall, f"{len(runs)} arms")]
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
                (f"{points(s['delta'])}{'*' if s['significant'] else ''} (p={p_text(s)})", tone),
            ]
        rows.append(cells)
    header = ["arm"] + [h for m in metrics for h in (m, "Δ")]
    axis = f" The y axis starts at {bottom:.0f}%, not 0." if bottom > 0 else ""
    return [
        {"kind": "h2", "text": "Results", "id": "results"},
        caption(
            f"{split} {metric} (the primary metric), percent: mean ± sample std over seeds; Δ and its 95% confidence "
            f"interval over seeds in points against **{runs[0]['name']}**; p corrected by Holm's method for the "
            f"{sum('check' not in r for r in runs[1:])} arms compared with it (design checks aside); significant at "
            f"corrected p < {ALPHA}."
        ),
        primary,
        *sweep_caption(summary),
        *evidence_section(comparison),
        caption(f"Every metric on {split}, percent; * p < {ALPHA}. {comparison['method']}."),
        table(header, rows, "l" + "r" * (len(header) - 1)),
        {
            "kind": "figure",
            "file": "results.png",
            "caption": f"{split} {metric} per arm: bar = mean, whiskers = ± std, dots = seeds; dashed line = the "
            f"baseline's mean; above each bar its Δ in points (* significant).{axis}",
        },
    ]


def sweep_caption(summary: ExperimentSummary) -> list[dict]:
    """The fine-tuning rate every arm used, and how it was chosen (--learning_rate auto)."""
    sweep = summary.learning_rate_sweep
    if not sweep:
        return []
    tried = ", ".join(f"{c['learning_rate']:g}: {100 * c['dev'][sweep['metric']]:.1f}" for c in sweep["candidates"])
    return [
        caption(
            f"Every arm fine-tuned at learning rate **{sweep['chosen']:g}**, chosen on dev: the baseline model's "
            f"first seed ({sweep['seed']}) at each candidate rate scored dev {sweep['metric']} {tried}."
        )
    ]


def evidence_section(comparison: dict) -> list[dict]:
    """How sure each Δ is: the test over seeds (paired or not, and why), raw and corrected p, Wilcoxon's p, the
    interval over test examples, and what the design could detect."""
    metric, runs = comparison["primary_metric"], comparison["runs"]
    rows = []
    for row in runs[1:]:
        s = row["metrics"][metric]
        test = s.get("test", "n/a") + (f" ({s['pairing_note']})" if s.get("pairing_note") else "")
        raw = "n/a" if s["p_value"] is None else f"{s['p_value']:.2g}"
        wilcoxon = "n/a" if s.get("wilcoxon_p") is None else f"{s['wilcoxon_p']:.2g}"
        boot = s.get("bootstrap")
        over_test = f"[{points(boot['low'])}, {points(boot['high'])}]" if boot else "n/a"
        power = s.get("power") or {}
        detectable = f"{100 * power['detectable']:.1f}" if power.get("detectable") is not None else "n/a"
        needed = str(power["seeds_needed"]) if power.get("seeds_needed") is not None else "n/a"
        rows.append([row["name"], test, points(s["delta"]), raw, p_text(s), wilcoxon, over_test, detectable, needed])
    header = ["arm", "test over seeds", "Δ", "p", "Holm p", "Wilcoxon p", "95% CI over test examples",
              "detectable Δ", "seeds for this Δ"]  # fmt: skip
    return [
        caption(
            f"How sure: the test over seeds (paired when every seed drew the same training examples in both arms), "
            f"its p raw and Holm-corrected, Wilcoxon's signed-rank p (for 3 seeds it cannot go below 0.25), the 95% "
            f"interval of Δ over the test examples (paired bootstrap, 1,000 resamples), the smallest Δ the design "
            f"detects with 80% power at α = {ALPHA} from the observed spread, and the seeds per arm that would detect "
            f"the observed Δ."
        ),
        table(header, rows, "llrrrrrrr"),
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
            "is better. A fall on the domain is adaptation; a rise on general text is forgetting. Every checkpoint "
            "is measured alike (`dontstop lm-eval --warm_up_head always`: the same held-out blocks, and every "
            "MLM head, a new one or the one pretraining trained, first trained alone the same steps on the same "
            "documents), so these losses differ from the pretraining stages' own evaluations in the Arms section, "
            "which use fewer blocks and the head as trained so far. An arm's head has still had more training "
            "than the starting model's: an identity arm (learning rate 0) shows how much that alone lowers the "
            "loss."
        ),
        table(["arm", "held-out set", "before", "after", "change"], rows, "llrrr"),
        *relevance(summary),
        {
            "kind": "figure",
            "file": "forgetting.png",
            "caption": "Held-out LM loss before (grey) and after (the arm's colour) each arm, with the change. Each "
            "panel's y axis starts just below its lowest loss, not at 0, so that small changes show.",
        },
    ]


def relevance(summary: ExperimentSummary) -> list[dict]:
    """For each arm that lowered the held-out domain loss: did the task's text gain with it? If it gained less than
    `RELEVANT_SHARE` of it, the domain corpus taught the domain, not the task."""
    lines = []
    for arm in summary.arms:
        domain, task = arm.lm_eval.get("domain"), arm.lm_eval.get("task")
        if not domain or not task or None in (domain.before, domain.after, task.before, task.after):
            continue
        gain, task_gain = domain.before - domain.after, task.before - task.after
        if gain <= 0:
            continue
        said = f"**{arm.name}** lowered the held-out domain loss by {gain:.2f} nats, the task's by {task_gain:.2f}"
        if task_gain < RELEVANT_SHARE * gain:
            said += ": the domain corpus is far from your task: select from it (kNN-TAPT) or find a closer one"
        lines.append(said + ".")
    return [{"kind": "list", "items": lines}] if lines else []


def overlap_section(similarity: Similarity | None, figures: dict[str, bytes]) -> list[dict]:
    """The vocabulary-overlap matrix of `dontstop inspect`, its heatmap and its recommendation; nothing without
    them."""
    matrix = similarity.overlap if similarity else None
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
    if similarity and similarity.recommendation:
        blocks += [
            caption("What `dontstop inspect` recommended from it, before any training:"),
            {"kind": "list", "items": [line.removeprefix("- ") for line in similarity.recommendation]},
        ]
    return blocks


def finetune_methods(directory: str) -> str:
    """The training methods of a fine-tuning run (UDA, PGD, ...), from its results.json; "—" for plain fine-tuning."""
    try:
        methods = FinetuneResults.load(directory).methods
    except UsageError:
        return "?"
    return ", ".join(methods or {}) or "—"


def compute_section(summary: ExperimentSummary) -> list[dict]:
    rows = []
    baseline = next((a.compute.finetune_seconds for a in summary.arms if a.name == summary.baseline), None)
    for arm in summary.arms:
        c = arm.compute
        cached = ", ".join(stage.name for stage in arm.stages if stage.cached) or "—"
        pretraining = duration(c.pretrain_seconds) if arm.stages else "—"
        # What the arm's fine-tuning cost against the baseline's: its methods' extra passes, rounds and evaluations.
        ratio = f"{c.finetune_seconds / baseline:.2f}x" if baseline else "—"
        rows.append(
            [
                arm.name,
                count(c.pretrain_steps),
                count(c.pretrain_tokens),
                pretraining,
                duration(c.finetune_seconds),
                cached,
                finetune_methods(arm.finetune_dir),
                ratio,
            ]
        )
    wall = duration(summary.wall_seconds)
    estimate = ""
    if summary.estimated_seconds is not None and summary.run_seconds:
        estimate = (f" This run took {duration(summary.run_seconds)}, estimated before its first stage at "
                    f"{duration(summary.estimated_seconds)}.")  # fmt: skip
    header = ["arm", "pretrain steps", "pretrain tokens", "pretraining", "fine-tuning", "cached"]
    return [
        {"kind": "h2", "text": "Compute", "id": "compute"},
        caption(
            f"Per arm, over its chain of stages; cached stages were reused from an earlier run; fine-tuning time "
            f"also as a multiple of the baseline's. The whole experiment: {wall}.{estimate}"
        ),
        table([*header, "fine-tuning methods", "fine-tuning × baseline"], rows, "lrrrrllr"),
    ]


def arms_section(summary: ExperimentSummary, comparison: dict) -> list[dict]:
    """Each arm's chain: its stages in order, then the fine-tuning, each with its directory."""
    seeds = {row["name"]: len(row["seeds"]) for row in comparison["runs"]}
    blocks = [
        {"kind": "h2", "text": "Arms", "id": "arms"},
        caption(
            "Held-out losses here are each pretraining stage's own evaluations, from after its head warm-up "
            "where it had one (before it the loss is a random head's); the Forgetting section measures every "
            "checkpoint alike."
        ),  # fmt: skip
    ]
    for arm in summary.arms:
        items = [stage_line(stage) for stage in arm.stages]
        if arm.clean_dir:
            items.append(clean_line(arm.clean_dir))
        finetune = duration(arm.compute.finetune_seconds)
        items.append(f"**fine-tune** · {seeds[arm.name]} seeds · {finetune} · `{arm.finetune_dir}`")
        head = f"**{arm.name}**" + (f": {arm.description}" if arm.description else "")
        blocks += [{"kind": "p", "text": head}, {"kind": "list", "items": items}]
    return blocks


def clean_line(directory: str) -> str:
    """The clean stage an arm's training file came from: how many examples it flagged, and what became of them."""
    record = LabelIssues.load(directory)
    cleaned = record.cleaned or {}
    done = f"{count(cleaned.get('removed'))} removed, {count(cleaned.get('relabelled'))} relabelled"
    return (
        f"**clean** ({record.mode}, {record.folds} folds) · {count(record.issues)} of "
        f"{count(record.train_file['examples'])} training labels flagged ({done}) · `{directory}`"
    )


def settings_section(summary: ExperimentSummary) -> list[dict]:
    blocks = [{"kind": "h2", "text": "Settings", "id": "settings"}]
    if not summary.settings:
        return blocks + [{"kind": "p", "text": "No settings were recorded."}]
    source = f" (from `{summary.config_path}`)" if summary.config_path else ""
    return blocks + [
        caption(f"The resolved experiment configuration{source}."),
        {"kind": "pre", "text": settings_yaml(summary.settings)},
    ]
