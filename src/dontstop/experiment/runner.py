"""Running a plan: every stage not finished earlier, in order, into its own directory, then the summary and the report.

One resume protocol for every stage: a stage is finished when its directory holds the marker with its key, written
last. An unfinished directory is handed back to the stage's module (`resume_options(directory)`): the options it
returns continue the work there (a fine-tuning stage keeps its finished seeds, a pretraining stage resumes from its
last checkpoint); None, or a stage without the function, means start over, and the directory is cleared first.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

from ..config import run_stage as run
from ..config import stage_module
from ..errors import UsageError
from ..logs import silenced
from ..outputs import owned, write_json
from .eta import Estimate, calibrate
from .plan import Plan
from .stages import Ref, Stage, resolve
from .summary import summarize

MARKER = "dontstop_stage.json"


def load_marker(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return {}


def finished(stage: Stage, root: str) -> dict | None:
    """The stage's marker, if it finished with these exact inputs and settings."""
    marker = load_marker(os.path.join(stage.directory(root), MARKER))
    return marker if marker.get("key") == stage.key else None


def run_stage(stage: Stage, root: str) -> None:
    """Run one stage into its directory (see the module docstring)."""
    out = stage.directory(root)
    module = stage_module(stage.kind)
    overrides = {}
    if os.path.isdir(out):
        resume = getattr(module, "resume_options", None)
        overrides = resume(out) if resume is not None else None
        if overrides is None:
            shutil.rmtree(out)
            overrides = {}
    if stage.kind == "pretrain":
        overrides.setdefault("data_cache_dir", os.path.join(root, "cache"))
    run(module, stage.arguments(root, **overrides))


class Progress:
    """One line per stage: which arm and stage, how far the experiment is, elapsed and estimated time (eta.py)."""

    def __init__(self, stages: list[Stage], owners: dict[str, list[str]]):
        self.stages = stages
        self.owners = owners
        self.started = time.time()
        self.estimate = Estimate(None)
        self.at_start: float | None = None  # the estimate made before the first stage, for the record

    def start(self, plan: Plan, done: dict) -> None:
        """Price this machine with the experiment's model (eta.calibrate), learn from the stages finished earlier,
        and say the estimate of the whole run before its first stage."""
        pending = [s for s in plan.stages if s.key not in done]
        if not pending:
            return
        shape = next((s for s in plan.stages if s.kind == "pretrain"), None)
        options = shape.options if shape is not None else {}
        model = plan.base_eval.options["model_name_or_path"]
        model = model.stage if isinstance(model, Ref) else model
        batch = int(options.get("per_device_train_batch_size", 8))
        self.estimate = Estimate(calibrate(model, batch, int(options.get("max_seq_length") or 128)))
        for stage in plan.stages:
            if stage.key in done:
                self.learn(stage, float(done[stage.key].get("wall_seconds", 0.0)))
        self.at_start = self.estimate.remaining(pending)
        print(f"Estimated time: about {clock(self.at_start)} for {len(pending)} stages", file=sys.stderr, flush=True)

    def learn(self, stage: Stage, seconds: float) -> None:
        self.estimate.learn(stage, seconds)

    def announce(self, i: int, stage: Stage, pending: list[Stage]) -> None:
        elapsed = time.time() - self.started
        left = self.estimate.remaining(pending)
        estimate = f", about {clock(left)} left" if left is not None else ""
        arms = ", ".join(self.owners.get(stage.key, [])) or "all arms"
        line = f"[{i}/{len(self.stages)}] {stage.kind} {stage.label} (for {arms}) · elapsed {clock(elapsed)}{estimate}"
        print(f"\033[1m▶ {line}\033[0m" if sys.stderr.isatty() else f"▶ {line}", file=sys.stderr, flush=True)


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 60}:{seconds % 60:02d}"


def check_output_root(root: str) -> None:
    """An experiment directory is ours to resume; any other non-empty directory is left alone."""
    if os.path.isfile(root):
        raise UsageError(f"output_dir {root} is a file")
    if os.path.isdir(root) and os.listdir(root) and not os.path.isdir(os.path.join(root, "stages")):
        raise UsageError(f"output_dir {root} is not empty and holds no experiment: choose another (--output_dir)")


def print_plan(plan: Plan, done: dict) -> None:
    lines = [f"Experiment {plan.name}: {len(plan.stages)} stages, {len(done)} done earlier"]
    for stage in plan.stages:
        state = "cached" if stage.key in done else "to run"
        lines.append(f"  {state:7} {stage.kind:9} {stage.label:14} {stage.directory(plan.output_dir)}")
    print("\n".join(lines), file=sys.stderr, flush=True)


def owners_of(plan: Plan) -> dict[str, list[str]]:
    """{stage key: the arms that use the stage}."""
    owners: dict[str, list[str]] = {}
    for arm in plan.arms:
        for stage in [*arm.chain, arm.clean, arm.finetune, arm.lm_eval]:
            if stage is not None:
                owners.setdefault(stage.key, []).append(arm.name)
    return owners


def run_experiment(plan: Plan | str, output_dir: str | None = None, only_plan: bool = False):
    """Run (or resume) the experiment: every stage not finished earlier, then `experiment.json` and the report.
    Returns the `ExperimentSummary` (None with `only_plan`, which prints the plan and runs nothing)."""
    from .plan import load_experiment

    plan = load_experiment(plan, output_dir) if isinstance(plan, str) else plan
    root = plan.output_dir
    progress = Progress(plan.stages, owners_of(plan))
    done = {}
    for stage in plan.stages:
        marker = finished(stage, root)
        if marker is not None:
            done[stage.key] = marker
    print_plan(plan, done)
    if only_plan:
        return None
    check_output_root(root)
    progress.start(plan, done)
    # Each fine-tuning stage's table of seeds goes unsaid: the experiment prints one table of every arm at its end.
    with owned(root, "output_dir"), silenced("dontstop.finetune.pipeline.table"):
        os.makedirs(root, exist_ok=True)
        write_json(os.path.join(root, "dontstop_config.json"), plan.settings)
        run_stages(plan, done, progress)
        summary = summarize(plan, done, time.time() - progress.started, progress.at_start)
        summary.save(root)
        from ..report import results_table, write_report

        written = write_report(summary, root)
    print("\n" + results_table(summary, written["comparison"]))
    print(f"\nReport: {written['html']} (and report.md beside it)")
    return summary


def run_stages(plan: Plan, done: dict, progress: Progress) -> None:
    """Every stage not in `done`, in order, each finished by its marker (added to `done`)."""
    root = plan.output_dir
    pending = [s for s in plan.stages if s.key not in done]
    for i, stage in enumerate(plan.stages, start=1):
        if stage.key in done:
            continue
        pending.remove(stage)
        progress.announce(i, stage, [stage, *pending])
        started = time.time()
        run_stage(stage, root)
        seconds = round(time.time() - started, 1)
        marker = {"key": stage.key, "kind": stage.kind, "label": stage.label, "wall_seconds": seconds}
        options = {k: resolve(v, root) for k, v in stage.options.items()}
        marker["options"] = json.loads(json.dumps(options, default=str))
        write_json(os.path.join(stage.directory(root), MARKER), marker)
        done[stage.key] = {**marker, "ran_now": True}
        progress.learn(stage, seconds)
