"""The records of the stages: what pretrain, finetune, select, mine, inspect, prepare and lm-eval leave behind."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .base import Record, eval_values


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
    rounds: list[dict] | None = None  # self-training: each round's pseudo-labels, their accuracy, dev and test
    chosen_round: int | None = None  # the round whose model was scored (the best on dev)
    unlabeled: dict | None = None  # how many unlabeled texts the seed's methods read, from where
    per_class: dict | None = None  # split -> class -> {"precision", "recall", "f1", "support"}
    class_weights: dict | None = None  # class -> the weight of its loss (--class_weights), from this seed's draw


@dataclass
class LearningRateSweep(Record):
    """`learning_rate_sweep.json` of `--learning_rate auto` (finetune/sweep.py): every candidate rate's dev scores
    on the first seed, and the rate chosen."""

    FILE: ClassVar[str] = "learning_rate_sweep.json"

    seed: int | str
    metric: str
    candidates: list[dict]  # [{"learning_rate", "dev": {metric: value}, "best_epoch"}]
    chosen: float


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
    best_model: str | None = None  # "seed-S/model": the kept model of the seed best on dev (--keep_models)
    learning_rate: float | None = None
    learning_rate_sweep: dict | None = None  # with --learning_rate auto: the LearningRateSweep it was chosen by
    methods: dict | None = None  # training method -> its settings (finetune/methods/), for those switched on
    unlabeled: dict | None = None  # the unlabeled text read: files, texts kept, dev/test texts excluded, duplicates
    knowledge: dict | None = None  # --glossary/--triples: split -> what was expanded (expand.expansion_stats)
    per_class: dict | None = None  # split -> class -> metric -> {"mean", "std", "n", "values"}
    imbalance: dict | None = None  # {"class_weights", "loss", "sampler", ...}: the remedies for imbalance used
    prompt: dict | None = None  # with --prompt: template, verbalizer, slots and scoring (prompt-based fine-tuning)

    def values(self, split: str, metric: str) -> list[float]:
        return [float(getattr(seed, split)[metric]) for seed in self.seeds]

    def classes(self, split: str) -> list[str]:
        """The classes scored one by one on `split` (by every seed), or [] for a run of an earlier version."""
        if not all(seed.per_class and split in seed.per_class for seed in self.seeds):
            return []
        return list(dict.fromkeys(name for seed in self.seeds for name in seed.per_class[split]))

    def class_values(self, split: str, name: str, metric: str = "f1") -> list[float]:
        """Per seed (in seed order), one class's metric on `split`; 0 where a seed never saw or predicted it."""
        return [float(seed.per_class[split].get(name, {}).get(metric, 0.0)) for seed in self.seeds]

    def has_split(self, split: str) -> bool:
        return all(isinstance(getattr(seed, split), dict) for seed in self.seeds)

    def evaluated_file(self, split: str) -> dict:
        return (self.test_file if split == "test" else self.validation_file) or {}


@dataclass
class MultiTaskResults(Record):
    """`results.json` of `dontstop finetune --tasks/--task`: per task its metrics over the seeds, and the mean over
    the tasks of each one's primary metric (the best epoch's criterion) over the seeds."""

    FILE: ClassVar[str] = "results.json"

    tasks: dict  # name -> {task_type, labels, primary_metric, metrics, train_file, validation_file, test_file,
    #                       truncated, aggregate: split -> metric -> {"mean", "std", "n", "values"}}
    seeds: list[dict]  # per seed: best_epoch, dev/test: task -> metrics, mean: split -> value, batches_per_epoch
    mean: dict  # split -> {"mean", "std", "n", "values"} of the seeds' means over the tasks' primary metrics
    task_sampling: str
    multitask: bool = True
    model: str | None = None
    max_seq_length: int | None = None
    learning_rate: float | None = None
    methods: dict | None = None
    best_model: str | None = None  # "seed-S/model": the kept models (one per task) of the seed best on the dev mean
    wall_seconds: float | None = None


@dataclass
class LabelIssues(Record):
    """`clean.json` of `dontstop clean`: the examples whose given label looks wrong, in all and per class (the
    examples themselves are in `label_issues.jsonl`)."""

    FILE: ClassVar[str] = "clean.json"
    OMIT_NONE: ClassVar[bool] = True

    mode: str  # embed or finetune: how the out-of-fold probabilities were made
    train_file: dict  # {"path", "sha256", "examples"}
    labels: list[str]  # the columns of probabilities.npy
    folds: int
    issues: int  # examples flagged
    found: int | None = None  # examples confident learning flagged, before --max_issues kept the most suspect
    model: str | None = None
    filter_by: str | None = None
    out_of_fold: dict | None = None  # {"accuracy", "macro_f1", "log_loss"} of the out-of-fold predictions
    per_class: dict | None = None  # class -> {"examples", "flagged", "estimated_issues", "noise", "inverse_noise"}
    cleaned_file: str | None = None  # with --write_clean
    cleaned: dict | None = None  # {"action", "examples", "removed", "relabelled"}
    seconds: dict | None = None
    settings: dict | None = None


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


@dataclass
class AugmentedData(Record):
    """`augment.json` of `dontstop augment`: what was written, and how much each operation changed."""

    FILE: ClassVar[str] = "augment.json"

    input_file: dict  # {"path", "sha256", "records"}
    augmentation: str  # e.g. "delete:0.15,swap:0.1", applied `copies` times to each record
    copies: int
    records_written: int  # the originals (unless left out) and the copies
    words_changed: dict = field(default_factory=dict)  # operation -> words deleted, swapped or cut, in all copies
    unchanged_copies: int = 0  # copies equal to their original (a text too short to change)


# --- the experiment ---------------------------------------------------------------------------------------------
