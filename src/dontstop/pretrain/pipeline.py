"""A pretraining run, step by step: load the model, build the data and the trainer, train, save."""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass

from transformers import TrainerCallback, set_seed

from ..adapters import save_merged, underlying_model
from ..attention import SegmentAttention
from ..averaging import pretrain_report
from ..checkpoints import CHECKPOINT, loss_sum_before
from ..errors import UsageError
from ..masking import CausalLMCollator, EpochIndexed, MaskedLMCollator
from ..models import MERGED_DIR, LanguageModel, carry_unused_weights, load_language_model
from ..outputs import write_json
from ..records import PretrainMetrics, eval_values
from ..replay import ReplayMix
from ..tokenization import Framing, check_unknown_tokens
from .args import (
    DataArguments,
    MaskingArguments,
    ModelArguments,
    PretrainingArguments,
    checkpoint_to_resume,
    validate,
    vocab_extension,
)
from .card import write_model_card
from .data import DatasetBuilder, Datasets
from .freezing import Freezing, derived_head_warmup_steps
from .snapshots import Snapshots
from .trainer import PretrainTrainer

logger = logging.getLogger(__name__)


@dataclass
class Model:
    """The loaded model, ready to train: adapter-wrapped if asked, with what its warm-ups need."""

    lm: LanguageModel
    added_ids: list[int]  # rows `dontstop vocab extend` added
    adapter: object | None = None  # adapters.PretrainingAdapter
    segments: SegmentAttention | None = None  # with --padding_free or --packing documents
    knowledge: object | None = None  # knowledge.visibility.KnowledgeAttention, with --glossary or --triples


def load(model_args: ModelArguments, training_args: PretrainingArguments) -> Model:
    set_seed(training_args.seed)  # before loading: --seed must also fix the initialisation of any new head
    lm = load_language_model(
        model_args.model_name_or_path, model_args.config_name, model_args.tokenizer_name, model_args.objective
    )
    added_ids, untrained = vocab_extension(model_args)
    # `dontstop vocab extend` of a checkpoint without an MLM head saved a fresh head: it still needs its warm-up.
    lm.new_params |= {name for name, _ in lm.model.named_parameters() if name in untrained}
    if added_ids and max(added_ids) >= lm.model.get_input_embeddings().weight.shape[0]:
        raise UsageError(f"{model_args.model_name_or_path}: dontstop_vocab.json names token ids the model lacks")
    model = Model(lm, added_ids)
    if model_args.ngram_adapter:
        add_ngram_adapter(lm, model_args)
    if training_args.uses_adapter:
        from ..adapters import add_pretraining_adapter

        model.adapter = add_pretraining_adapter(lm.model, training_args, lm.objective, lm.new_params, added_ids)
        lm.model, lm.new_params = model.adapter.model, model.adapter.new_params
    return model


def add_ngram_adapter(lm: LanguageModel, model_args: ModelArguments) -> None:
    """A fresh n-gram adapter on the model (--ngram_adapter); with --ngram_freeze_model, all else frozen but the
    weights the checkpoint lacked."""
    from ..knowledge.ngram_adapter import new_ngram_adapter, ngram_adapter_of

    if ngram_adapter_of(lm.model) is not None:
        raise UsageError(f"{model_args.model_name_or_path} has an n-gram adapter already (it trains on without "
                         "--ngram_adapter)")  # fmt: skip
    adapter = new_ngram_adapter(lm.model, lm.tokenizer, model_args)
    if model_args.ngram_freeze_model:
        own = {id(p) for p in adapter.parameters()}
        for name, param in lm.model.named_parameters():
            param.requires_grad = id(param) in own or name in lm.new_params


def configure_attention(model: Model, model_args: ModelArguments, data_args: DataArguments, training_args) -> None:
    """Set the model's attention kernel and, with --padding_free or --packing documents, what confines attention to
    each segment (attention.py); a model that cannot have it is a UsageError. Appended knowledge (--glossary) takes a
    4-D mask, never flash attention's varlen kernel."""
    from ..attention import check_segment_support, set_implementation

    inner, option = underlying_model(model.lm.model), data_args.segment_option
    for needs_mlm in (option, "--glossary/--triples" if data_args.uses_knowledge else None):
        if needs_mlm and model.lm.objective != "mlm":
            raise UsageError(f"{needs_mlm} is for masked LMs; this model trains with {model.lm.objective}")
    if option:
        check_segment_support(inner, option)
    half = training_args.bf16 or training_args.fp16
    set_implementation(inner, model_args.attn_implementation, option is not None and not data_args.uses_knowledge,
                       half)  # fmt: skip
    if option:
        model.segments = SegmentAttention.for_model(inner)
    if data_args.uses_knowledge:
        from ..knowledge.visibility import KnowledgeAttention

        model.knowledge = KnowledgeAttention.for_model(inner, data_args.knowledge_attention == "both_ways")


def sequence_length(data_args: DataArguments, lm: LanguageModel) -> int:
    model_max = getattr(lm.model.config, "max_position_embeddings", 512)
    return data_args.max_seq_length or min(512, lm.tokenizer.model_max_length, model_max)


def collator(lm: LanguageModel, masking_args: MaskingArguments, seed: int, data_args: DataArguments | None = None):
    if lm.objective != "mlm":
        return CausalLMCollator(lm.tokenizer.pad_token_id)
    from .prompted import protected_sequences

    return MaskedLMCollator.from_tokenizer(
        lm.tokenizer,
        lm.model.config.vocab_size,
        seed=seed,
        masking=masking_args.spec(),
        mlm_probability=masking_args.mlm_probability,
        mask_replace_prob=masking_args.mask_replace_prob,
        random_replace_prob=masking_args.random_replace_prob,
        padding_free=bool(data_args and data_args.padding_free),
        knowledge_loss=not data_args or data_args.knowledge_loss,
        protected=protected_sequences(data_args, lm.tokenizer) if data_args else (),
    )


def first_batch(train, size: int) -> list[list[int]]:
    """The token ids of the first `size` training examples (in corpus order)."""
    import itertools

    if hasattr(train, "__getitem__") and hasattr(train, "__len__"):
        examples = (train[i] for i in range(min(size, len(train))))
    else:
        examples = itertools.islice(iter(train), size)
    return [list(map(int, example["input_ids"])) for example in examples]


def planned_steps(training_args: PretrainingArguments, train, batch: int) -> int:
    if training_args.max_steps > 0:
        return training_args.max_steps
    per_epoch = math.ceil(len(train) / (batch * max(1, training_args.world_size)))
    return per_epoch * math.ceil(training_args.num_train_epochs)


def freezing(model: Model, model_args: ModelArguments, steps: int, evaluates: bool) -> Freezing | None:
    """The warm-ups this run needs (see freezing.py), or None."""
    lm = model.lm
    head_steps = 0
    if lm.new_params and not model_args.config_name:
        head_steps = derived_head_warmup_steps(model_args.head_warmup_steps, steps)
        what = f"{lm.objective.upper()} head not in the checkpoint ({len(lm.new_params)} tensors)"
        if head_steps:
            logger.info("%s: a new one trains alone first (head warm-up: %d of %d steps at learning rate %g)", what,
                        head_steps, steps, model_args.head_warmup_learning_rate)  # fmt: skip
        else:
            logger.info("%s: a new one trains with the rest from the start (--head_warmup_steps 0)", what)
    rows_steps = model_args.train_new_embeddings_only_steps
    if not head_steps and not rows_steps:
        return None
    rows, whole = (model.adapter.token_rows, model.adapter.whole_rows) if model.adapter else (None, None)
    if rows_steps and rows is None:
        from ..vocab.rows import token_row_parameters

        rows = token_row_parameters(lm.model)
    return Freezing(
        lm.model, lm.new_params, head_steps, rows, model.added_ids, rows_steps, whole, evaluate_after_head=evaluates
    )


def build_trainer(model: Model, arguments, data: Datasets, callbacks: list) -> tuple[PretrainTrainer, Freezing | None]:
    model_args, data_args, masking_args, training_args = arguments
    batch = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
    total = planned_steps(training_args, data.train, batch)
    freeze = freezing(model, model_args, total, bool(data.eval))
    averager = training_args.averager()
    snapshots = None
    if training_args.snapshots:
        source = None if model.adapter or model_args.config_name else model_args.model_name_or_path  # carried from
        snapshots = Snapshots(training_args.snapshots, total, source, model.lm.objective)
    callbacks = list(callbacks) + [c for c in (freeze, averager, snapshots) if c is not None]
    if data.eval and training_args.eval_steps and training_args.eval_strategy == "no":
        training_args.eval_strategy = "steps"  # --eval_steps alone means: evaluate every that many steps
    trainer = PretrainTrainer(
        model=model.lm.model,
        args=training_args,
        train_dataset=data.train,
        eval_dataset=data.eval or None,
        data_collator=collator(model.lm, masking_args, training_args.seed, data_args),
        processing_class=model.lm.tokenizer,
        callbacks=callbacks,
        objective=model.lm.objective,
        prefer_masked_only_head=model_args.masked_only_head,
        # Batched by length to waste little on padding; padding-free batches have none, and pack mixed lengths best.
        sampler_lengths=data.train.lengths()
        if data_args.line_by_line and not data_args.padding_free and isinstance(data.train, EpochIndexed)
        else None,
        averager=averager,
        head_warmup=(freeze.head_steps, model_args.head_warmup_learning_rate) if freeze else None,
        segment_attention=model.segments,
        knowledge_attention=model.knowledge,
    )
    if snapshots is not None:
        snapshots.trainer = trainer
    return trainer, freeze


def train(trainer: PretrainTrainer, model: Model, data: Datasets, freeze, checkpoint, replay_file) -> PretrainMetrics:
    """Evaluate, train, evaluate again; the record of it all."""
    metrics = PretrainMetrics(objective=model.lm.objective)
    if data.eval and not checkpoint:
        metrics.before = trainer.evaluate()
        trainer.add_callback(KeepEvaluationBefore(metrics.before))
    # Read before training: with --save_total_limit, the checkpoint resumed from is rotated away during the run.
    earlier = loss_sum_before(checkpoint) if checkpoint else None
    trainer.loss_sum_before_resume = earlier or 0.0
    metrics.train = trainer.train(resume_from_checkpoint=checkpoint).metrics
    if checkpoint:
        keep_history(metrics, trainer, checkpoint, earlier)
    if isinstance(data.train, ReplayMix):
        drawn = trainer.args.train_batch_size * max(1, trainer.args.world_size)
        usage = data.train.report(trainer.state.epoch, trainer._get_train_sampler(), examples_per_batch=drawn)
        metrics.replay = {"file": replay_file, **usage}
    if freeze is not None and freeze.head_steps:
        metrics.head_warmup = {
            "steps": freeze.head_steps,
            "new_parameters": sorted(model.lm.new_params),
            "eval_after_warmup": freeze.metrics_after_head,
        }
    if freeze is not None and freeze.rows_steps:
        metrics.new_embeddings_only = {
            "steps": freeze.rows_steps,
            "new_tokens": len(model.added_ids),
            "tensors": sorted(freeze.rows),
        }
    if data.eval:
        metrics.after = trainer.evaluate()
    if trainer.averager is not None:  # takes the averaged weights' final metrics out of metrics.after
        metrics.averaged = pretrain_report(trainer.averager, metrics.after, list(data.eval))
    metrics.history = trainer.state.log_history
    metrics.knowledge = data.stats.get("knowledge")
    metrics.ngram_adapter = ngram_report(trainer.model)
    return metrics


def ngram_report(model) -> dict | None:
    from ..knowledge.ngram_adapter import ngram_adapter_of

    adapter = ngram_adapter_of(underlying_model(model))
    if adapter is None:
        return None
    frozen = any(not p.requires_grad for n, p in model.named_parameters() if not n.startswith("ngram_adapter."))
    return {"ngrams": len(adapter.words), "layers": len(adapter.encoder), "frozen_model": frozen,
            "parameters": sum(p.numel() for p in adapter.parameters())}  # fmt: skip


class KeepEvaluationBefore(TrainerCallback):
    """`Trainer.train` starts a fresh log, dropping the evaluation made just before it: put it back at step 0, so
    every checkpoint carries it and a resumed run can still report where training began."""

    def __init__(self, evaluation: dict):
        self.evaluation = evaluation

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step == 0:
            state.log_history.insert(0, {**self.evaluation, "step": 0})


def keep_history(metrics: PretrainMetrics, trainer: PretrainTrainer, checkpoint: str, earlier: float | None) -> None:
    """A resumed run's record as if it had not stopped: the evaluation before training (logged at step 0, restored
    with the checkpoint's log) and the training loss over every step, not only those since the resume (from
    `earlier`, the loss sum the checkpoint records; a checkpoint without one leaves the last segment's loss, with a
    note)."""
    before = next((e for e in trainer.state.log_history if e.get("step") == 0 and eval_values(e)), None)
    if before is not None:
        metrics.before = {k: v for k, v in before.items() if k.startswith("eval_")}
    resumed_at, steps = trainer._initial_global_step, trainer.state.global_step
    segment = metrics.train.get("train_loss")
    if earlier is None:
        logger.warning("%s records no training loss: train_loss covers only the steps since the resume", checkpoint)
    elif segment is not None and steps > 0:
        metrics.train["train_loss"] = (earlier + segment * (steps - resumed_at)) / steps


def save(trainer: PretrainTrainer, model: Model, arguments, metrics: PretrainMetrics, corpus_stats: dict) -> None:
    """The weights, and beside them directories that stand alone: the averaged weights, a merged adapter; each with
    the run's config, metrics and a model card of its own."""
    training_args = arguments[3]
    out, merge, averager = training_args.output_dir, training_args.merge_adapter, trainer.averager
    trainer.restore_forward()
    trainer.save_model(out)
    cards = [(out, {})]  # directory -> what its card says of its weights
    if averager is not None and averager.ready:
        averaged_dir = os.path.join(out, averager.name)
        with averager.swapped_in(trainer.model):
            trainer.save_model(averaged_dir)
            if merge and trainer.is_world_process_zero():
                save_merged(trainer.model, model.lm.tokenizer, os.path.join(averaged_dir, MERGED_DIR))
                cards.append((os.path.join(averaged_dir, MERGED_DIR), {"weights": averager.name, "merged": True}))
        cards.append((averaged_dir, {"weights": averager.name}))
    if merge and trainer.is_world_process_zero():
        save_merged(trainer.model, model.lm.tokenizer, os.path.join(out, MERGED_DIR))
        cards.append((os.path.join(out, MERGED_DIR), {"merged": True}))
    if not trainer.is_world_process_zero():
        return
    source = arguments[0].model_name_or_path if not arguments[0].config_name else None
    whole = [d for d, card in cards if card.get("merged") or model.adapter is None]  # not the adapters alone
    for directory in whole if source else []:
        metrics.carried_weights = carry_unused_weights(source, directory, model.lm.objective) or None
    resolved = {name: asdict(a) for name, a in zip(("model", "data", "masking"), arguments[:3], strict=True)}
    resolved["training"] = training_args.to_dict()
    for directory, card in cards:
        write_json(os.path.join(directory, "dontstop_config.json"), resolved)
        metrics.save(directory)
        write_model_card(directory, arguments, metrics, corpus_stats, **card)


def run_pretrain(
    model_args: ModelArguments,
    data_args: DataArguments,
    masking_args: MaskingArguments,
    training_args: PretrainingArguments,
    callbacks: list | None = None,
) -> PretrainMetrics:
    """Continue pretraining; returns the record written to `output_dir/metrics.json`."""
    arguments = (model_args, data_args, masking_args, training_args)
    validate(model_args, data_args, training_args)
    checkpoint = checkpoint_to_resume(training_args)
    boundaries = masking_args.boundaries()
    if boundaries is not None:
        boundaries.check()
    started = time.time()
    model = load(model_args, training_args)
    if boundaries is not None and model.lm.objective != "mlm":
        raise UsageError(
            f"--masking {masking_args.masking} is for masked LMs; this model trains with {model.lm.objective}"
        )
    configure_attention(model, model_args, data_args, training_args)
    max_seq_length = sequence_length(data_args, model.lm)
    data_args.check_knowledge(max_seq_length)
    batch = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
    framing = Framing.from_tokenizer(model.lm.tokenizer)
    knowledge = data_args.knowledge(model.lm.tokenizer, framing.separator)
    builder = DatasetBuilder(data_args, model.lm.tokenizer, framing, max_seq_length, training_args.seed, boundaries,
                             knowledge)  # fmt: skip
    # Rank 0 of each node tokenizes into the cache first, then the other ranks read it: they never race `datasets`
    # over its own cache of the same file (read anew every time: corpus.open_dataset).
    with training_args.main_process_first(desc="tokenizing"):
        data = builder.build(batch)
    max_seq_length = builder.max_seq_length  # the default cut to the data (DatasetBuilder.fitted_length)
    check_unknown_tokens(first_batch(data.train, batch), model.lm.tokenizer, data_args.allow_unknown_tokens,
                         "--allow_unknown_tokens")  # fmt: skip
    size = len(data.train) if hasattr(data.train, "__len__") else "streamed"
    logger.info("Objective %s; %s training examples of up to %d tokens", model.lm.objective, size, max_seq_length)
    trainer, freeze = build_trainer(model, arguments, data, callbacks or [])
    metrics = train(trainer, model, data, freeze, checkpoint, data_args.replay_file)
    metrics.max_seq_length = max_seq_length
    metrics.wall_seconds = round(time.time() - started, 1)
    if model.adapter is not None:
        metrics.adapter = {**model.adapter.report, "merged": MERGED_DIR if training_args.merge_adapter else None}
    save(trainer, model, arguments, metrics, data.stats)
    finished = trainer.state.global_step >= trainer.state.max_steps  # not stopped early: nothing left to resume
    if finished and not training_args.keep_checkpoints and trainer.is_world_process_zero():
        remove_checkpoints(training_args.output_dir)
    summarize(metrics)
    return metrics


def remove_checkpoints(output_dir: str) -> None:
    """The run ended well and its model is saved: the checkpoints that could have resumed it go."""
    import shutil

    for name in os.listdir(output_dir):
        if CHECKPOINT.match(name):
            shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)


def summarize(metrics: PretrainMetrics) -> None:
    before = eval_values(metrics.before)
    for name, loss in sorted(eval_values(metrics.after).items()):
        was = before.get(name)
        logger.info(
            "Held-out %s %s loss: %s -> %.4f",
            name, metrics.objective.upper(), f"{was:.4f}" if was is not None else "n/a", loss,
        )  # fmt: skip
