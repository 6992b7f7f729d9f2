"""One way to say "the same input": the content of files, and settings less those that cannot change a result.

Every cache keys on these: the tokenization cache (a corpus file's content, the tokenizer, the boundaries), the
resume of a fine-tuning run (a seed's settings and task files) and the stage cache of `dontstop run` (a stage's
settings, input files and parent stages). Files are hashed by content, never by size and modification time, so a
file rewritten with other text of the same size is never taken for the old one. Settings opt out per field, in the
field's metadata (see `config.py`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

from .config import fingerprinted

CHUNK = 1 << 20


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def content_hash(path: str, memo: dict | None = None) -> str:
    """sha256 of a file's bytes; for a directory (a local model, a saved dataset), of every file's relative name and
    bytes, documentation (*.md) left out: a model card or a README does not change what the model computes. A path
    that does not exist hashes as such. `memo` (path -> hash) spares hashing a file twice within one planning pass."""
    if not os.path.exists(path):
        return f"missing:{path}"
    if os.path.isdir(path):
        files = sorted(
            os.path.relpath(os.path.join(d, f), path) for d, _, names in os.walk(path) for f in names
            if not f.endswith(".md")
        )  # fmt: skip
        listing = [(name, content_hash(os.path.join(path, name), memo)) for name in files]
        return hash_json(listing)
    if memo is None:
        return file_sha256(path)
    key = os.path.abspath(path)
    if key not in memo:
        memo[key] = file_sha256(path)
    return memo[key]


def hash_json(value, default=None) -> str:
    """sha256 of a JSON-able value, keys sorted (`default` renders anything JSON cannot)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=default).encode()).hexdigest()


def settings(*arguments, scope: str = "stage") -> dict:
    """The fields of argument dataclasses that a result depends on (see `config.fingerprinted`), as JSON values."""
    kept = {}
    for argument in arguments:
        values = argument.to_dict() if hasattr(argument, "to_dict") else dataclasses.asdict(argument)
        for field in dataclasses.fields(argument):
            if field.init and field.name in values and fingerprinted(field, scope):
                kept[field.name] = values[field.name]
    return json.loads(json.dumps(kept, default=str))


def settings_hash(*arguments, scope: str = "stage", extra=None) -> str:
    """The hash of `settings(*arguments)`, plus anything else the result depends on (`extra`, JSON-able)."""
    return hash_json({"settings": settings(*arguments, scope=scope), "extra": extra})


def tokenizer_hash(tokenizer) -> str:
    """A tokenizer's full serialisation, hashed: two tokenizers that split text alike hash alike."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    blob = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
