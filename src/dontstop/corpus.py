"""Reading corpora: .txt (one document per line), .jsonl/.json, .csv/.tsv, .parquet, or a saved `datasets` directory.

Files are checked before `datasets` reads them, because its errors name neither the file nor the line: invalid UTF-8,
a malformed JSON line, a missing text column and an empty corpus each become one `UsageError` that says where.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

from .errors import UsageError

logger = logging.getLogger(__name__)

SUFFIX_BUILDERS = {
    ".txt": "text",
    ".jsonl": "json",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
}
# Reading a huge file twice to validate it would double start-up; streaming runs check this many lines up front.
STREAMING_CHECK_LINES = 10_000


@dataclass(frozen=True)
class NamedPath:
    name: str
    path: str


def parse_named_path(spec: str, option: str) -> NamedPath:
    """`NAME=PATH` as given to repeatable options such as `--eval_file general=books.jsonl`."""
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise UsageError(f"{option} expects NAME=PATH, got {spec!r}")
    if not name.replace("_", "").replace("-", "").isalnum():
        raise UsageError(f"{option}: name {name!r} may hold only letters, digits, '-' and '_'")
    return NamedPath(name, path)


def corpus_format(path: str) -> str:
    """The `datasets` builder for a path, or "saved" for a `save_to_disk` directory."""
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "dataset_info.json")) or os.path.exists(
            os.path.join(path, "dataset_dict.json")
        ):
            return "saved"
        raise UsageError(f"{path}: a directory, but not one written by datasets' save_to_disk")
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SUFFIX_BUILDERS:
        raise UsageError(f"{path}: unknown corpus format {suffix!r} (expected one of {', '.join(SUFFIX_BUILDERS)})")
    return SUFFIX_BUILDERS[suffix]


def require_file(path: str, option: str = "") -> None:
    """A UsageError unless `path` is a file: "no such file", or "a directory, not a file"."""
    if os.path.isdir(path):
        raise UsageError(f"{option}{path}: a directory, not a file")
    if not os.path.isfile(path):
        raise UsageError(f"{option}{path}: no such file")


def parse_json_line(path: str, lineno: int, line: str) -> dict:
    """One JSON-lines record, or a UsageError naming the file and line."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}:{lineno}: malformed JSON ({e.msg})") from None
    if not isinstance(record, dict):
        raise UsageError(f"{path}:{lineno}: expected a JSON object per line")
    return record


def check_corpus_file(path: str, text_column: str, max_lines: int | None = None) -> int | None:
    """Raise a `UsageError` naming the file (and line) if the corpus cannot be read as text documents; else return
    how many non-empty documents it holds (None for binary formats, or when only `max_lines` were read)."""
    if os.path.isdir(path) and corpus_format(path) == "saved":
        return None
    require_file(path)
    fmt = corpus_format(path)
    if fmt == "parquet":
        return None  # binary: datasets reports a bad file itself, and the column check happens after loading
    if os.path.getsize(path) == 0:
        raise UsageError(f"{path}: the file is empty")
    if fmt == "json" and first_character(path) == "[":
        documents = check_json_array(path, text_column)
    elif fmt == "csv":
        documents = check_table(path, text_column, max_lines)
    else:
        documents = check_lines(path, fmt, text_column, max_lines)
    if documents == 0:
        raise UsageError(f"{path}: no documents (every line is empty)")
    return documents


def first_character(path: str) -> str:
    with open(path, "rb") as f:
        return f.read(4096).decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")[:1]


def decoded(path: str, lineno: int, raw: bytes) -> str:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}:{lineno}: invalid UTF-8 (byte {e.start})") from None
    if "\x00" in line:
        raise UsageError(f"{path}:{lineno}: NUL bytes: a binary file, not text")
    return line


def check_text(path: str, where: str, record: dict, text_column: str) -> bool:
    """Whether a record holds a non-empty text; a UsageError if it has no such column or holds something else."""
    if text_column not in record:
        found = ", ".join(sorted(map(str, record))) or "none"
        raise UsageError(f"{where}: no text column {text_column!r} (columns: {found})")
    value = record[text_column]
    if value is not None and not isinstance(value, str):
        raise UsageError(f"{where}: {text_column!r} is {type(value).__name__}, not text")
    return bool(value and value.strip())


def check_lines(path: str, fmt: str, text_column: str, max_lines: int | None) -> int | None:
    """A text file (a document per line) or JSON lines (an object per line)."""
    documents = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if max_lines is not None and lineno > max_lines:
                return None
            line = decoded(path, lineno, raw)
            if fmt != "json":
                documents += bool(line.strip())
            elif line.strip():
                documents += check_text(path, f"{path}:{lineno}", parse_json_line(path, lineno, line), text_column)
    return documents


def check_json_array(path: str, text_column: str) -> int:
    """A .json file holding one array of objects."""
    with open(path, "rb") as f:
        text = decoded(path, 1, f.read())
    try:
        records = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
    if not all(isinstance(r, dict) for r in records):
        raise UsageError(f"{path}: expected an array of JSON objects")
    return sum(check_text(path, f"{path}: record {i}", r, text_column) for i, r in enumerate(records, start=1))


def check_table(path: str, text_column: str, max_lines: int | None) -> int | None:
    """A .csv or .tsv file: a header naming the text column, then rows of as many fields."""
    import csv

    csv.field_size_limit(1 << 30)
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            decoded(path, lineno, raw)  # invalid UTF-8 and NUL bytes, with their line
    delimiter = "\t" if path.lower().endswith(".tsv") else ","
    documents = 0
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = [c.strip() for c in next(reader, [])]
        if text_column not in header:
            raise UsageError(f"{path}:1: no text column {text_column!r} (columns: {', '.join(header)})")
        column = header.index(text_column)
        for row in reader:
            if max_lines is not None and reader.line_num > max_lines:
                return None
            if row and len(row) != len(header):
                raise UsageError(f"{path}:{reader.line_num}: {len(row)} fields, but the header has {len(header)}")
            documents += bool(row and row[column].strip())
    return documents


def open_dataset(path: str, fmt: str, streaming: bool):
    """The file's records through `datasets` (a saved directory's 'train' split), all columns."""
    import datasets

    if fmt == "saved":
        ds = datasets.load_from_disk(path)
        if isinstance(ds, datasets.DatasetDict):
            if "train" not in ds:
                raise UsageError(f"{path}: a DatasetDict without a 'train' split (splits: {', '.join(ds)})")
            ds = ds["train"]
        return ds
    kwargs = {"delimiter": "\t"} if path.lower().endswith(".tsv") else {}
    if not streaming:
        # datasets keys its own cache of a local file on the file's modification time alone: a file rewritten within
        # the same timestamp would come back stale. Its content is what counts, so the file is read anew.
        kwargs["download_mode"] = "force_redownload"
    return datasets.load_dataset(fmt, data_files=path, split="train", streaming=streaming, **kwargs)


def load_corpus(path: str, text_column: str = "text", streaming: bool = False):
    """One corpus as a `datasets.Dataset` with a single `text` column, empty documents dropped."""
    check_corpus_file(path, text_column, max_lines=STREAMING_CHECK_LINES if streaming else None)
    fmt = corpus_format(path)
    ds = open_dataset(path, fmt, streaming)
    if streaming and fmt == "saved":
        ds = ds.to_iterable_dataset()
    text_column = "text" if fmt == "text" else text_column
    columns = ds.column_names
    if columns is not None and text_column not in columns:
        raise UsageError(f"{path}: no text column {text_column!r} (columns: {', '.join(columns)})")
    if text_column != "text":
        ds = ds.rename_column(text_column, "text")
    if columns is not None:
        ds = ds.remove_columns([c for c in columns if c != text_column])
    ds = ds.filter(lambda batch: [bool(t and t.strip()) for t in batch["text"]], batched=True)
    if not streaming and len(ds) == 0:
        raise UsageError(f"{path}: no documents")
    return ds


def iter_corpus_batches(path: str, text_column: str = "text", columns=(), batch_size: int = 4096, check: bool = True):
    """Stream a corpus in file order as batches {"text": [...], column: [...] for each of `columns`}.

    Nothing but the batch is in memory. Empty documents are kept (as "") so that a document's position is its
    record number in the file; a column the corpus lacks comes back as None values. The file is checked whole first
    (unless the caller did that already: `check=False`), so a bad line fails the run before any work, not an hour
    into it.
    """
    if check:
        check_corpus_file(path, text_column)
    fmt = corpus_format(path)
    if fmt == "text" or (fmt == "json" and path.lower().endswith(".jsonl")):
        yield from _iter_lines(path, fmt, text_column, columns, batch_size)
        return
    ds = open_dataset(path, fmt, streaming=True)  # `datasets` is imported only on this path: the one above is common
    text_column = "text" if fmt == "text" else text_column
    for batch in ds.iter(batch_size=batch_size):
        if text_column not in batch:
            raise UsageError(f"{path}: no text column {text_column!r} (columns: {', '.join(batch)})")
        size = len(batch[text_column])
        out = {"text": [t if isinstance(t, str) else "" for t in batch[text_column]]}
        for column in columns:
            out[column] = batch.get(column, [None] * size)
        yield out


def _iter_lines(path: str, fmt: str, text_column: str, columns, batch_size: int):
    """Text and JSON-lines files read directly: several times faster than `datasets` streaming, same records (a text
    file's every line, empty ones included; a JSON-lines file's every non-blank line)."""
    batch: dict[str, list] = {"text": [], **{c: [] for c in columns}}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if fmt == "text":
                batch["text"].append(line.rstrip("\r\n"))
                for c in columns:
                    batch[c].append(None)
            else:
                if not line.strip():
                    continue
                record = parse_json_line(path, lineno, line)
                value = record.get(text_column)
                batch["text"].append(value if isinstance(value, str) else "")
                for c in columns:
                    batch[c].append(record.get(c))
            if len(batch["text"]) == batch_size:
                yield batch
                batch = {"text": [], **{c: [] for c in columns}}
    if batch["text"]:
        yield batch
