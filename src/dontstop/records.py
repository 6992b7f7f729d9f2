"""What each stage leaves behind, as typed records: one dataclass per output file, with `save` and `load`.

The report, the model cards and `dontstop run` read these records, never raw JSON, and every metric name that is
taken apart (the Trainer's `eval_<set>_<metric>` keys) is taken apart here. A record saves as the JSON it always
was, so output directories of earlier versions load; a file that is not such a record is one `UsageError` naming
the file and the key. A record also reads like that JSON (`metrics["after"]`), for scripts written against the files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass, field
from typing import ClassVar

from .errors import UsageError
from .outputs import write_json

EVAL_METRICS = ("loss", "perplexity", "accuracy", "tokens", "runtime")


def eval_key(key: str, prefix: str = "eval") -> tuple[str, str] | None:
    """("validation", "loss") for "eval_validation_loss" (the set "eval" for a bare "eval_loss"); None for a key of
    any other shape. With another `prefix`, the averaged weights' keys: "ema_eval_validation_loss"."""
    head = f"{prefix}_"
    if not key.startswith(head):
        return None
    rest = key[len(head) :]
    for metric in EVAL_METRICS:
        if rest == metric:
            return "eval", metric
        if rest.endswith(f"_{metric}"):
            return rest[: -len(metric) - 1], metric
    return None


def eval_values(metrics: dict | None, metric: str = "loss", prefix: str = "eval") -> dict[str, float]:
    """{held-out set: value} of one metric in a dict of evaluation results."""
    found = {}
    for key, value in (metrics or {}).items():
        parsed = eval_key(key, prefix)
        if parsed and parsed[1] == metric and isinstance(value, (int, float)):
            found[parsed[0]] = value
    return found


def eval_name(name: str, metric: str = "loss", prefix: str = "eval") -> str:
    """The key `eval_key` takes apart: eval_name("general") == "eval_general_loss"."""
    return f"{prefix}_{metric}" if name == "eval" else f"{prefix}_{name}_{metric}"


class Record:
    """Base of the records: from/to plain JSON values, strictly (an unknown or missing key is an error)."""

    FILE: ClassVar[str] = ""
    KEEP_UNKNOWN: ClassVar[bool] = False  # keep keys this version does not know, and write them back
    OMIT_NONE: ClassVar[bool] = False  # leave out of the JSON what was not recorded (as the file always did)

    def __getitem__(self, key: str):
        if key in self._names():
            return getattr(self, key)
        extra = getattr(self, "_extra", {})
        if key in extra:
            return extra[key]
        raise KeyError(key)

    def __contains__(self, key: str) -> bool:
        return (key in self._names() and getattr(self, key) is not None) or key in getattr(self, "_extra", {})

    @classmethod
    def _names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls, data, where: str = ""):
        where = where or cls.__name__
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise UsageError(f"{where}: expected a JSON object, got {type(data).__name__}")
        names = cls._names()
        unknown = sorted(set(data) - names)
        if unknown and not cls.KEEP_UNKNOWN:
            raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)} in a {cls.__name__}")
        missing = [
            f.name for f in dataclasses.fields(cls)
            if f.name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]  # fmt: skip
        if missing:
            raise UsageError(f"{where}: missing key(s) {', '.join(missing)} of a {cls.__name__}")
        hints = typing.get_type_hints(cls)
        values = {
            name: _convert(hints[name], value, f"{where}.{name}") for name, value in data.items() if name in names
        }
        record = cls(**values)
        if unknown:
            record._extra = {key: data[key] for key in unknown}
        return record

    def to_dict(self) -> dict:
        out = {
            f.name: _plain(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if not (self.OMIT_NONE and getattr(self, f.name) is None)
        }
        out.update(getattr(self, "_extra", {}))
        return out

    def save(self, directory: str) -> str:
        path = os.path.join(directory, self.FILE)
        write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str):
        """The record in `path`, a file or the directory holding `FILE`."""
        file = os.path.join(path, cls.FILE) if os.path.isdir(path) else path
        try:
            with open(file, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise UsageError(f"{file}: no such file") from None
        except json.JSONDecodeError as e:
            raise UsageError(f"{file}:{e.lineno}: invalid JSON ({e.msg})") from None
        return cls.from_dict(data, file)


def _is_record(hint) -> bool:
    return isinstance(hint, type) and issubclass(hint, Record)


def _convert(hint, value, where: str):
    """`value` with the records inside it built: a Record field, a list or dict of records, or an optional one."""
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return next((_convert(a, value, where) for a in args if _is_record(a) or typing.get_origin(a)), value)
    if _is_record(hint):
        return hint.from_dict(value, where)
    if origin is list and args and _is_record(args[0]):
        if not isinstance(value, list):
            raise UsageError(f"{where}: expected a list")
        return [args[0].from_dict(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict and len(args) == 2 and _is_record(args[1]):
        if not isinstance(value, dict):
            raise UsageError(f"{where}: expected a JSON object")
        return {k: args[1].from_dict(v, f"{where}.{k}") for k, v in value.items()}
    return value


def _plain(value):
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# --- pretraining ------------------------------------------------------------------------------------------------


@dataclass
class PretrainMetrics(Record):
    """`metrics.json` of `dontstop pretrain`: held-out evaluations before, during and after training."""

    FILE: ClassVar[str] = "metrics.json"
    OMIT_NONE: ClassVar[bool] = True

    objective: str
    max_seq_length: int | None = None
    before: dict | None = None  # {"eval_<set>_loss": ..., "eval_<set>_perplexity": ..., ...}
    train: dict = field(default_factory=dict)  # the Trainer's train() metrics
    replay: dict | None = None
    head_warmup: dict | None = None  # {"steps", "new_parameters", "eval_after_warmup"}
    new_embeddings_only: dict | None = None
    after: dict | None = None
    averaged: dict | None = None
    history: list[dict] = field(default_factory=list)  # the Trainer's log history
    wall_seconds: float | None = None
    adapter: dict | None = None
    # weights of the starting checkpoint the LM head does not use (BERT's pooler), saved with the model unchanged
    carried_weights: list[str] | None = None
    knowledge: dict | None = None  # --glossary/--triples: what was expanded (knowledge.expand.expansion_stats)
    ngram_adapter: dict | None = None  # --ngram_adapter: {"ngrams", "layers", "parameters", "frozen_model"}

    def losses(self, which: str = "after") -> dict[str, float]:
        """{held-out set: loss}: "before" training, "after" it, or at the "start" (after the head warm-up where there
        was one: before it the loss measures a random head)."""
        if which == "start":
            warm = (self.head_warmup or {}).get("eval_after_warmup")
            return eval_values(warm or self.before)
        return eval_values(getattr(self, which))

    @property
    def steps(self) -> int:
        return max([h.get("step", 0) for h in self.history] or [0])

    @property
    def tokens(self) -> int:
        return max([h.get("num_input_tokens_seen", 0) for h in self.history] or [0])

    @property
    def head_warmup_steps(self) -> int:
        return (self.head_warmup or {}).get("steps") or 0

    def train_curve(self) -> list[tuple[int, float]]:
        return [(h["step"], h["loss"]) for h in self.history if "step" in h and "loss" in h]

    def eval_curves(self) -> dict[str, list[tuple[int, float]]]:
        """{held-out set: [(step, loss)]} of every evaluation during training."""
        curves: dict[str, list] = {}
        for entry in self.history:
            for name, value in eval_values(entry).items():
                if "step" in entry:
                    curves.setdefault(name, []).append((entry["step"], value))
        return curves


@dataclass
class Snapshot(Record):
    """`snapshot.json` of a snapshot directory (`dontstop pretrain --snapshots`): when the model was saved."""

    FILE: ClassVar[str] = "snapshot.json"

    fraction: float
    step: int
    tokens: int | None = None


# --- fine-tuning ------------------------------------------------------------------------------------------------


@dataclass
class SeedResult(Record):
    """`seed-S/result.json`: one seed's best epoch, scored on dev and test."""

    FILE: ClassVar[str] = "result.json"
    OMIT_NONE: ClassVar[bool] = True
    KEEP_UNKNOWN: ClassVar[bool] = True  # a finished seed is reused as it was written

    seed: int | str
    dev: dict  # metric -> value in [0, 1]
    test: dict | None = None
    fingerprint: str | None = None
    best_epoch: float | None = None
    epochs_run: float | None = None
    steps: int | None = None
    train_examples: int | None = None
    draw: str | None = None  # fingerprint of the training examples drawn: runs with equal draws can be paired
    train_seconds: float | None = None
    history: list[dict] = field(default_factory=list)
    averaging: dict | None = None


@dataclass
class FinetuneResults(Record):
    """`results.json` of `dontstop finetune`: every seed, and the mean ± std over them."""

    FILE: ClassVar[str] = "results.json"

    task_type: str
    labels: list
    metrics: list[str]
    seeds: list[SeedResult]
    model: str | None = None
    primary_metric: str | None = None
    train_file: dict | None = None  # {"path", "sha256", "examples"}
    validation_file: dict | None = None
    test_file: dict | None = None
    max_seq_length: int | None = None
    truncated: dict | None = None
    aggregate: dict | None = None  # split -> metric -> {"mean", "std", "n", "values"}
    averaging: dict | None = None
    adapter: dict | None = None
    wall_seconds: float | None = None
    new_parameters: list[str] | None = None  # weights the checkpoint lacked, initialised afresh (the task head)
    knowledge: dict | None = None  # --glossary/--triples: split -> what was expanded (expand.expansion_stats)

    def values(self, split: str, metric: str) -> list[float]:
        return [float(getattr(seed, split)[metric]) for seed in self.seeds]

    def has_split(self, split: str) -> bool:
        return all(isinstance(getattr(seed, split), dict) for seed in self.seeds)

    def evaluated_file(self, split: str) -> dict:
        return (self.test_file if split == "test" else self.validation_file) or {}


# --- selection, mining, similarity, held-out splits, LM evaluation ----------------------------------------------


@dataclass
class Selection(Record):
    """`selection.json` of `dontstop select`."""

    FILE: ClassVar[str] = "selection.json"
    OMIT_NONE: ClassVar[bool] = True

    strategy: str
    k: int | None = None
    task_file: str | None = None
    task_examples: int | None = None
    task_sha256: str | None = None
    selected_pool_documents: int | None = None
    records_written: int | None = None
    records_by_origin: dict | None = None
    pools: list[dict] = field(default_factory=list)
    curated: list[dict] = field(default_factory=list)
    leaked: dict = field(default_factory=dict)
    duplicates: int | None = None
    embedder: dict | None = None
    index: dict | None = None
    settings: dict | None = None
    distance_to_nearest_task_example: dict | None = None
    task_examples_per_document: dict | None = None
    overlap_between_neighbourhoods: float | None = None
    timings: dict | None = None


@dataclass
class MinedWords(Record):
    """`metrics.json` of `dontstop mine` (the words themselves are in `words.tsv`)."""

    FILE: ClassVar[str] = "metrics.json"

    language: str
    corpora: list[dict]
    against: list[dict] = field(default_factory=list)
    characters: int | None = None
    megabytes: float | None = None
    tokens: int | None = None
    against_tokens: int | None = None
    seconds: dict | None = None
    megabytes_per_second: float | None = None
    peak_rss_mb_main_process: float | None = None
    ngram_entries: int | None = None
    count_error_bound: int | None = None
    prunings: int | None = None
    funnel: dict | None = None
    words_written: int | None = None
    new_words_written: int | None = None
    base_dicts: list[str] = field(default_factory=list)
    settings: dict | None = None
    long_tail: dict | None = None  # --long_tail: {"scored", "written", "head", "contexts_per_word", "in_glossary"}


@dataclass
class Similarity(Record):
    """`similarity.json` of `dontstop inspect`."""

    FILE: ClassVar[str] = "similarity.json"

    overlap: dict  # {"method", "description", "names", "matrix"}: the chosen measure
    reference: str | None = None
    overlaps: dict | None = None  # both measures
    corpora: list[dict] = field(default_factory=list)
    model: str | None = None
    settings: dict | None = None
    recommendation: list[str] = field(default_factory=list)
    rule: str | None = None
    task: str | None = None  # the corpus of the task's own text
    probes: dict | None = None  # corpus -> its relevance probe (steps, domain and task losses before and after)


@dataclass
class PreparedData(Record):
    """`counts.json` of `dontstop prepare`: the documents written into each of its files."""

    FILE: ClassVar[str] = "counts.json"

    task_train: int
    task_dev: int
    domain_train: int = 0
    domain_heldout: int = 0
    general_train: int | None = None  # None: no general corpus
    general_heldout: int | None = None


@dataclass
class CorpusLoss(Record):
    objective: str
    lm_loss: float | None
    lm_perplexity: float | None = None
    lm_accuracy: float | None = None
    lm_tokens: int | None = None
    lm_head: str | None = None  # checkpoint, warmed up, or random (no loss reported)


@dataclass
class LMEvaluation(Record):
    """`lm_eval.json` of `dontstop lm-eval`: a checkpoint's LM loss on each held-out set."""

    FILE: ClassVar[str] = "lm_eval.json"

    model: str
    losses: dict[str, CorpusLoss]

    def loss(self, name: str) -> float | None:
        entry = self.losses.get(name)
        return entry.lm_loss if entry else None


# --- the experiment ---------------------------------------------------------------------------------------------


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
    inspect_dir: str | None = None
    base_lm_eval: dict[str, CorpusLoss] = field(default_factory=dict)
    stages_run: list[dict] = field(default_factory=list)

    def arm(self, name: str) -> ArmSummary:
        return next(arm for arm in self.arms if arm.name == name)
