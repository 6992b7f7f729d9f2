"""The records of `dontstop run`: `experiment.json`, everything its report is drawn from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .base import Record
from .stages import CorpusLoss, PretrainMetrics, Selection


@dataclass
class StageSummary(Record):
    """One stage of an arm's chain, as the report shows it."""

    name: str
    kind: str
    dir: str | None = None
    cached: bool = False
    wall_seconds: float | None = None
    metrics: PretrainMetrics | None = None  # a pretraining stage's
    selection: Selection | None = None  # a selection stage's
    steps: int | None = None
    tokens: int | None = None


@dataclass
class Compute(Record):
    pretrain_steps: int = 0
    pretrain_tokens: int = 0
    pretrain_seconds: float = 0.0
    finetune_seconds: float = 0.0
    cached_seconds: float = 0.0


@dataclass
class HeldOutChange(Record):
    before: float | None = None
    after: float | None = None


@dataclass
class BudgetPoint(Record):
    """An arm's pretraining stopped at a fraction of its budget (a snapshot), fine-tuned and evaluated as the arm."""

    fraction: float
    finetune_dir: str
    steps: int | None = None  # pretraining steps along the arm's chain
    tokens: int | None = None
    lm_eval: dict[str, float | None] = field(default_factory=dict)  # held-out set -> loss


@dataclass
class SizePoint(Record):
    """An arm fine-tuned on another number of labelled examples."""

    size: str  # all, N or N/class
    finetune_dir: str


@dataclass
class ArmSummary(Record):
    name: str
    finetune_dir: str
    description: str = ""
    stages: list[StageSummary] = field(default_factory=list)
    lm_eval: dict[str, HeldOutChange] = field(default_factory=dict)  # held-out set -> loss before and after
    compute: Compute = field(default_factory=Compute)
    weights: str = "raw"
    budget: list[BudgetPoint] = field(default_factory=list)  # snapshots before the end of its pretraining
    sizes: list[SizePoint] = field(default_factory=list)
    check: str | None = None  # a design check ("identity"): kept out of the verdict and the correction
    clean_dir: str | None = None  # the clean stage whose cleaned training file it fine-tuned on


@dataclass
class ExperimentSummary(Record):
    """`experiment.json` of `dontstop run`: everything the report is drawn from."""

    FILE: ClassVar[str] = "experiment.json"
    OMIT_NONE: ClassVar[bool] = True

    name: str
    arms: list[ArmSummary]
    config_path: str | None = None
    settings: dict = field(default_factory=dict)
    model: str | None = None
    split: str | None = None
    primary_metric: str | None = None
    baseline: str | None = None
    wall_seconds: float | None = None
    run_seconds: float | None = None
    estimated_seconds: float | None = None  # this run's time as estimated before its first stage (eta.py)
    learning_rate_sweep: dict | None = None  # the experiment's LearningRateSweep, when fine-tuning rate was auto
    inspect_dir: str | None = None
    base_lm_eval: dict[str, CorpusLoss] = field(default_factory=dict)
    stages_run: list[dict] = field(default_factory=list)

    def arm(self, name: str) -> ArmSummary:
        return next(arm for arm in self.arms if arm.name == name)
