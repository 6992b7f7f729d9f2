"""The command line's fast path: `--help`, and the mistakes of typing a command line, answered without importing
torch or transformers (their import alone takes 5 s and more on 2 cores; the options of `pretrain` and `finetune`
inherit from transformers' `TrainingArguments`, so the parser cannot be built without them).

`options/STAGE.json` is a snapshot of a stage's parser: its rendered `--help`, and per option the strings that name
it, how many values it takes, their type, choices, bounds, and whether they name files. `check(stage, argv)` answers
from it: the help; an unknown option; a value that is not a number, not one of the choices, out of bounds; a file
that does not exist. Anything it lets through is parsed by the real parser, which checks it all again, so the
snapshot can only make an error come sooner. A snapshot is used only with the transformers version it was written
with; `python -m dontstop.preflight` writes them, and a test fails when one differs from its live parser.
"""

from __future__ import annotations

import json
import os
import sys

from .errors import UsageError

SNAPSHOTS = os.path.join(os.path.dirname(__file__), "options")
COLUMNS = "100"  # the width the help is rendered at, here and when the snapshot is written


def load(stage: str) -> dict | None:
    """The stage's snapshot, or None without one (a stage with a command line of its own) or when the installed
    transformers is not the one it was written with."""
    from importlib.metadata import PackageNotFoundError, version

    path = os.path.join(SNAPSHOTS, f"{stage}.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        snapshot = json.load(f)
    try:
        installed = version("transformers")
    except PackageNotFoundError:
        return None
    return snapshot if snapshot["transformers"] == installed else None


def check(stage: str, argv: list[str]) -> None:
    """Print the help and exit, or raise the UsageError the real parser would raise later, if the snapshot can tell."""
    snapshot = load(stage)
    if snapshot is None:
        return
    if "-h" in argv or "--help" in argv:
        sys.stdout.write(snapshot["help"])
        raise SystemExit(0)
    if any(a == "--config" or a.startswith("--config=") for a in argv):
        return  # the YAML may hold any option: the real parser reads it
    named = {string: option for option in snapshot["options"] for string in option["strings"]}
    prog = f"dontstop {stage}"
    for name, values in options_given(argv):
        option = named.get(name) or unique_prefix(named, name)
        if option is None:
            raise UsageError(f"unrecognized arguments: {name} (see {prog} --help)")
        for value in values[:1] if option["takes"] == "one" else values:
            check_value(option, value, prog)


def options_given(argv: list[str]):
    """(--name, [values]) for every option of `argv`: the values are the tokens up to the next option."""
    i = 0
    while i < len(argv):
        name, equals, inline = argv[i].partition("=")
        i += 1
        if not name.startswith("--"):
            continue  # a stray value: the real parser says what is wrong with it
        values = [inline] if equals else []
        while not equals and i < len(argv) and not argv[i].startswith("--"):
            values.append(argv[i])
            i += 1
        yield name, values


def unique_prefix(named: dict, name: str) -> dict | None:
    """argparse accepts any unambiguous prefix of an option."""
    found = {id(option): option for string, option in named.items() if string.startswith(name)}
    return next(iter(found.values())) if len(found) == 1 else None


def check_value(option: dict, value: str, prog: str) -> None:
    from .config import check_within

    flag = option["strings"][0]
    if option.get("choices") is not None and value not in option["choices"]:
        choices = ", ".join(repr(c) for c in option["choices"])
        raise UsageError(f"argument {flag}: invalid choice: {value!r} (choose from {choices}) (see {prog} --help)")
    words = option.get("number_or")  # a number, or one of these words (--learning_rate auto)
    if words and value not in words:
        try:
            float(value)
        except ValueError:
            raise UsageError(f"--{option['dest']} {value}: expected a number or {' or '.join(words)}") from None
    kind = {"int": int, "float": float}.get(option.get("type"))
    if kind is not None:
        try:
            number = kind(value)
        except ValueError:
            raise UsageError(
                f"argument {flag}: invalid {kind.__name__} value: {value!r} (see {prog} --help)"
            ) from None
        if option.get("bounds"):
            check_within(option["bounds"], number, f"--{option['dest']}")
    kind = option.get("path")
    if kind == "named" and "=" not in value:
        return  # not NAME=PATH: the real parser says how it should read
    path = value.partition("=")[2] if kind == "named" else value
    if kind in ("file", "named") and not os.path.exists(path):
        raise UsageError(f"--{option['dest']} {path}: no such file")


# --- writing the snapshots -----------------------------------------------------------------------------------------


def snapshot(stage: str) -> dict:
    """The snapshot of a stage's live parser (see the module docstring)."""
    from importlib.metadata import version

    from .config import make_parser, option_fields, stage_module

    os.environ["COLUMNS"] = COLUMNS
    parser = make_parser(stage)
    dataclass_types = stage_module(stage).ARGUMENTS
    fields = option_fields(dataclass_types)
    bounds = {name: b for dtype in dataclass_types for name, b in getattr(dtype, "BOUNDS", {}).items()}
    options = []
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        field = fields.get(action.dest)
        metadata = field.metadata if field is not None else {}
        kind = getattr(action.type, "__name__", None)
        options.append(
            {
                "dest": action.dest,
                "strings": [s for s in action.option_strings if s.startswith("--")],
                "takes": {None: "one", "?": "optional", 0: "none"}.get(action.nargs, "many"),
                "type": kind if kind in ("int", "float") else None,
                "choices": [str(c) for c in action.choices] if action.choices is not None else None,
                "bounds": metadata.get("bounds") or bounds.get(action.dest),
                "path": metadata.get("path"),
                "number_or": metadata.get("number_or"),
            }
        )
    return {"transformers": version("transformers"), "help": parser.format_help(), "options": options}


def snapshot_stages() -> list[str]:
    """The stages whose command line is their argument dataclasses."""
    from .config import STAGES, stage_module

    return [name for name in STAGES if not hasattr(stage_module(name), "main")]


def write_all() -> None:
    os.makedirs(SNAPSHOTS, exist_ok=True)
    for stage in snapshot_stages():
        with open(os.path.join(SNAPSHOTS, f"{stage}.json"), "w", encoding="utf-8") as f:
            json.dump(snapshot(stage), f, indent=1, ensure_ascii=False)
            f.write("\n")
        print(f"wrote {SNAPSHOTS}/{stage}.json")


if __name__ == "__main__":
    write_all()
