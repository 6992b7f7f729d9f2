"""`dontstop vocab extend`: give a model's tokenizer the domain's words as whole tokens, each new embedding row
starting as the mean of the rows of the pieces the old tokenizer split the word into.

    dontstop vocab extend --model_name_or_path roberta-base --words runs/mine/words.tsv --top 2000 \
        --output_dir runs/roberta-ext

Words come from `dontstop mine` (words.tsv, best first), a plain list or a jieba user dictionary. Words the tokenizer
already holds as one token, duplicates and (unless asked) multi-word phrases are skipped and reported. The input
embeddings, an untied output embedding and the output bias are resized; each new row is the mean of the old pieces'
rows, so the model starts out reading the new token roughly as it read the pieces. The output directory loads with
plain `from_pretrained`; continue with `dontstop pretrain --train_new_embeddings_only_steps N`, which trains the new
rows alone first.

How each word becomes an `AddedToken` (the tokenizer matches added tokens in the text before its own splitting):
- space-delimited words get `single_word=True`, so "kernel" never matches inside "kernels";
- words in scripts written without spaces (any Han, kana, Thai, Lao, Khmer or Myanmar character) get
  `single_word=False`: a Chinese word sits between other characters, never between spaces;
- a tokenizer whose tokens carry the space before a word (byte-level BPE: RoBERTa, GPT-2; SentencePiece's "▁")
  would leave that space as a token of its own before every new word, so space-delimited words get `lstrip=True`:
  the token absorbs the space, as RoBERTa's own `<mask>` does. Like `<mask>`, the space is then lost on decoding
  ("the foobar" decodes as "thefoobar"); the token ids and character offsets are exact;
- a normalising tokenizer (BERT-uncased lower-cases and strips accents) matches space-delimited words in its
  normalised text (`normalized=True`, the word stored normalised, so "Foobar" finds "foobar"); unspaced words match
  the raw text (`normalized=False`), because BERT's normaliser puts spaces around every Han character.

The old pieces a new row averages are the word as it appears in running text: after a space for space-delimited words
(for byte-level BPE the `Ġword` form, the one mid-sentence and the one the new token replaces), alone for unspaced
words.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field

from ..errors import UsageError
from ..models import VOCAB_FILE, load_language_model, resolve_model_path
from ..outputs import check_output_dir, write_json
from .rows import extend_vocabulary
from .words import plan_additions, read_words

logger = logging.getLogger(__name__)


@dataclass
class ExtendArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Hub id or local directory of the model ('pkg:NAME' for a model shipped in a package)."},
    )
    words: str | None = field(
        default=None,
        metadata={
            "help": "The words: words.tsv from `dontstop mine` (its `word` column), a .txt jieba user dictionary "
            "(`word [freq] [tag]`), or any other file with one word per line. Taken in file order (best first)."
        },
    )
    output_dir: str | None = field(default=None, metadata={"help": "Where the extended model and tokenizer go."})
    top: int | None = field(
        default=None, metadata={"help": "Add the first N usable words (after skipping); default: all of them."}
    )
    include_phrases: bool = field(
        default=False,
        metadata={
            "help": "Also add words with whitespace inside (multi-word phrases), skipped by default: a subword "
            "vocabulary holds words, and a phrase token hides its words from the model."
        },
    )
    pad_to_multiple_of: int | None = field(
        default=None, metadata={"help": "Pad the embedding matrix to a multiple of this many rows (e.g. 64)."}
    )
    objective: str = field(
        default="auto",
        metadata={
            "help": "Load as a masked LM (mlm) or a causal LM (clm); auto infers it from the model.",
            "choices": ["auto", "mlm", "clm"],
        },
    )
    seed: int = field(default=42, metadata={"help": "Seed of a freshly initialised head (checkpoints without one)."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Write into a non-empty --output_dir (never done without this flag)."}
    )


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|")


def write_readme(path: str, metadata: dict, directory: str) -> None:
    """README.md at `path` for the extended model that will live in `directory`."""
    added, skipped = metadata["added"], metadata["skipped"]
    auto = "AutoModelForMaskedLM" if metadata["objective"] == "mlm" else "AutoModelForCausalLM"
    lines = [
        f"# `{metadata['base_model']}` with {len(added):,} domain words added to its vocabulary",
        "",
        f"Made by `dontstop vocab extend` from `{metadata['words_file']}`: vocabulary {metadata['old_vocab_size']:,} "
        f"-> {metadata['new_vocab_size']:,} tokens, embedding matrix {metadata['old_embedding_rows']:,} -> "
        f"{metadata['new_embedding_rows']:,} rows. Each new row (in {', '.join(metadata['row_parameters'])}) is the "
        "mean of the rows of the pieces the old tokenizer split the word into; nothing has been trained yet.",
        "",
        "```python",
        f"from transformers import {auto}, AutoTokenizer",
        f'model = {auto}.from_pretrained("{directory}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{directory}")',
        "```",
        "",
        "Continue pretraining, the new rows alone first:",
        "",
        "```",
        f"dontstop pretrain --model_name_or_path {directory} --train_new_embeddings_only_steps 500 \\",
        f"    --train_file domain.jsonl --output_dir {directory}-dapt",
        "```",
        "",
    ]
    if metadata["untrained_parameters"]:
        lines += [
            f"The checkpoint had no weights for {len(metadata['untrained_parameters'])} head tensors; they are "
            "freshly initialised here, and `dontstop pretrain` warms them up before the whole model trains.",
            "",
        ]
    lines += ["## Added words", "", "| word | token id | old pieces |", "|---|---|---|"]
    lines += [f"| {cell(a['word'])} | {a['id']} | {cell(' '.join(a['old_pieces']))} |" for a in added[:50]]
    if len(added) > 50:
        lines.append(f"| … {len(added) - 50:,} more in `{VOCAB_FILE}` | | |")
    reasons: dict[str, int] = {}
    for s in skipped:
        key = "duplicate" if s["reason"].startswith("duplicate") else s["reason"]
        reasons[key] = reasons.get(key, 0) + 1
    lines += ["", f"## Skipped: {len(skipped):,} words", ""]
    lines += [f"- {reason}: {count:,}" for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1])]
    lines += ["", f"Every word, its new id, its old pieces and every skipped word are in `{VOCAB_FILE}`.", ""]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def publish(tmp: str, output_dir: str) -> None:
    """Move a finished directory into place: a rename when the output directory is new or empty, else file by file
    (--overwrite_output_dir keeps files that are not ours)."""
    if os.path.isdir(output_dir) and not os.listdir(output_dir):
        os.rmdir(output_dir)
    if not os.path.exists(output_dir):
        os.replace(tmp, output_dir)
        return
    for name in os.listdir(tmp):
        target = os.path.join(output_dir, name)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        os.replace(os.path.join(tmp, name), target)
    os.rmdir(tmp)


def validate_arguments(args: ExtendArguments) -> list[tuple[int, str]]:
    """Every check on user input, before anything is loaded or written; returns the words."""
    for name in ("model_name_or_path", "words", "output_dir"):
        if not getattr(args, name):
            raise UsageError(f"--{name} is required")
    if args.top is not None and args.top < 1:
        raise UsageError(f"--top must be at least 1, got {args.top}")
    if args.pad_to_multiple_of is not None and args.pad_to_multiple_of < 1:
        raise UsageError(f"--pad_to_multiple_of must be at least 1, got {args.pad_to_multiple_of}")
    words = read_words(args.words)
    check_output_dir(args.output_dir, args.overwrite_output_dir)
    return words


def run_extend(args: ExtendArguments) -> dict:
    """Extend the vocabulary of `args.model_name_or_path`; returns what is written to dontstop_vocab.json."""
    from transformers import set_seed

    words = validate_arguments(args)
    set_seed(args.seed)  # a checkpoint without an MLM head gets a fresh one: the seed fixes it
    lm = load_language_model(args.model_name_or_path, objective=args.objective)
    model, tokenizer, objective, untrained = lm.model, lm.tokenizer, lm.objective, lm.new_params
    if untrained:
        logger.info(
            "The checkpoint has no weights for %d head tensors: the head is freshly initialised and saved with the "
            "model; dontstop_vocab.json lists them, so `dontstop pretrain` warms them up first.",
            len(untrained),
        )
    additions, skipped = plan_additions(tokenizer, words, args.top, args.include_phrases)
    if not additions:
        raise UsageError(f"{args.words}: no word to add ({len(skipped)} skipped, e.g. {skipped[0]['reason']})")
    extension = extend_vocabulary(model, tokenizer, additions, args.pad_to_multiple_of)
    if objective == "clm" and any(a.lstrip for a in additions):
        logger.warning("Decoding drops the space before a new word (its token absorbs the space, like <mask>).")

    metadata = {
        "base_model": args.model_name_or_path,
        "base_model_path": resolve_model_path(args.model_name_or_path),
        "objective": objective,
        "words_file": args.words,
        **asdict(extension),
        "initialisation": "each new row = mean of the old pieces' rows (input embeddings, untied output "
        "embeddings, output biases); old pieces = the word after a space, or alone for unspaced scripts",
        "untrained_parameters": sorted(untrained),
        "new_token_ids": [a.id for a in additions],
        "added": [
            {
                "word": a.word,
                "line": a.line,
                "token": a.token,
                "id": a.id,
                "old_pieces": a.pieces,
                "old_piece_ids": a.piece_ids,
                "single_word": a.single_word,
                "lstrip": a.lstrip,
                "normalized": a.normalized,
            }
            for a in additions
        ],
        "skipped": skipped,
        "arguments": asdict(args),
    }
    # Everything goes into a sibling directory first, renamed into place at the end: a failure leaves no half-written
    # output behind.
    output_dir = os.path.abspath(args.output_dir)
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}.tmp-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's private 0700 would outlive the rename
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(os.path.join(tmp, VOCAB_FILE), metadata)
        write_readme(os.path.join(tmp, "README.md"), metadata, args.output_dir)
        publish(tmp, output_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    already = sum(s["reason"] == "already one token" for s in skipped)
    logger.info(
        "Added %d words (%d skipped, %d of them already one token): vocabulary %d -> %d, %d embedding rows; wrote %s",
        len(additions),
        len(skipped),
        already,
        extension.old_vocab_size,
        extension.new_vocab_size,
        extension.new_embedding_rows,
        args.output_dir,
    )
    return metadata


EXAMPLES = """examples:
  # the 2000 best mined words into RoBERTa, then DAPT with the new rows trained alone for 500 steps first
  dontstop vocab extend --model_name_or_path roberta-base --words runs/mine/words.tsv --top 2000 \\
      --output_dir runs/roberta-ext
  dontstop pretrain --model_name_or_path runs/roberta-ext --train_new_embeddings_only_steps 500 \\
      --train_file domain.jsonl --output_dir runs/dapt

  # a Chinese BERT and a jieba user dictionary; multi-word entries too
  dontstop vocab extend --model_name_or_path bert-base-chinese --words user_dict.txt --include_phrases \\
      --output_dir runs/bert-zh-ext
"""


SUBCOMMANDS = {"extend": "add mined words as tokens; new rows = mean of their old pieces' rows"}


def make_parser():
    """The parser of `dontstop vocab extend`."""
    from ..config import stage_parser

    return stage_parser(
        (ExtendArguments,), prog="dontstop vocab extend", description=__doc__.split("\n\n")[0], epilog=EXAMPLES
    )


def top_level_help() -> str:
    lines = [
        "usage: dontstop vocab <sub-command> [options]    (dontstop vocab extend --help for its options)",
        "",
        __doc__.split("\n\n")[0],
        "",
        "sub-commands:",
        *(f"  {name}  {summary}" for name, summary in SUBCOMMANDS.items()),
        "",
        EXAMPLES,
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    from ..config import parse_with_config

    if argv and argv[0] in ("-h", "--help"):
        sys.stdout.write(top_level_help())
        raise SystemExit(0)  # as argparse does for --help
    if not argv or argv[0] not in SUBCOMMANDS:
        got = f"unknown sub-command {argv[0]!r}" if argv else "missing sub-command"
        raise UsageError(f"{got} (sub-commands: {', '.join(SUBCOMMANDS)}; e.g. dontstop vocab extend --help)")
    from ..outputs import owned

    (args,) = parse_with_config(make_parser(), argv[1:])
    with owned(args.output_dir):
        run_extend(args)
    return 0
