"""The summary of an experiment (`experiment.json`): each arm's chain of stages with their records, its fine-tuning,
its held-out LM loss before and after, and its compute; everything the report is drawn from."""

from __future__ import annotations

import os

from ..records import (
    ArmSummary,
    BudgetPoint,
    Compute,
    ExperimentSummary,
    HeldOutChange,
    LearningRateSweep,
    LMEvaluation,
    PretrainMetrics,
    Selection,
    SizePoint,
    Snapshot,
    StageSummary,
)
from .plan import Arm, Plan


def stage_summary(stage, root: str, marker: dict) -> StageSummary:
    directory = stage.directory(root)
    entry = StageSummary(
        name=stage.label,
        kind=stage.kind,
        dir=directory,
        cached=not marker.get("ran_now", False),
        wall_seconds=float(marker.get("wall_seconds", 0.0)),
    )
    if stage.kind == "pretrain":
        entry.metrics = PretrainMetrics.load(directory)
        entry.steps, entry.tokens = entry.metrics.steps, entry.metrics.tokens
    elif stage.kind == "select":
        entry.selection = Selection.load(directory)
    return entry


def arm_summary(arm: Arm, root: str, done: dict, base: LMEvaluation) -> ArmSummary:
    stages = [stage_summary(stage, root, done.get(stage.key, {})) for stage in arm.chain]
    compute = Compute(
        pretrain_steps=sum(s.steps or 0 for s in stages),
        pretrain_tokens=sum(s.tokens or 0 for s in stages),
        pretrain_seconds=sum(s.wall_seconds or 0.0 for s in stages),
        cached_seconds=sum(s.wall_seconds or 0.0 for s in stages if s.cached),
        finetune_seconds=float(done.get(arm.finetune.key, {}).get("wall_seconds", 0.0)),
    )
    lm_eval = {}
    if arm.lm_eval is not None:
        after = LMEvaluation.load(arm.lm_eval.directory(root))
        lm_eval = {name: HeldOutChange(base.loss(name), loss.lm_loss) for name, loss in after.losses.items()}
    return ArmSummary(
        name=arm.name,
        description=arm.description,
        finetune_dir=arm.finetune.directory(root),
        stages=stages,
        lm_eval=lm_eval,
        compute=compute,
        weights=arm.weights,
        budget=[budget_point(arm, stages, fraction, f, e, root) for fraction, f, e in arm.budget],
        sizes=[SizePoint(size, stage.directory(root)) for size, stage in arm.sizes],
        check=arm.check,
        clean_dir=arm.clean.directory(root) if arm.clean is not None else None,
    )


def budget_point(arm: Arm, stages: list[StageSummary], fraction: float, finetune, lm_eval, root: str) -> BudgetPoint:
    """A snapshot of the arm's last pretraining stage, placed along the chain (the earlier stages' steps first)."""
    last = max(i for i, stage in enumerate(arm.chain) if stage.kind == "pretrain")
    before = stages[:last]
    snapshot = Snapshot.load(os.path.join(arm.chain[last].directory(root), f"snapshot-{fraction:g}"))
    losses = LMEvaluation.load(lm_eval.directory(root)).losses
    return BudgetPoint(
        fraction=fraction,
        finetune_dir=finetune.directory(root),
        steps=sum(s.steps or 0 for s in before) + snapshot.step,
        tokens=sum(s.tokens or 0 for s in before) + (snapshot.tokens or 0),
        lm_eval={name: loss.lm_loss for name, loss in losses.items()},
    )


def summarize(plan: Plan, done: dict, wall_seconds: float, estimated: float | None = None) -> ExperimentSummary:
    root = plan.output_dir
    base = LMEvaluation.load(plan.base_eval.directory(root))
    has_test = bool((plan.settings.get("task") or {}).get("test"))
    summary = ExperimentSummary(
        name=plan.name,
        config_path=plan.config_path,
        settings=plan.settings,
        model=plan.settings.get("model") or "pretrained by the base stage",
        split=plan.report.get("split", "test" if has_test else "dev"),
        primary_metric=plan.report.get("metric"),
        baseline=plan.arms[0].name,
        # The experiment's compute, every stage counted once, whether it ran now or earlier; and this run's.
        wall_seconds=round(sum(float(m.get("wall_seconds", 0.0)) for m in done.values()), 1),
        run_seconds=round(wall_seconds, 1),
        estimated_seconds=round(estimated, 1) if estimated is not None else None,
        inspect_dir=plan.inspect.directory(root) if plan.inspect is not None else None,
        base_lm_eval=base.losses,
        arms=[arm_summary(arm, root, done, base) for arm in plan.arms],
    )
    sweep = next((s for s in plan.stages if s.kind == "lr-sweep"), None)
    if sweep is not None:
        summary.learning_rate_sweep = LearningRateSweep.load(sweep.directory(root)).to_dict()
    summary.stages_run = [
        {"kind": s.kind, "label": s.label, "dir": s.directory(root), "wall_seconds": done[s.key]["wall_seconds"]}
        for s in plan.stages
        if done[s.key].get("ran_now")
    ]
    return summary
