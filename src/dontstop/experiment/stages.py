"""A stage of an experiment: one unit of cached work, known to the experiment only through its stage module's
argument dataclasses (their field metadata says which options are paths and which change no result) and its record.

A stage's options may hold `Ref`s, paths inside other stages' output directories: they are its dependencies, and
its key (the name of its directory) covers their keys, its own options (those that can change its result) and the
content of its input files. A stage runs by calling its module's `run` with the dataclasses built from its options.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..config import build_arguments, fingerprinted, option_fields, path_kind, stage_module
from ..fingerprint import content_hash, hash_json

# Bump when a stage's outputs change meaning: every cached stage is then re-run.
CACHE_VERSION = 3
# The stage kinds an experiment plans; each is a stage of `config.STAGES` with `ARGUMENTS`, `run` and
# `resume_options`.
KINDS = ("prepare", "inspect", "mine", "select", "pretrain", "lm-eval", "clean", "finetune")


@dataclass(frozen=True)
class Ref:
    """A path inside another stage's output directory, resolved when the stage runs."""

    stage: Stage
    path: str = ""

    def resolve(self, root: str) -> str:
        directory = self.stage.directory(root)
        return os.path.join(directory, self.path) if self.path else directory


@dataclass(frozen=True)
class Named:
    """An option value NAME=PATH (a corpus, a held-out set), the path a string or a `Ref`."""

    name: str
    path: str | Ref

    def resolve(self, root: str) -> str:
        return f"{self.name}={resolve(self.path, root)}"


def resolve(value, root: str):
    """An option value with every `Ref` and `Named` in it resolved to paths under `root`."""
    if isinstance(value, (Ref, Named)):
        return value.resolve(root)
    if isinstance(value, list):
        return [resolve(v, root) for v in value]
    return value


def arguments_of(kind: str) -> tuple:
    return stage_module(kind).ARGUMENTS


def _key_of(value):
    if isinstance(value, Ref):
        return f"<{value.stage.key}>/{value.path}"
    if isinstance(value, Named):
        return f"{value.name}={_key_of(value.path)}"
    raise TypeError(f"cannot hash {type(value).__name__}")


@dataclass(eq=False)
class Stage:
    kind: str
    label: str
    options: dict
    inputs: list[str] = field(default_factory=list)  # files whose content the result depends on
    _key: str | None = None

    @property
    def key(self) -> str:
        if self._key is None:
            fields = option_fields(arguments_of(self.kind))
            kept = {k: v for k, v in self.options.items() if fingerprinted(fields[k])}
            memo: dict = {}
            payload = {
                "version": CACHE_VERSION,
                "kind": self.kind,
                "options": kept,
                "inputs": sorted(content_hash(path, memo) for path in set(self.inputs)),
            }
            self._key = hash_json(payload, default=_key_of)
        return self._key

    def directory(self, root: str) -> str:
        return os.path.join(root, "stages", f"{self.kind}-{self.label}-{self.key[:10]}")

    def parents(self) -> list[Stage]:
        """The stages whose outputs this one reads."""
        found = []

        def walk(value):
            if isinstance(value, Ref):
                found.append(value.stage)
            elif isinstance(value, Named):
                walk(value.path)
            elif isinstance(value, list):
                for v in value:
                    walk(v)

        walk(list(self.options.values()))
        return list(dict.fromkeys(found))

    def arguments(self, root: str, **overrides) -> list:
        """The stage module's argument dataclasses for a run into its directory under `root`."""
        options = {k: resolve(v, root) for k, v in self.options.items()}
        options.update(output_dir=self.directory(root), **overrides)
        return build_arguments(arguments_of(self.kind), options, f"{self.kind} {self.label}")


def local_inputs(kind: str, options: dict) -> list[str]:
    """The local files and directories among a stage's path options (not Refs, not hub ids): the inputs whose
    content its key covers."""
    fields = option_fields(arguments_of(kind))
    found = []
    for name, value in options.items():
        if name not in fields or path_kind(fields[name]) is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            path = item.path if isinstance(item, Named) else item
            if isinstance(path, str) and os.path.exists(path):
                found.append(path)
    return found
