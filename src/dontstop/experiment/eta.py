"""How long an experiment will take: said before its first stage, refined as stages finish, and checked at the end.

Every stage's work is counted from its options in what costs time (`Work`): tokens through a training step, tokens
through evaluation only (about a third of a training step's cost), model loads, and seconds of work that is not the
model's (reading and holding out corpora, indexing, counting). One short calibration before the first stage prices
the first two and the loads on this machine, with the experiment's own model: a few training steps at the
pretraining batch shape. As stages finish, each kind's estimates are scaled by what its finished stages took against
what they were estimated to take (a kind not seen yet, by all the finished stages that ran the model together). The
estimate made before the first stage and the wall time are kept in `experiment.json`, so its error is on record.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import dataclass

from .stages import Ref, Stage

logger = logging.getLogger(__name__)

EVAL_COST = 1 / 3  # a forward pass, against forward + backward + optimizer step
SMALL_STAGE_SECONDS = 5.0  # a stage without model work (prepare, mine, a bag-of-words select)


@dataclass
class Work:
    train_tokens: float = 0.0
    eval_tokens: float = 0.0
    loads: float = 0.0
    seconds: float = 0.0  # work that is not the model's


@dataclass
class Prices:
    """This machine's prices, from the calibration."""

    per_token: float  # seconds per token of a training step
    per_load: float  # seconds to load the model

    def seconds(self, work: Work) -> float:
        tokens = work.train_tokens + EVAL_COST * work.eval_tokens
        return tokens * self.per_token + work.loads * self.per_load + work.seconds


def lines(path) -> int | None:
    """The number of lines of a file the stage names directly (an earlier stage's output is not there yet)."""
    if not isinstance(path, str) or not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def classes(path, column) -> int:
    """The number of distinct labels in a task file (a guess of 10 when it cannot be read yet)."""
    if not isinstance(path, str) or not os.path.isfile(path):
        return 10
    stat = os.stat(path)
    return count_classes(path, column, stat.st_mtime_ns, stat.st_size)


@functools.cache
def count_classes(path: str, column, _mtime_ns: int, _size: int) -> int:
    """Read once per version of a file: every arm's fine-tuning stage names the same training file, and a file
    rewritten in the same process (its time or size changed) is read again, never answered from the cache."""
    from ..tasks import read_records

    try:
        records, _ = read_records(path)
    except Exception:  # the stage itself names a bad file; an estimate only guesses
        return 10
    labels = {str(record.get(column or "label")) for _, record in records}
    return max(1, len(labels))


def pretrain_work(stage: Stage) -> Work:
    o = stage.options
    batch, length = int(o.get("per_device_train_batch_size", 8)), int(o.get("max_seq_length") or 512)
    steps = int(o.get("max_steps") or 0)
    if steps <= 0:  # an epoch budget: documents (or, not known yet, a guess) over the batch, each a few blocks
        documents = sum(lines(f) or 1000 for f in o.get("train_file") or [None])
        steps = int(float(o.get("num_train_epochs", 3)) * max(1, documents // batch))
    evaluations = 2 + (steps // int(o["eval_steps"]) if o.get("eval_steps") else 0)
    held_out = len(o.get("eval_file") or []) * int(o.get("max_eval_samples") or 0) * length
    return Work(steps * batch * length, evaluations * held_out, loads=1)


def finetune_work(stage: Stage, runs: int | None = None) -> Work:
    """Seeds x epochs over the (limited) training file, dev after every epoch, test once per seed."""
    o = stage.options
    seeds = str(o.get("seeds", 5))
    count = runs or (int(seeds) if seeds.isdigit() else len(seeds.split(",")))
    length, epochs = int(o.get("max_seq_length") or 128), float(o.get("num_train_epochs", 10))
    train = lines(o.get("train_file")) or 1000
    if o.get("train_limit"):
        train = min(train, int(o["train_limit"]))
    elif o.get("train_limit_per_class"):  # at most k of each class: 10 per class of 23 is 230 of 9,663
        train = min(train, int(o["train_limit_per_class"]) * classes(o.get("train_file"), o.get("label_column")))
    dev = min(lines(o.get("validation_file")) or 0, int(o.get("validation_limit") or 10**9))
    test = lines(o.get("test_file")) or 0
    return Work(count * epochs * train * length, count * (epochs * dev + test) * length, loads=count)


def lm_eval_work(stage: Stage) -> Work:
    """The held-out blocks through the model; first a head warm-up, which costs about a forward pass (the encoder is
    frozen): for every checkpoint with --warm_up_head always, else for the given model only (an arm's checkpoint
    comes from a pretraining stage, with its head)."""
    o = stage.options
    length, sets = int(o.get("max_seq_length", 128)), len(o.get("eval_file") or [])
    trained_head = isinstance(o.get("model_name_or_path"), Ref) and o.get("warm_up_head") != "always"
    warmup = 0 if trained_head else int(o.get("head_warmup_steps", 0)) * int(o.get("batch_size", 16)) * length
    return Work(eval_tokens=warmup + sets * int(o.get("eval_blocks", 16)) * length, loads=1)


def inspect_work(stage: Stage) -> Work:
    """With a model: one masked-LM measure of every corpus (after a head warm-up), then per probed corpus (all but
    the reference and the task) a fresh warm-up, the domain's and the task's loss, the probe's training steps, and
    the two losses again. Defaults as in InspectArguments."""
    o = stage.options
    if not o.get("model_name_or_path"):
        return Work(seconds=SMALL_STAGE_SECONDS)
    corpora = len(o.get("corpus") or []) or 3
    batch, length = int(o.get("batch_size", 32)), int(o.get("max_seq_length", 128))
    block, warmup = int(o.get("eval_blocks", 200)) * length, int(o.get("head_warmup_steps", 100)) * batch * length
    probed = max(0, corpora - 2) if int(o.get("probe_steps") or 0) else 0
    probe = int(o.get("probe_steps") or 0) * batch * length
    measure = (1 + probed) * warmup + corpora * block + probed * 4 * block
    return Work(probed * probe, measure, loads=1 + probed, seconds=SMALL_STAGE_SECONDS)


def sweep_work(stage: Stage) -> Work:
    """The first seed's fine-tuning at every candidate rate."""
    return finetune_work(stage, runs=len(str(stage.options.get("learning_rate_candidates", "1,2,3,4")).split(",")))


def clean_work(stage: Stage) -> Work:
    """embed: every training text through the model once; finetune: a fine-tuning run per fold on the other folds,
    scoring its fold."""
    o = stage.options
    folds, train = int(o.get("folds", 5)), lines(o.get("train_file")) or 1000
    if o.get("mode", "embed") == "embed":
        return Work(eval_tokens=train * int(o.get("max_seq_length") or 256), loads=1)
    length, epochs = int(o.get("max_seq_length") or 128), float(o.get("num_train_epochs", 10))
    dev = lines(o.get("validation_file")) or train // 10
    return Work(epochs * (folds - 1) * train * length, folds * (epochs * dev + train / folds) * length, loads=folds)


WORK = {
    "pretrain": pretrain_work,
    "finetune": finetune_work,
    "lr-sweep": sweep_work,
    "lm-eval": lm_eval_work,
    "inspect": inspect_work,
    "clean": clean_work,
}


def work_of(stage: Stage) -> Work:
    count = WORK.get(stage.kind)
    return count(stage) if count else Work(seconds=SMALL_STAGE_SECONDS)


def calibrate(model, batch: int, length: int, steps: int = 3) -> Prices:
    """Load the model and time a few training steps of its encoder on random tokens at the pretraining batch
    shape."""
    import torch
    from transformers import AutoConfig, AutoModelForMaskedLM

    from ..models import resolve_model_path

    started = time.perf_counter()
    if isinstance(model, str):
        lm = AutoModelForMaskedLM.from_pretrained(resolve_model_path(model))
    else:  # pretrained from a config by the experiment's first stage
        lm = AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(model.options["config_name"]))
    loaded = time.perf_counter() - started
    length = min(length, getattr(lm.config, "max_position_embeddings", length))
    ids = torch.randint(5, lm.config.vocab_size, (batch, length), generator=torch.Generator().manual_seed(0))
    # The encoder alone: a classifier has no vocabulary-sized head, and pretraining runs its head on the masked
    # positions only (heads.py); on a small model, the head over every position would double the price.
    encoder = lm.base_model
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-5)
    times = []
    for _ in range(steps + 1):  # the first step warms up allocators and kernels: not counted
        started = time.perf_counter()
        encoder(input_ids=ids).last_hidden_state.float().square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - started)
    return Prices(per_token=sorted(times[1:])[len(times[1:]) // 2] / (batch * length), per_load=loaded)


class Estimate:
    """The time left, from prices and each stage's work, scaled by what finished stages took (see the docstring)."""

    def __init__(self, prices: Prices | None):
        self.prices = prices
        self.ratios: dict[str, list[tuple[float, float]]] = {}  # kind -> [(estimated, actual seconds)]
        # Stages that ran the model: what a kind not seen yet borrows. A stage of fixed seconds (prepare, a
        # bag-of-words inspect) says nothing of the model's speed: a 0.1 s prepare once scaled the rest to minutes,
        # a slow inspect to a day.
        self.model_ratios: list[tuple[float, float]] = []
        # Each stage's work, counted once: counting reads its input files, and the time left is summed over every
        # pending stage before each stage starts.
        self.works: dict[Stage, Work] = {}

    def work(self, stage: Stage) -> Work:
        if stage not in self.works:
            self.works[stage] = work_of(stage)
        return self.works[stage]

    def planned(self, stage: Stage) -> float | None:
        return self.prices.seconds(self.work(stage)) if self.prices else None

    def learn(self, stage: Stage, seconds: float) -> None:
        planned = self.planned(stage)
        if planned:
            self.ratios.setdefault(stage.kind, []).append((planned, seconds))
            work = self.work(stage)
            if work.train_tokens or work.eval_tokens:
                self.model_ratios.append((planned, seconds))

    def scale(self, kind: str) -> float:
        pairs = self.ratios.get(kind) or self.model_ratios
        return sum(a for _, a in pairs) / sum(e for e, _ in pairs) if pairs else 1.0

    def remaining(self, pending: list[Stage]) -> float | None:
        if self.prices is None:
            return None
        return sum(self.planned(stage) * self.scale(stage.kind) for stage in pending)
