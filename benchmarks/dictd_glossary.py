"""A glossary (term<TAB>definition) from dictd dictionaries: FOLDOC and the Jargon File, as Debian ships them.

    cd /tmp && apt-get download dict-foldoc dict-jargon && for d in dict-*.deb; do dpkg-deb -x $d ex; done
    .venv/bin/python benchmarks/dictd_glossary.py --dictd /tmp/ex/usr/share/dictd \\
        --texts ../shared/data/en/debian_sections/{train,dev,test}.jsonl --output benchmarks/data/foldoc_jargon.tsv

How they are parsed. A dictd database is `NAME.index` (one line per headword: the headword, the byte offset and the
byte length of its entry in base64 digits A-Z a-z 0-9 + /) and `NAME.dict.dz` (the entries, dictzip: gzip-readable).
Index lines pointing at the same bytes are one entry with several headwords (aliases: "kernel", "kernal"). An entry is
its headword lines, then indented paragraphs separated by blank lines. The definition is the entry's first paragraph
that is one. Skipped: notes in parentheses ("(Note: NOT "kernal")"), dates ("(1996-06-07)"), bracketed sources, and
what is left with fewer than 3 words (Jargon's pronunciation line `/day'mn/, n.`). Removed from the start: a sense
number ("1. "), FOLDOC's subject tag ("<operating system>"), pronunciations ("/day'mn/ or /dee'mn/") and a bracketed
etymology ("[from Maxwell's Demon ...]"). Cross-reference braces are dropped ("{Unix}" -> "Unix"), whitespace
collapsed, and the text cut after the sentence that passes 200 characters (at most 400). A headword keeps the case of
the entry's own headword line (the index lower-cases it). The databases' own `00-database-*` entries and FOLDOC's
notice `missing` are left out, and headwords of one character or without a letter. FOLDOC comes first, so a term
both define keeps FOLDOC's definition. With `--texts`, only the terms that occur in those texts (as whole words, any
case) are written: the subset a task needs.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import sys

DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
SKIP = re.compile(r"^(\(.*\)\.?|\[.*\]\.?|\d{4}-\d{2}-\d{2})$")
PRONUNCIATION = re.compile(r"^(/[^/]{1,40}/[,;]?\s*(or\s+)?)+")
SENSE = re.compile(r"^\d+\.\s+")
TAG = re.compile(r"^<[^<>]{1,60}>\s*")
ETYMOLOGY = re.compile(r"^\[[^\[\]]*\]\s*")
BRACES = re.compile(r"\{([^{}]*)\}")


def number(text: str) -> int:
    value = 0
    for character in text:
        value = value * 64 + DIGITS.index(character)
    return value


def entries(directory: str, name: str):
    """(headwords, entry text) of every entry of a dictd database, in file order."""
    with gzip.open(os.path.join(directory, f"{name}.dict.dz"), "rb") as f:
        data = f.read()
    spans: dict[tuple[int, int], list[str]] = {}
    with open(os.path.join(directory, f"{name}.index"), encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 3:
                spans.setdefault((number(parts[1]), number(parts[2])), []).append(parts[0])
    for (offset, length), heads in sorted(spans.items()):
        yield heads, data[offset : offset + length].decode("utf-8", errors="replace")


def headwords(text: str) -> list[str]:
    """The entry's own headword lines, in their case (the index holds them lower-cased)."""
    lines = text.replace("\r", "").split("\n")
    return [line.strip() for line in lines[: next((i for i, x in enumerate(lines) if not x.strip() or x[0] == " "),
                                                  len(lines))]]  # fmt: skip


def definition(text: str) -> str | None:
    """The entry's first defining paragraph, cleaned and cut (see the module docstring)."""
    lines = text.replace("\r", "").split("\n")
    while lines and lines[0].strip() and not lines[0].startswith(" "):
        lines.pop(0)  # the headword lines
    paragraphs, current = [], []
    for line in lines + [""]:
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    for paragraph in paragraphs:
        if SKIP.match(paragraph):
            continue
        cleaned = ETYMOLOGY.sub("", PRONUNCIATION.sub("", TAG.sub("", SENSE.sub("", paragraph))))
        cleaned = " ".join(BRACES.sub(r"\1", BRACES.sub(r"\1", cleaned)).split())
        if len(cleaned.split()) >= 3:
            return cut(cleaned)
    return None


def cut(text: str, at: int = 200, most: int = 400) -> str:
    end = text.find(". ", at)
    return text if len(text) <= at or end < 0 else text[: min(end + 1, most)]


# Entries that are the dictionary's notices about itself, not definitions: FOLDOC's "missing" is its page on
# missing entries ("First, this is an (English language) computing dictionary...").
NOTICES = {("foldoc", "missing")}


def glossary(directory: str) -> dict[str, str]:
    """{term: definition}, FOLDOC first, then the Jargon File's terms FOLDOC lacks."""
    terms: dict[str, str] = {}
    for name in ("foldoc", "jargon"):
        for heads, text in entries(directory, name):
            if any(h.startswith(("00-database", "00database")) or (name, h) in NOTICES for h in heads):
                continue
            meaning = definition(text)
            cased = {h.lower(): h for h in headwords(text)}
            for head in heads:
                head = " ".join(cased.get(head.lower(), head).split())
                if meaning and len(head) > 1 and re.search(r"[A-Za-z]", head) and "\t" not in head:
                    terms.setdefault(head, meaning)
    return terms


def occurring(terms: dict[str, str], paths: list[str]) -> dict[str, str]:
    """The terms found (whole words, any case) in the `text` of the jsonl records of `paths`."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    from dontstop.knowledge.terms import TextTerms

    finder = TextTerms(terms)
    found = set()
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                text = json.loads(line)["text"]
                found.update(text[s:e].lower() for s, e in finder.spans(text))
    return {term: meaning for term, meaning in terms.items() if term.lower() in found}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dictd", required=True, help="the directory holding foldoc.* and jargon.*")
    parser.add_argument("--texts", nargs="*", default=[], help="jsonl files: keep only the terms found in them")
    parser.add_argument("--output", required=True)
    opts = parser.parse_args(argv)
    terms = glossary(opts.dictd)
    kept = occurring(terms, opts.texts) if opts.texts else terms
    with open(opts.output, "w", encoding="utf-8") as f:
        f.write("term\tdefinition\n")
        for term, meaning in kept.items():
            f.write(f"{term}\t{meaning}\n")
    print(f"{len(terms):,} terms defined; {len(kept):,} written to {opts.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
