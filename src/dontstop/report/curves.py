"""The report's curves: the task metric and the held-out domain loss against pretraining steps (arms with
`checkpoints:`, the answer to "how many steps are enough"), and the gain over the baseline against the number of
labels (`finetune: {train_limits: [...]}`, the answer to "at how many labels does adaptation stop paying")."""

from __future__ import annotations

from ..compare import compare_runs, load_run
from ..records import ArmSummary, ExperimentSummary, FinetuneResults
from ..scoring import mean_std_percent
from .figures import PLOT_STYLE, _png, _pyplot
from .sections import caption, table
from .statistics import count, loss, points


def budget_points(summary: ExperimentSummary, arm: ArmSummary, split: str, metric: str) -> list[dict]:
    """The arm's curve: its start (the baseline's fine-tuning, when the arm starts from the same model), each
    snapshot, and its end; each with steps, tokens, the metric's mean and std and the held-out domain loss."""
    baseline = summary.arms[0]
    starts_at_model = arm.stages and arm.stages[0].kind in ("pretrain", "select") and not summary.settings.get("base")
    points_ = []
    if starts_at_model:
        base_loss = summary.base_lm_eval.get("domain")
        points_.append((0, 0, baseline.finetune_dir, base_loss.lm_loss if base_loss else None))
    points_ += [(p.steps, p.tokens, p.finetune_dir, p.lm_eval.get("domain")) for p in arm.budget]
    end = arm.lm_eval.get("domain")
    points_.append((arm.compute.pretrain_steps, arm.compute.pretrain_tokens, arm.finetune_dir, end and end.after))
    curve = []
    for steps, tokens, directory, domain_loss in points_:
        values = FinetuneResults.load(directory).values(split, metric)
        stats = compare_runs([load_run(baseline.finetune_dir), load_run(directory)], split, [metric])
        curve.append(
            {"steps": steps, "tokens": tokens, "values": values, "domain_loss": domain_loss,
             "against_baseline": stats["runs"][1]["metrics"][metric]}
        )  # fmt: skip
    return curve


def budget_chart(curves: dict[str, list[dict]], split: str, metric: str, colors: dict[str, str]) -> bytes:
    import numpy as np

    plt = _pyplot()
    with plt.rc_context({**PLOT_STYLE, "axes.grid.axis": "both"}):
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
        for name, curve in curves.items():
            steps = [p["steps"] for p in curve]
            means = np.array([100 * np.mean(p["values"]) for p in curve])
            stds = np.array([100 * (np.std(p["values"], ddof=1) if len(p["values"]) > 1 else 0) for p in curve])
            left.plot(steps, means, marker="o", color=colors[name], label=name)
            left.fill_between(steps, means - stds, means + stds, color=colors[name], alpha=0.15, linewidth=0)
            losses = [(p["steps"], p["domain_loss"]) for p in curve if p["domain_loss"] is not None]
            if losses:
                right.plot(*zip(*losses, strict=True), marker="o", color=colors[name], label=name)
        left.set_xlabel("pretraining steps")
        left.set_ylabel(f"{split} {metric} (%)")
        left.set_title("task metric (mean ± std over seeds)", loc="left")
        right.set_xlabel("pretraining steps")
        right.set_ylabel("held-out domain LM loss")
        right.set_title("held-out domain loss", loc="left")
        left.legend(fontsize=8.5)
    return _png(fig)


def budget_section(curves: dict[str, list[dict]], split: str, metric: str) -> list[dict]:
    rows = []
    for name, curve in curves.items():
        for p in curve:
            s = p["against_baseline"]
            delta = (
                "—"
                if not p["steps"]
                else f"{points(s['delta'])} (p={s['p_value']:.2g})"
                if s["p_value"]
                else points(s["delta"])
            )
            values = {"mean": sum(p["values"]) / len(p["values"]), "std": s["std"]}
            rows.append(
                [name, count(p["steps"]), count(p["tokens"]), mean_std_percent(values), delta, loss(p["domain_loss"])]
            )
    return [
        {"kind": "h2", "text": "Pretraining budget", "id": "budget"},
        caption(
            f"How many steps are enough: {split} {metric} (mean ± std over seeds, percent) and the held-out domain "
            "loss of each arm's model saved at fractions of its pretraining (`checkpoints:`), fine-tuned as the arm; "
            "steps 0 is the model before any pretraining. Δ against the baseline, paired by seed where the draws "
            "match."
        ),
        table(["arm", "pretraining steps", "tokens", metric, "Δ", "held-out domain loss"], rows, "lrrrrr"),
        {"kind": "figure", "file": "budget.png", "caption": "The task metric (left, band: ± std over seeds) and the "
         "held-out domain loss (right) against the pretraining steps along each arm's chain."},
    ]  # fmt: skip


def label_points(summary: ExperimentSummary, split: str, metric: str) -> dict[str, list[dict]]:
    """{arm: [{size, examples, delta, ci_low, ci_high, p}]}: each arm against the baseline at each training size."""
    baseline = summary.arms[0]
    base_runs = {p.size: p.finetune_dir for p in baseline.sizes}
    curves: dict[str, list[dict]] = {}
    for arm in summary.arms[1:]:
        for point in arm.sizes:
            base = load_run(base_runs[point.size])
            stats = compare_runs([base, load_run(point.finetune_dir)], split, [metric])["runs"][1]["metrics"][metric]
            examples = base.results.seeds[0].train_examples
            curves.setdefault(arm.name, []).append({"size": point.size, "examples": examples, **stats})
    return curves


def labels_chart(curves: dict[str, list[dict]], split: str, metric: str, colors: dict[str, str]) -> bytes:
    plt = _pyplot()
    with plt.rc_context({**PLOT_STYLE, "axes.grid.axis": "both"}):
        fig, ax = plt.subplots(figsize=(7.5, 3.8))
        for i, (name, curve) in enumerate(curves.items()):
            curve = sorted(curve, key=lambda p: p["examples"] or 0)
            x = [(p["examples"] or 0) * (1 + 0.03 * i) for p in curve]  # a little apart, so whiskers do not hide
            y = [100 * p["delta"] for p in curve]
            low = [100 * (p["delta"] - p["ci_low"]) if p["ci_low"] is not None else 0 for p in curve]
            high = [100 * (p["ci_high"] - p["delta"]) if p["ci_high"] is not None else 0 for p in curve]
            ax.errorbar(x, y, yerr=[low, high], marker="o", capsize=4, color=colors[name], label=name)
        ax.axhline(0, color="#5b6475", linestyle="--", linewidth=0.9)
        ax.set_xscale("log")
        ax.set_xlabel("labelled training examples")
        ax.set_ylabel(f"Δ {split} {metric} (points)")
        ax.legend(fontsize=8.5)
    return _png(fig)


def labels_section(curves: dict[str, list[dict]], split: str, metric: str) -> list[dict]:
    rows = []
    for name, curve in curves.items():
        for p in curve:
            ci = "n/a" if p["ci_low"] is None else f"[{points(p['ci_low'])}, {points(p['ci_high'])}]"
            p_value = "n/a" if p["p_value"] is None else f"{p['p_value']:.2g}"
            rows.append([name, p["size"], count(p["examples"]), points(p["delta"]), ci, p_value, p["test"]])
    return [
        {"kind": "h2", "text": "Labels", "id": "labels"},
        caption(
            f"At how many labels adaptation stops paying: each arm's gain over the baseline in {split} {metric} "
            "(points) when both are fine-tuned on the same number of labelled examples (`finetune: {train_limits}`), "
            "with its 95% confidence interval over seeds."
        ),
        table(["arm", "size", "examples", "Δ", "95% CI", "p", "test"], rows, "llrrrrl"),
        {"kind": "figure", "file": "labels.png", "caption": "Gain over the baseline against the number of labelled "
         "training examples (log scale), with 95% confidence intervals over seeds."},
    ]  # fmt: skip


def curve_sections(summary: ExperimentSummary, comparison: dict, colors: dict[str, str], figures: dict) -> list[dict]:
    """The budget and label sections (and their figures, added to `figures`), for the curves the experiment has."""
    split, metric = comparison["split"], comparison["primary_metric"]
    blocks = []
    budget = {arm.name: budget_points(summary, arm, split, metric) for arm in summary.arms if arm.budget}
    if budget:
        figures["budget.png"] = budget_chart(budget, split, metric, colors)
        blocks += budget_section(budget, split, metric)
    labels = label_points(summary, split, metric) if summary.arms[0].sizes else {}
    if labels:
        figures["labels.png"] = labels_chart(labels, split, metric, colors)
        blocks += labels_section(labels, split, metric)
    return blocks
