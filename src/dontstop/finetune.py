"""Fine-tune any checkpoint on a labelled task over several seeds; report dev and test metrics as mean ± std.

    dontstop finetune --model_name_or_path runs/dapt --train_file train.jsonl --validation_file dev.jsonl \\
        --test_file test.jsonl --seeds 5 --output_dir runs/dapt-finetuned

Single-seed fine-tuning results are noise: Gururangan et al. (2020) report mean and standard deviation over five
seeds. Each seed here trains a fresh classifier, evaluates on the dev set after every epoch, stops early when the dev
metric has not improved for `--early_stopping_patience` evaluations, and scores the best epoch's weights (kept in
memory, not in checkpoints) on dev and test. `dontstop compare` then sets runs side by side with significance.

The model may be a LoRA adapter directory (`dontstop pretrain --adapter lora`): its base model is loaded and the
adapter merged in, then trained whole or, with `--adapter lora`, under a fresh task adapter (see `adapters.py`).
"""

from __future__ import annotations

import contextlib
import copy
import gc
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from transformers import Trainer, TrainerCallback, set_seed

from .adapters import MERGED_DIR, AdapterArguments, is_adapter_model, read_adapter, save_merged
from .adversarial import ADVERSARIES
from .averaging import AveragingArguments, WeightAverage
from .errors import UsageError
from .modelcard import results_table, write_finetune_readme
from .outputs import check_output_dir, resolve_model_path, write_json
from .recipe import RobertaRecipe
from .scoring import METRICS, PRIMARY_METRIC, aggregate, score
from .tasks import Encoded, Task, TaskSplit, decode, encode, load_task, stratified_sample

logger = logging.getLogger(__name__)


@dataclass
class TaskArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "What to fine-tune: a hub id, a `dontstop pretrain` output directory, any local checkpoint, "
            "or pkg:NAME for a model shipped inside an installed Python package. A LoRA adapter directory "
            "(adapter_config.json) is merged into its base model first."
        },
    )
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer, when it differs from the model."})
    train_file: str | None = field(default=None, metadata={"help": "Training examples (.jsonl, .csv or .tsv)."})
    validation_file: str | None = field(
        default=None, metadata={"help": "Dev examples: choose the best epoch and stop early."}
    )
    test_file: str | None = field(default=None, metadata={"help": "Test examples, scored with the best epoch."})
    task_type: str = field(
        default="auto",
        metadata={
            "help": "single_label, multi_label (a list of labels per example) or token (BIO tags per word); "
            "auto reads it from the first training record.",
            "choices": ["auto", "single_label", "multi_label", "token"],
        },
    )
    text_column: str = field(default="text", metadata={"help": "Column of the text (a list of words for token)."})
    text_pair_column: str | None = field(
        default=None, metadata={"help": "Column of the second text of a pair (e.g. a hypothesis), if any."}
    )
    label_column: str = field(default="label", metadata={"help": "Column of the label (or labels, or tags)."})
    label_separator: str = field(
        default=",", metadata={"help": "multi_label in csv/tsv: the separator between the labels of a cell."}
    )
    max_seq_length: int | None = field(
        default=None,
        metadata={
            "help": "Tokens per example; longer ones are truncated (and counted). Default: min(512, model max)."
        },
    )
    seeds: str = field(
        default="5",
        metadata={"help": "How many runs (N: seeds --seed, --seed+1, ...) or a list of seeds, e.g. 1,2,3."},
    )
    train_limit: int | None = field(
        default=None,
        metadata={
            "help": "Few-shot: train on this many examples, drawn stratified by label (uniformly for multi_label "
            "and token tasks)."
        },
    )
    sample_seed: int | None = field(
        default=None,
        metadata={
            "help": "Seed of the --train_limit draw. Default: each run's seed, so the spread over seeds includes "
            "the choice of examples."
        },
    )
    validation_limit: int | None = field(
        default=None,
        metadata={
            "help": "Evaluate on this many dev examples (stratified; the same ones for every seed and run): "
            "dev evaluation after every epoch can cost more than the training itself."
        },
    )
    resume: bool = field(
        default=False,
        metadata={"help": "Reuse the seeds already finished in --output_dir (its settings must match these)."},
    )
    keep_models: bool = field(
        default=False, metadata={"help": "Save each seed's best model in OUTPUT_DIR/seed-S/model (off: disk)."}
    )


@dataclass
class FinetuningArguments(AdapterArguments, AveragingArguments, RobertaRecipe):
    """`TrainingArguments` with the fine-tuning defaults of Gururangan et al. (2020), each with its reason; weight
    averaging (--ema, --swa_start) from `averaging.py`, a task adapter (--adapter lora) from `adapters.py`."""

    # The paper's fine-tuning learning rate and batch size (it follows RoBERTa's GLUE recipe).
    learning_rate: float = field(default=2e-5, metadata={"help": "Peak learning rate."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Training batch size per device."})
    # Evaluation keeps no activations for a backward pass, so larger batches cost little memory and run faster.
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Evaluation batch size per device."})
    # The paper trains up to 10 epochs (3 for its large tasks) and keeps the best on dev, patience 3.
    num_train_epochs: float = field(
        default=10.0, metadata={"help": "Most epochs per seed (early stopping may end sooner)."}
    )
    early_stopping_patience: int = field(
        default=3, metadata={"help": "Stop after this many evaluations without a better dev metric (0: never)."}
    )
    # RoBERTa's fine-tuning weight decay (its pretraining used 0.01); warm-up and Adam settings come from the recipe.
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay."})
    # The best epoch is chosen on dev after every epoch; the best weights are kept in memory, so no checkpoints.
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate on dev: epoch or steps."})
    save_strategy: str = field(default="no", metadata={"help": "Trainer checkpoints (not needed to keep the best)."})
    logging_strategy: str = field(default="epoch", metadata={"help": "When to log the training loss."})
    adversarial: str = field(
        default="none",
        metadata={"help": "Adversarial training on the word embeddings.", "choices": ["none", *ADVERSARIES]},
    )
    adv_epsilon: float = field(default=1.0, metadata={"help": "FGM: norm of the embedding perturbation."})


class BestEpoch(TrainerCallback):
    """Keep the weights of the best dev evaluation in memory and stop after `patience` evaluations without gain.

    With weight averaging the averaged weights are scored (`FinetuneTrainer.evaluation_loop`), so they choose the best
    epoch and they are the weights kept."""

    def __init__(
        self,
        metric: str,
        patience: int,
        greater_is_better: bool | None = None,
        averager: WeightAverage | None = None,
    ):
        self.metric = metric
        self.patience = patience
        if greater_is_better is None:
            greater_is_better = metric != "loss"  # the dev loss is the one metric where lower is better
        self.sign = 1.0 if greater_is_better else -1.0
        self.best: float | None = None
        self.best_epoch: float | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_metrics: dict | None = None
        self.averager = averager
        self.evaluations_without_gain = 0

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        value = self.sign * metrics[f"eval_{self.metric}"]
        value = -math.inf if math.isnan(value) else value  # a diverged evaluation never counts as the best
        if self.best is None or value > self.best:
            self.best, self.best_epoch, self.best_metrics = value, state.epoch, dict(metrics)
            with self.averager.swapped_in(model) if self.averager else contextlib.nullcontext():
                self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            self.evaluations_without_gain = 0
        else:
            self.evaluations_without_gain += 1
            if self.patience and self.evaluations_without_gain >= self.patience:
                control.should_training_stop = True

    def restore(self, model) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)


class FinetuneTrainer(Trainer):
    """A Trainer that adds an adversarial pass to each step and, with weight averaging, evaluates the averaged
    weights beside the raw ones."""

    def __init__(self, *args, adversary=None, averager: WeightAverage | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.adversary = adversary
        self.averager = averager
        # Classification heads accept **kwargs but ignore num_items_in_batch, so the Trainer must scale the loss for
        # gradient accumulation itself (huggingface/transformers#47688).
        self.model_accepts_loss_kwargs = False

    def training_step(self, model, inputs, num_items_in_batch=None):
        earlier = self.adversary.gradient_snapshot() if self.adversary is not None else None
        loss = super().training_step(model, dict(inputs), num_items_in_batch)
        if self.adversary is not None and self.adversary.attack(earlier):
            super().training_step(model, dict(inputs), num_items_in_batch)  # its gradient adds to the clean one
            self.adversary.restore()
        return loss  # the clean loss: the adversarial pass is logged nowhere

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        """With weight averaging, the scores (eval_*) are the averaged weights' and the raw weights' come beside them
        (raw_eval_*); until the first update of the average the raw weights are all there is."""
        loop = super().evaluation_loop
        if self.averager is None or not self.averager.ready:
            return loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        raw = loop(dataloader, description, prediction_loss_only, ignore_keys, f"raw_{metric_key_prefix}")
        with self.averager.swapped_in(self.model):
            output = loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        output.metrics.update(raw.metrics)
        return output


def parse_seeds(spec, base: int) -> list[int]:
    """`5` means five seeds from --seed on; `1,2,3` means exactly those (a YAML config may give a number or list)."""
    spec = ",".join(map(str, spec)) + "," if isinstance(spec, list) else str(spec)
    try:
        if "," not in spec:
            count = int(spec)
            if count < 1:
                raise ValueError
            return [base + i for i in range(count)]
        seeds = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--seeds expects a count (5) or a list (1,2,3), got {spec!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds {spec}: seeds must be distinct")
    return seeds


def predict(trainer: Trainer, task: Task, split: TaskSplit, encoded: Encoded):
    logits = trainer.predict(encoded.dataset).predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    lengths = [len(words) for words in split.texts] if task.task_type == "token" else None
    return decode(task, logits, encoded.word_ids, lengths), logits


def validate(task_args: TaskArguments, args: FinetuningArguments) -> list[int]:
    if not task_args.model_name_or_path:
        raise UsageError("--model_name_or_path is required")
    if not args.output_dir_given:
        raise UsageError("--output_dir is required")
    if args.adversarial != "none" and args.deepspeed:
        raise UsageError("--adversarial with --deepspeed: DeepSpeed steps the optimizer inside each backward pass")
    for option in ("train_file", "validation_file"):
        if not getattr(task_args, option):
            raise UsageError(f"--{option} is required")
    args.check_averaging()
    args.check_adapter()
    if args.uses_adapter and args.adversarial != "none":
        raise UsageError(
            "--adversarial with --adapter lora: FGM follows the embeddings' gradient, and an adapter freezes them"
        )
    if args.merge_adapter and not task_args.keep_models:
        raise UsageError("--merge_adapter merges the kept models: add --keep_models")
    if args.adv_epsilon <= 0:
        raise UsageError(f"--adv_epsilon {args.adv_epsilon}: must be positive")
    if task_args.train_limit is not None and task_args.train_limit < 1:
        raise UsageError(f"--train_limit {task_args.train_limit}: must be at least 1")
    if str(getattr(args.eval_strategy, "value", args.eval_strategy)) == "no":
        raise UsageError("--eval_strategy no: the best epoch is chosen on the dev set, so evaluation must run")
    if task_args.validation_limit is not None and task_args.validation_limit < 1:
        raise UsageError(f"--validation_limit {task_args.validation_limit}: must be at least 1")
    if task_args.resume:
        check_resumable(task_args, args)
    else:
        check_output_dir(args.output_dir, args.overwrite_output_dir)
    return parse_seeds(task_args.seeds, args.seed)


# Settings that may change between an interrupted run and its resumption without changing any seed's result.
RESUMABLE_CHANGES = {
    "resume",
    "seeds",
    "overwrite_output_dir",
    "disable_tqdm",
    "logging_dir",
    "keep_models",
    "merge_adapter",
}


def resolved_config(task_args: TaskArguments, args: FinetuningArguments) -> dict:
    resolved = {"task": asdict(task_args), "training": args.to_dict()}
    return json.loads(json.dumps(resolved, default=str))


def fingerprint(task_args: TaskArguments, args: FinetuningArguments, task: Task) -> str:
    """What a seed's result depends on: the settings (less those that may change on --resume) and the task files.
    A finished seed is reused only when its fingerprint matches, so a stale result can never slip in."""
    import hashlib

    resolved = resolved_config(task_args, args)
    kept = {g: {k: v for k, v in resolved[g].items() if k not in RESUMABLE_CHANGES} for g in resolved}
    kept["files"] = [split.sha256 for split in (task.train, task.dev, task.test) if split is not None]
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def finished_seed(output_dir: str, seed: int, key: str) -> dict | None:
    """The record of a seed an earlier run finished with the same settings and files, if there is one."""
    path = os.path.join(output_dir, f"seed-{seed}", "result.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        record = json.load(f)
    if record.get("fingerprint") != key:
        logger.info("Seed %d: %s came from other settings or files; training it again", seed, path)
        return None
    return record


def check_resumable(task_args: TaskArguments, args: FinetuningArguments) -> None:
    """--resume continues a run with the same settings (more seeds are fine); anything else is refused."""
    path = os.path.join(args.output_dir, "dontstop_config.json")
    if not os.path.exists(path):
        raise UsageError(f"--resume: {path} does not exist, so there is no earlier run to continue")
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    current = resolved_config(task_args, args)
    changed = sorted(
        f"--{key}"
        for group in ("task", "training")
        for key in set(saved.get(group, {})) | set(current[group])
        if key not in RESUMABLE_CHANGES and saved.get(group, {}).get(key) != current[group].get(key)
    )
    if changed:
        raise UsageError(f"--resume: {', '.join(changed)} differ from the run in {args.output_dir}")


def selection_metric(task: Task, args: FinetuningArguments) -> str:
    """The dev metric that picks the best epoch: --metric_for_best_model, or the task's headline metric."""
    metric = (args.metric_for_best_model or PRIMARY_METRIC[task.task_type]).removeprefix("eval_")
    allowed = (*METRICS[task.task_type], "loss")
    if metric not in allowed:
        raise UsageError(f"--metric_for_best_model {metric}: a {task.task_type} task offers {', '.join(allowed)}")
    return metric


def load_tokenizer_and_config(task_args: TaskArguments, task: Task):
    """(resolved model path, tokenizer, config for the task)."""
    from transformers import AutoConfig, AutoTokenizer

    source = resolve_model_path(task_args.model_name_or_path)
    domain = read_adapter(source)  # an adapter directory: the config is its base model's
    tokenizer_source = task_args.tokenizer_name or source
    if domain and not task_args.tokenizer_name and not os.path.isfile(os.path.join(source, "tokenizer_config.json")):
        tokenizer_source = domain.base
    problem = {"single_label": "single_label_classification", "multi_label": "multi_label_classification"}
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(tokenizer_source))
        if task.task_type == "token" and getattr(tokenizer, "add_prefix_space", True) is False:
            # Byte-level BPE (RoBERTa, GPT-2) spells a word differently after a space; words of a sentence are.
            tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(tokenizer_source), add_prefix_space=True)
        config = AutoConfig.from_pretrained(
            domain.base if domain else source,
            num_labels=len(task.labels),
            id2label=dict(enumerate(task.labels)),
            label2id=task.label2id,
            problem_type=problem.get(task.task_type),
        )
        if tokenizer.pad_token_id is None:  # decoders such as GPT-2 ship no pad token; padding is masked out anyway
            tokenizer.pad_token = tokenizer.eos_token
        if getattr(config, "pad_token_id", None) is None:
            config.pad_token_id = tokenizer.pad_token_id
    except (OSError, ValueError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"cannot load model {source!r}: {first_line}") from None
    if task.task_type == "token" and not getattr(tokenizer, "is_fast", False):
        raise UsageError(f"{source}: token classification needs a fast tokenizer (to map sub-tokens to words)")
    return source, tokenizer, config


def load_seeded_model(task: Task, source: str, config, seed: int, args: FinetuningArguments | None = None):
    """The checkpoint with a task head whose initialisation `seed` fixes; a broken checkpoint is a UsageError.

    From an adapter directory: its base model with the adapter merged in (this in-memory copy only). With
    `--adapter lora` in `args`: wrapped in a fresh task adapter, under which everything loaded stays frozen."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    from .adapters import add_task_adapter, merge_domain_adapter

    auto = AutoModelForTokenClassification if task.task_type == "token" else AutoModelForSequenceClassification
    domain = read_adapter(source)
    set_seed(seed)
    try:
        model, info = auto.from_pretrained(
            domain.base if domain else source, config=config, ignore_mismatched_sizes=True, output_loading_info=True
        )
    except (OSError, ValueError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"cannot load model {source!r}: {first_line}") from None
    if not info["missing_keys"] and not info.get("mismatched_keys"):
        logger.warning(
            "%s already holds a %d-label head: it is fine-tuned further, not initialised afresh",
            source,
            len(task.labels),
        )
    if domain is not None:
        model = merge_domain_adapter(model, domain)
    if args is not None and args.uses_adapter:
        mismatched = {key if isinstance(key, str) else key[0] for key in info.get("mismatched_keys") or []}
        model = add_task_adapter(model, args, task.task_type, set(info["missing_keys"]) | mismatched)
    return model


# Dev metrics in the log: the evaluated weights' and, with weight averaging, the raw weights' beside them.
EVAL_PREFIXES = ("eval_", "raw_eval_")


def run_seed(seed, task, model, tokenizer, encoded, task_args, args, output_dir, key: str) -> dict:
    """Train one seed's `model` (from `load_seeded_model`); return its record (dev and test metrics of the best
    epoch, timing, history)."""
    from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

    seed_dir = os.path.join(output_dir, f"seed-{seed}")
    train = encoded["train"].dataset
    if task_args.train_limit:
        draw_seed = seed if task_args.sample_seed is None else task_args.sample_seed
        train = train.select(stratified_sample(task.train.labels, task_args.train_limit, draw_seed))
    if task.task_type == "token":
        collator = DataCollatorForTokenClassification(tokenizer)
    else:
        collator = DataCollatorWithPadding(tokenizer)

    metric = selection_metric(task, args)
    greater = args.greater_is_better if args.metric_for_best_model else None
    averager = args.averager()
    best = BestEpoch(metric, args.early_stopping_patience, greater, averager)
    dev = encoded["dev"]
    dev_lengths = [len(w) for w in task.dev.texts] if task.task_type == "token" else None

    def dev_metrics(prediction):
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return score(task.task_type, task.dev.labels, decode(task, logits, dev.word_ids, dev_lengths))

    seed_args = copy.copy(args)
    seed_args.seed, seed_args.data_seed, seed_args.output_dir = seed, seed, seed_dir
    adversary = None
    if args.adversarial != "none":
        adversary = ADVERSARIES[args.adversarial](model.get_input_embeddings(), args.adv_epsilon)
    trainer = FinetuneTrainer(
        model=model,
        args=seed_args,
        train_dataset=train,
        eval_dataset=dev.dataset,
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=dev_metrics,
        callbacks=[best] + ([averager] if averager else []),
        adversary=adversary,
        averager=averager,
    )
    started = time.time()
    trainer.train()
    train_seconds = time.time() - started
    # The best evaluation's weights (the averaged ones with --ema or --swa_start) are the model from here on.
    best.restore(model)
    trainer.averager, trainer.compute_metrics = None, None
    record = {
        "seed": seed,
        "fingerprint": key,
        "best_epoch": best.best_epoch,
        "epochs_run": trainer.state.epoch,
        "steps": trainer.state.global_step,
        "train_examples": len(train),
        "train_seconds": round(train_seconds, 1),
        "history": [
            {k: v for k, v in entry.items() if k in ("epoch", "step", "loss") or k.startswith(EVAL_PREFIXES)}
            for entry in trainer.state.log_history
            if "loss" in entry or f"eval_{metric}" in entry
        ],
    }
    if averager is not None:
        record["averaging"] = averaged_against_raw(best, averager, [*METRICS[task.task_type], "loss"])
    os.makedirs(seed_dir, exist_ok=True)
    for name, split in (("dev", task.dev), ("test", task.test)):
        if split is None:
            continue
        predicted, logits = predict(trainer, task, split, encoded[name])
        record[name] = score(task.task_type, split.labels, predicted)
        write_predictions(os.path.join(seed_dir, f"predictions_{name}.jsonl"), task, split, predicted, logits)
    if task_args.keep_models:
        trainer.save_model(os.path.join(seed_dir, "model"))  # with --adapter lora: the task adapter
        if args.uses_adapter and args.merge_adapter:
            save_merged(model, tokenizer, os.path.join(seed_dir, "model", MERGED_DIR))
    write_json(os.path.join(seed_dir, "result.json"), record)
    del trainer, model, best
    gc.collect()
    return record


def averaged_against_raw(best: BestEpoch, averager: WeightAverage, names: list[str]) -> dict:
    """The dev metrics of the raw and the averaged weights at the best epoch, and which scored better on the metric
    that chose it (a tie goes to the raw weights). A best epoch before the average's first update scored the raw
    weights alone: there is no averaged score, and the raw weights are the ones kept."""
    metrics = best.best_metrics or {}
    record = {"method": averager.name, **averager.settings()}
    if f"raw_eval_{best.metric}" not in metrics:
        return {**record, "raw": {m: metrics.get(f"eval_{m}") for m in names}, "averaged": None, "better": "raw"}
    raw = {m: metrics.get(f"raw_eval_{m}") for m in names}
    averaged = {m: metrics.get(f"eval_{m}") for m in names}
    gain = best.sign * (averaged[best.metric] - raw[best.metric])
    return {**record, "raw": raw, "averaged": averaged, "better": averager.name if gain > 0 else "raw"}


def averaging_summary(records: list[dict], metric_names: list[str]) -> dict | None:
    """Over the seeds: how often each of the averaged and the raw weights was better on dev, and the raw weights'
    dev metrics at the best epochs (the averaged weights' are the run's own dev results)."""
    compared = [r["averaging"] for r in records if r.get("averaging")]
    if not compared:
        return None
    method = compared[0]["method"]
    return {
        "method": method,
        "better": {name: sum(c["better"] == name for c in compared) for name in (method, "raw")},
        "dev_raw": {m: aggregate([c["raw"][m] for c in compared]) for m in metric_names},
    }


def adapter_record(source: str, model) -> dict | None:
    """For results.json: the domain adapter merged in (if the model was one) and the task adapter (if any)."""
    from .adapters import adapter_report

    domain = read_adapter(source)
    task = adapter_report(model) if model is not None and is_adapter_model(model) else None
    if domain is None and task is None:
        return None
    return {"domain": {"path": domain.path, "base": domain.base} if domain else None, "task": task}


def write_predictions(path: str, task: Task, split: TaskSplit, predicted: list, logits: np.ndarray) -> None:
    """One line per example: the line it came from, gold, prediction, and (classification) its probability."""
    confidence = None
    if task.task_type == "single_label":
        shifted = logits - logits.max(-1, keepdims=True)
        confidence = (np.exp(shifted).max(-1) / np.exp(shifted).sum(-1)).tolist()
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for i, (line, gold, guess) in enumerate(zip(split.lines, split.labels, predicted, strict=True)):
            row = {"line": line, "label": gold, "prediction": guess}
            if confidence is not None:
                row["probability"] = round(confidence[i], 4)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def run_finetune(task_args: TaskArguments, args: FinetuningArguments) -> dict:
    """Fine-tune over the seeds; returns the results written to `output_dir/results.json`."""
    seeds = validate(task_args, args)
    started = time.time()
    columns = dict(
        text_column=task_args.text_column,
        label_column=task_args.label_column,
        text_pair_column=task_args.text_pair_column,
        label_separator=task_args.label_separator,
    )
    task = load_task(
        task_args.train_file, task_args.validation_file, task_args.test_file, task_args.task_type, **columns
    )
    if task.task_type == "token" and task_args.text_pair_column:
        raise UsageError("--text_pair_column is for sequence tasks, not token classification")
    if task_args.validation_limit:
        # A fixed draw (seed 0), so every seed and every run being compared is scored on the same dev examples.
        task.dev = task.dev.subset(stratified_sample(task.dev.labels, task_args.validation_limit, seed=0))
    selection_metric(task, args)  # an unknown metric fails now, not after the first epoch
    source, tokenizer, config = load_tokenizer_and_config(task_args, task)
    limit = getattr(config, "max_position_embeddings", None) or 512
    if tokenizer.model_max_length < 1_000_000:  # "no limit" is a huge sentinel; RoBERTa's 514 positions hold 512
        limit = min(limit, tokenizer.model_max_length)
    max_length = task_args.max_seq_length or min(512, limit)
    if not 2 < max_length <= limit:
        raise UsageError(f"--max_seq_length {max_length}: the model takes 3 to {limit} tokens")
    splits = {"train": task.train, "dev": task.dev, "test": task.test}
    encoded = {name: encode(task, split, tokenizer, max_length) for name, split in splits.items() if split}
    logger.info(
        "%s task, %d labels; %d train / %d dev / %s test examples; seeds %s",
        task.task_type,
        len(task.labels),
        len(task.train),
        len(task.dev),
        len(task.test) if task.test else "no",
        ", ".join(map(str, seeds)),
    )
    key = fingerprint(task_args, args, task)
    earlier = {seed: finished_seed(args.output_dir, seed, key) if task_args.resume else None for seed in seeds}
    pending = [seed for seed in seeds if earlier[seed] is None]
    # The first model is loaded before anything is written, so a broken checkpoint leaves no half-made directory.
    model = load_seeded_model(task, source, config, pending[0], args) if pending else None
    adapter = adapter_record(source, model)
    os.makedirs(args.output_dir, exist_ok=True)
    write_json(os.path.join(args.output_dir, "dontstop_config.json"), resolved_config(task_args, args))
    records = []
    for i, seed in enumerate(seeds, start=1):
        if earlier[seed] is not None:
            logger.info("Seed %d (%d of %d): finished earlier, reusing its result", seed, i, len(seeds))
            records.append(earlier[seed])
            continue
        logger.info("Seed %d (%d of %d)", seed, i, len(seeds))
        model = model if seed == pending[0] else load_seeded_model(task, source, config, seed, args)
        records.append(run_seed(seed, task, model, tokenizer, encoded, task_args, args, args.output_dir, key))
        model = None  # free it before the next seed loads

    metric_names = list(METRICS[task.task_type])
    results = {
        "task_type": task.task_type,
        "model": task_args.model_name_or_path,
        "labels": task.labels,
        "primary_metric": selection_metric(task, args),
        "metrics": metric_names,
        "train_file": task.train.describe(),
        "validation_file": task.dev.describe(),
        "test_file": task.test.describe() if task.test else None,
        "max_seq_length": max_length,
        "truncated": {name: enc.truncated for name, enc in encoded.items()},
        "seeds": records,
        "aggregate": {
            split: {m: aggregate([r[split][m] for r in records]) for m in metric_names}
            for split in ("dev", "test")
            if split in records[0]
        },
        "averaging": averaging_summary(records, metric_names),
        "adapter": adapter,
        "wall_seconds": round(time.time() - started, 1),
    }
    write_json(os.path.join(args.output_dir, "results.json"), results)
    write_finetune_readme(args.output_dir, results, args)
    logger.info("\n%s", "\n".join(results_table(results)))
    return results


EXAMPLES = """examples:
  # the paper's protocol: 5 seeds, best epoch on dev, test mean ± std
  dontstop finetune --model_name_or_path runs/dapt --train_file train.jsonl --validation_file dev.jsonl \\
      --test_file test.jsonl --seeds 5 --output_dir runs/dapt-ft

  # few-shot (200 examples drawn stratified per seed), with competition tricks
  dontstop finetune --model_name_or_path roberta-base --train_file train.jsonl --validation_file dev.jsonl \\
      --test_file test.jsonl --train_limit 200 --adversarial fgm --ema 0.999 --output_dir runs/base-ft

  # SWA over the second half of the epochs; results.json sets its dev scores beside the raw weights'
  dontstop finetune --model_name_or_path runs/dapt --train_file train.jsonl --validation_file dev.jsonl \\
      --test_file test.jsonl --swa_start 0.5 --output_dir runs/dapt-ft-swa

  # a LoRA task adapter (frozen model, higher learning rate) on a LoRA domain adapter from `dontstop pretrain`,
  # which is merged into its base first; kept models get the task adapter and, merged, a plain model
  dontstop finetune --model_name_or_path runs/dapt-lora --adapter lora --learning_rate 5e-4 \\
      --train_file train.jsonl --validation_file dev.jsonl --test_file test.jsonl \\
      --keep_models --merge_adapter --output_dir runs/dapt-lora-ft

  # token classification (jsonl records {"text": [words], "label": [BIO tags]}), entity F1
  dontstop finetune --model_name_or_path bert-base-cased --train_file ner_train.jsonl \\
      --validation_file ner_dev.jsonl --test_file ner_test.jsonl --output_dir runs/ner

  # then: dontstop compare runs/base-ft runs/dapt-ft
"""


def make_parser():
    from .cli import stage_parser

    return stage_parser(
        (TaskArguments, FinetuningArguments),
        prog="dontstop finetune",
        description=__doc__.split("\n\n")[0],
        epilog=EXAMPLES,
    )


def main(argv: list[str]) -> int:
    from .cli import parse_with_config

    task_args, args = parse_with_config(make_parser(), argv)
    run_finetune(task_args, args)
    return 0
