"""Knowledge files: a glossary (`term<TAB>definition`, or jsonl with `term` and `definition`), facts as triples
(`subject<TAB>relation<TAB>object`, verbalised as "relation object"), and a list of the terms worth expanding
(`long_tail.tsv`, `words.tsv` or one term per line).

Every problem is one `UsageError` naming the option, the file and the line: a glossary line without a tab, an empty
term or definition, a triples line with other than three columns, invalid UTF-8 or JSON. A term defined twice
differently keeps its first definition, with a warning (dictionaries repeat headwords for their senses).
"""

from __future__ import annotations

import logging
import os

from ..corpus import parse_json_line, require_file
from ..errors import UsageError

logger = logging.getLogger(__name__)


def lines_of(path: str, option: str):
    """(line number, line without its newline) of a UTF-8 text file; blank lines skipped."""
    require_file(path, f"{option} ")
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n").lstrip("\ufeff")
            except UnicodeDecodeError:
                raise UsageError(f"{option} {path}:{lineno}: invalid UTF-8") from None
            if line.strip():
                yield lineno, line


def glossary_entries(path: str, option: str = "--glossary"):
    """(line, term, definition) of a glossary: TSV `term<TAB>definition` (a first line `term<TAB>definition` is a
    header), or .jsonl records with `term` and `definition`."""
    jsonl = os.path.splitext(path)[1].lower() in (".jsonl", ".json")
    for lineno, line in lines_of(path, option):
        if jsonl:
            record = parse_json_line(f"{option} {path}", lineno, line)
            term, definition = record.get("term"), record.get("definition")
            if not isinstance(term, str) or not isinstance(definition, str):
                raise UsageError(f"{option} {path}:{lineno}: expected string fields 'term' and 'definition'")
        else:
            term, tab, definition = line.partition("\t")
            if not tab:
                raise UsageError(f"{option} {path}:{lineno}: no tab (expected term<TAB>definition)")
            if lineno == 1 and (term.strip().lower(), definition.strip().lower()) == ("term", "definition"):
                continue
        term, definition = term.strip(), " ".join(definition.split())
        if not term:
            raise UsageError(f"{option} {path}:{lineno}: empty term")
        if not definition:
            raise UsageError(f"{option} {path}:{lineno}: empty definition of {term!r}")
        yield lineno, term, definition


def read_glossary(path: str, option: str = "--glossary") -> dict[str, str]:
    """{term: definition}, in file order; a term defined again differently keeps the first definition (warned once
    per file, with the first such line)."""
    definitions: dict[str, str] = {}
    repeated = []
    for lineno, term, definition in glossary_entries(path, option):
        if term not in definitions:
            definitions[term] = definition
        elif definitions[term] != definition:
            repeated.append((lineno, term))
    if repeated:
        lineno, term = repeated[0]
        logger.warning(
            "%s %s:%d: %r is defined again differently (kept the first definition; %d such line(s))",
            option, path, lineno, term, len(repeated),
        )  # fmt: skip
    return definitions


def read_triples(path: str, option: str = "--triples") -> dict[str, str]:
    """{subject: its facts verbalised}: each `subject<TAB>relation<TAB>object` line becomes "relation object" (an
    underscore in a relation reads as a space), a subject's facts joined by "; " in file order, repeats dropped."""
    facts: dict[str, list[str]] = {}
    for lineno, line in lines_of(path, option):
        cells = [cell.strip() for cell in line.split("\t")]
        if len(cells) != 3:
            raise UsageError(
                f"{option} {path}:{lineno}: {len(cells)} column(s), expected subject<TAB>relation<TAB>object"
            )
        if not all(cells):
            raise UsageError(f"{option} {path}:{lineno}: an empty subject, relation or object")
        subject, relation, obj = cells
        fact = f"{relation.replace('_', ' ')} {obj}"
        if fact not in facts.setdefault(subject, []):
            facts[subject].append(fact)
    return {subject: "; ".join(said) for subject, said in facts.items()}


def read_knowledge(glossary: str | None, triples: str | None) -> dict[str, str]:
    """{term: the text appended for it}: its definition, then its facts."""
    texts = read_glossary(glossary) if glossary else {}
    for subject, facts in (read_triples(triples) if triples else {}).items():
        texts[subject] = f"{texts[subject]} ; {facts}" if subject in texts else facts
    if (glossary or triples) and not texts:
        raise UsageError(f"{glossary or triples}: no entries")
    return texts


def read_terms(path: str, option: str) -> set[str]:
    """The terms of a word list, lower-cased: the first column of `long_tail.tsv` / `words.tsv` (its header skipped),
    or one term per line."""
    terms = set()
    for lineno, line in lines_of(path, option):
        first = line.split("\t", 1)[0].strip()
        if lineno == 1 and first == "word" and "\t" in line:
            continue
        terms.add(first.lower())
    terms.discard("")
    if not terms:
        raise UsageError(f"{option} {path}: no terms")
    return terms
