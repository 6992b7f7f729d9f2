"""The record machinery: a dataclass that saves as the JSON it always was and loads with its types checked, and the
one place the Trainer's `eval_<set>_<metric>` keys are taken apart."""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from typing import ClassVar

from ..errors import UsageError
from ..outputs import write_json

EVAL_METRICS = ("loss", "perplexity", "accuracy", "tokens", "runtime")


def eval_key(key: str, prefix: str = "eval") -> tuple[str, str] | None:
    """("validation", "loss") for "eval_validation_loss" (the set "eval" for a bare "eval_loss"); None for a key of
    any other shape. With another `prefix`, the averaged weights' keys: "ema_eval_validation_loss"."""
    head = f"{prefix}_"
    if not key.startswith(head):
        return None
    rest = key[len(head) :]
    for metric in EVAL_METRICS:
        if rest == metric:
            return "eval", metric
        if rest.endswith(f"_{metric}"):
            return rest[: -len(metric) - 1], metric
    return None


def eval_values(metrics: dict | None, metric: str = "loss", prefix: str = "eval") -> dict[str, float]:
    """{held-out set: value} of one metric in a dict of evaluation results."""
    found = {}
    for key, value in (metrics or {}).items():
        parsed = eval_key(key, prefix)
        if parsed and parsed[1] == metric and isinstance(value, (int, float)):
            found[parsed[0]] = value
    return found


def eval_name(name: str, metric: str = "loss", prefix: str = "eval") -> str:
    """The key `eval_key` takes apart: eval_name("general") == "eval_general_loss"."""
    return f"{prefix}_{metric}" if name == "eval" else f"{prefix}_{name}_{metric}"


class Record:
    """Base of the records: from/to plain JSON values, strictly (an unknown or missing key is an error)."""

    FILE: ClassVar[str] = ""
    KEEP_UNKNOWN: ClassVar[bool] = False  # keep keys this version does not know, and write them back
    OMIT_NONE: ClassVar[bool] = False  # leave out of the JSON what was not recorded (as the file always did)

    def __getitem__(self, key: str):
        if key in self._names():
            return getattr(self, key)
        extra = getattr(self, "_extra", {})
        if key in extra:
            return extra[key]
        raise KeyError(key)

    def __contains__(self, key: str) -> bool:
        return (key in self._names() and getattr(self, key) is not None) or key in getattr(self, "_extra", {})

    @classmethod
    def _names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls, data, where: str = ""):
        where = where or cls.__name__
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise UsageError(f"{where}: expected a JSON object, got {type(data).__name__}")
        names = cls._names()
        unknown = sorted(set(data) - names)
        if unknown and not cls.KEEP_UNKNOWN:
            raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)} in a {cls.__name__}")
        missing = [
            f.name for f in dataclasses.fields(cls)
            if f.name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]  # fmt: skip
        if missing:
            raise UsageError(f"{where}: missing key(s) {', '.join(missing)} of a {cls.__name__}")
        hints = typing.get_type_hints(cls)
        values = {
            name: _convert(hints[name], value, f"{where}.{name}") for name, value in data.items() if name in names
        }
        record = cls(**values)
        if unknown:
            record._extra = {key: data[key] for key in unknown}
        return record

    def to_dict(self) -> dict:
        out = {
            f.name: _plain(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if not (self.OMIT_NONE and getattr(self, f.name) is None)
        }
        out.update(getattr(self, "_extra", {}))
        return out

    def save(self, directory: str) -> str:
        path = os.path.join(directory, self.FILE)
        write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str):
        """The record in `path`, a file or the directory holding `FILE`."""
        file = os.path.join(path, cls.FILE) if os.path.isdir(path) else path
        try:
            with open(file, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise UsageError(f"{file}: no such file") from None
        except json.JSONDecodeError as e:
            raise UsageError(f"{file}:{e.lineno}: invalid JSON ({e.msg})") from None
        return cls.from_dict(data, file)


def _is_record(hint) -> bool:
    return isinstance(hint, type) and issubclass(hint, Record)


def _convert(hint, value, where: str):
    """`value` with the records inside it built: a Record field, a list or dict of records, or an optional one."""
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return next((_convert(a, value, where) for a in args if _is_record(a) or typing.get_origin(a)), value)
    if _is_record(hint):
        return hint.from_dict(value, where)
    if origin is list and args and _is_record(args[0]):
        if not isinstance(value, list):
            raise UsageError(f"{where}: expected a list")
        return [args[0].from_dict(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict and len(args) == 2 and _is_record(args[1]):
        if not isinstance(value, dict):
            raise UsageError(f"{where}: expected a JSON object")
        return {k: args[1].from_dict(v, f"{where}.{k}") for k, v in value.items()}
    return value


def _plain(value):
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# --- pretraining ------------------------------------------------------------------------------------------------
