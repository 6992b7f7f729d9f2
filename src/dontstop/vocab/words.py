"""Reading word lists (words.tsv of `dontstop mine`, jieba dictionaries, plain lists) and deciding how each word
becomes an `AddedToken` (see the package docstring)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..corpus import require_file
from ..errors import UsageError

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
    require_file(path, "--words ")
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
        if len(ids) <= 1 and ids != [tokenizer.unk_token_id]:  # an unknown word is one token, and worth adding
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
