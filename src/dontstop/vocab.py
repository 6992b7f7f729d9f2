"""`dontstop vocab extend`: give a model's tokenizer the domain's words as whole tokens, each new embedding row
starting as the mean of the rows of the pieces the old tokenizer split the word into.

    dontstop vocab extend --model_name_or_path roberta-base --words runs/mine/words.tsv --top 2000 \\
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
import re
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field

from .errors import UsageError
from .outputs import check_output_dir, resolve_model_path, write_json

logger = logging.getLogger(__name__)

# What `dontstop vocab extend` writes beside the model; `dontstop pretrain --train_new_embeddings_only_steps` reads it.
VOCAB_FILE = "dontstop_vocab.json"

# Scripts written without spaces between words: Han, kana, Thai, Lao, Myanmar, Khmer.
UNSPACED = re.compile(
    "[\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
    "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff]"
)
# jieba's user-dictionary line, `word [freq] [tag]`. Its own reader takes "deep learning" as the word "deep" with the
# tag "learning"; here a tag without a frequency is read only after a non-ASCII word (北京大学 n), and any other line
# with a space is taken whole, so nothing is silently cut off.
JIEBA_LINE = re.compile(r"^(.+?) [0-9]+( [a-z]+)?$|^([^\x00-\x7f]\S*) [a-z]+$")


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


@dataclass
class Addition:
    """One word on its way into the vocabulary."""

    word: str
    line: int
    token: str  # the AddedToken's content: the word, normalised for tokenizers that normalise
    piece_ids: list[int]
    pieces: list[str]
    single_word: bool
    lstrip: bool
    normalized: bool
    id: int | None = None


def read_words(path: str) -> list[tuple[int, str]]:
    """(line number, word) for every word in the file, in file order.

    A .tsv file, or one whose first line holds a tab, is a table with a header naming a `word` column (words.tsv of
    `dontstop mine`); a .txt file is read as a jieba user dictionary (`word [freq] [tag]`, of which a plain word list
    is a special case); anything else holds one word per line. Blank lines are skipped.
    """
    if not os.path.isfile(path):
        raise UsageError(f"--words {path}: no such file")
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise UsageError(f"{path}:{line}: invalid UTF-8") from None
    lines = [line.rstrip("\r") for line in text.split("\n")]
    first = next((line for line in lines if line.strip()), "")
    words = []
    if path.endswith(".tsv") or "\t" in first:
        header = [cell.strip() for cell in lines[0].split("\t")]
        if "word" not in header:
            raise UsageError(f"{path}:1: no 'word' column in the header (columns: {', '.join(header)})")
        column = header.index("word")
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            cells = line.split("\t")
            word = cells[column].strip() if column < len(cells) else ""
            if not word:
                raise UsageError(f"{path}:{number}: empty word")
            words.append((number, word))
    else:
        jieba = path.endswith(".txt")
        for number, line in enumerate(lines, start=1):
            line = line.strip()
            if line:
                entry = JIEBA_LINE.match(line) if jieba else None
                words.append((number, (entry.group(1) or entry.group(3)) if entry else line))
    if not words:
        raise UsageError(f"{path}: no words")
    return words


def token_row_parameters(model) -> dict:
    """{name: parameter} of every tensor with one row per token: the input embeddings, the output embeddings when
    they are not tied to them, and the output biases (1-D `bias` tensors of the head, outside the base model).
    Tied tensors appear once."""
    rows = model.get_input_embeddings().weight.shape[0]
    wanted = {id(model.get_input_embeddings().weight)}
    output = model.get_output_embeddings()
    if output is not None:
        wanted.add(id(output.weight))
    base = f"{model.base_model_prefix}."
    return {
        name: param
        for name, param in model.named_parameters()  # named_parameters lists a tied tensor once
        if id(param) in wanted
        or (param.dim() == 1 and len(param) == rows and name.endswith("bias") and not name.startswith(base))
    }


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def spaces_are_tokens(tokenizer) -> bool:
    """Whether the tokenizer keeps the space before a word inside a token (byte-level BPE's Ġ, SentencePiece's ▁)."""
    return len(_encode(tokenizer, "a ")) > len(_encode(tokenizer, "a"))


def old_pieces(tokenizer, word: str, unspaced: bool) -> list[int]:
    """The ids the tokenizer gives `word` in running text: after a space for space-delimited words, alone for
    words of unspaced scripts."""
    if unspaced:
        return _encode(tokenizer, word)
    prefix = _encode(tokenizer, "a")
    ids = _encode(tokenizer, f"a {word}")
    return ids[len(prefix) :] if ids[: len(prefix)] == prefix else _encode(tokenizer, word)


def plan_additions(
    tokenizer, words: list[tuple[int, str]], top: int | None, include_phrases: bool
) -> tuple[list[Addition], list[dict]]:
    """(words to add, words skipped with their reasons), reading `words` in order until `top` are to be added."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    normalizer = backend.normalizer if backend is not None else None
    lstrip = spaces_are_tokens(tokenizer)
    vocabulary = tokenizer.get_vocab()
    additions, skipped, first_line = [], [], {}
    for line, word in words:
        if top is not None and len(additions) >= top:
            break
        if not include_phrases and any(c.isspace() for c in word):
            skipped.append({"word": word, "line": line, "reason": "phrase (whitespace inside; --include_phrases)"})
            continue
        unspaced = UNSPACED.search(word) is not None
        normalized = not unspaced
        token = normalizer.normalize_str(word).strip() if normalized and normalizer is not None else word
        if token in first_line:
            skipped.append({"word": word, "line": line, "reason": f"duplicate of line {first_line[token]}"})
            continue
        first_line[token] = line
        ids = old_pieces(tokenizer, word, unspaced)
        if len(ids) <= 1:
            reason = "already one token" if ids else "no tokens (the tokenizer drops it)"
            skipped.append(
                {"word": word, "line": line, "reason": reason, "pieces": tokenizer.convert_ids_to_tokens(ids)}
            )
            continue
        if token in vocabulary:  # e.g. byte-level BPE has "word" but not "Ġword": an added token would reuse its id
            skipped.append({"word": word, "line": line, "reason": "in the vocabulary, but not in running-text form"})
            continue
        additions.append(
            Addition(
                word=word,
                line=line,
                token=token,
                piece_ids=ids,
                pieces=tokenizer.convert_ids_to_tokens(ids),
                single_word=not unspaced,
                lstrip=lstrip and not unspaced,
                normalized=normalized,
            )
        )
    return additions, skipped


def add_to_tokenizer(tokenizer, additions: list[Addition]) -> None:
    """Add the words as tokens, set each `Addition.id`, and check each word now encodes as its one new token."""
    from transformers import AddedToken

    old_size = len(tokenizer)
    tokenizer.add_tokens(
        [AddedToken(a.token, single_word=a.single_word, lstrip=a.lstrip, normalized=a.normalized) for a in additions]
    )
    for a in additions:
        a.id = tokenizer.convert_tokens_to_ids(a.token)
    ids = [a.id for a in additions]
    if len(set(ids)) != len(ids) or min(ids) < old_size:
        raise RuntimeError("the tokenizer reused existing ids for added words")
    # At the start of a text and after a space: the places `single_word`, `lstrip` and `normalized` decide.
    wrong = [
        a.word
        for a in additions
        if _encode(tokenizer, a.word) != [a.id]
        or (a.single_word and _encode(tokenizer, f"a {a.word}") != _encode(tokenizer, "a") + [a.id])
    ]
    if wrong:
        raise RuntimeError(f"added words that do not encode as their new token: {', '.join(wrong[:10])}")


@dataclass
class Extension:
    """What `extend_vocabulary` did, as written to dontstop_vocab.json."""

    old_vocab_size: int
    new_vocab_size: int
    old_embedding_rows: int
    new_embedding_rows: int
    row_parameters: list[str]


def extend_vocabulary(model, tokenizer, additions: list[Addition], pad_to_multiple_of: int | None = None) -> Extension:
    """Add the words to the tokenizer and resize the model; each new row of every token-row tensor (input embeddings,
    untied output embeddings, output biases) becomes the mean of the old pieces' rows."""
    import torch

    old_vocab_size = len(tokenizer)
    old_rows = model.get_input_embeddings().weight.shape[0]
    biases = [name for name, p in token_row_parameters(model).items() if p.dim() == 1]
    add_to_tokenizer(tokenizer, additions)
    # Never shrink: a checkpoint may carry more rows than its tokenizer has tokens. The new rows are set below, so
    # the library's own initialisation of them (mean_resizing) would be wasted work.
    model.resize_token_embeddings(
        max(len(tokenizer), old_rows), pad_to_multiple_of=pad_to_multiple_of, mean_resizing=False
    )
    rows = model.get_input_embeddings().weight.shape[0]
    stale = [name for name in biases if model.get_parameter(name).shape[0] != rows]
    if stale:  # logits would not match the vocabulary
        raise RuntimeError(f"resize_token_embeddings left {', '.join(stale)} at {old_rows} rows")
    params = token_row_parameters(model)
    ids = torch.tensor([a.id for a in additions])
    with torch.no_grad():
        for param in params.values():
            means = torch.stack([param[a.piece_ids].float().mean(0) for a in additions])
            param[ids.to(param.device)] = means.to(param.dtype)
    return Extension(old_vocab_size, len(tokenizer), old_rows, rows, sorted(params))


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

    from .pretrain import ModelArguments, load_model_and_tokenizer

    words = validate_arguments(args)
    set_seed(args.seed)  # a checkpoint without an MLM head gets a fresh one: the seed fixes it
    model_args = ModelArguments(model_name_or_path=args.model_name_or_path, objective=args.objective)
    model, tokenizer, objective, untrained = load_model_and_tokenizer(model_args)
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
    from .cli import stage_parser

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
    from .cli import parse_with_config

    if argv and argv[0] in ("-h", "--help"):
        sys.stdout.write(top_level_help())
        raise SystemExit(0)  # as argparse does for --help
    if not argv or argv[0] not in SUBCOMMANDS:
        got = f"unknown sub-command {argv[0]!r}" if argv else "missing sub-command"
        raise UsageError(f"{got} (sub-commands: {', '.join(SUBCOMMANDS)}; e.g. dontstop vocab extend --help)")
    (args,) = parse_with_config(make_parser(), argv[1:])
    run_extend(args)
    return 0
