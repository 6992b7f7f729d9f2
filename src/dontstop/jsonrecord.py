"""A record: a dataclass saved as the JSON file it always was, and read back strictly (an unknown or missing key is
one `UsageError` naming the file and the key). The records themselves, one per stage output, are in `records.py`."""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from typing import ClassVar

from .errors import UsageError
from .outputs import write_json


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
