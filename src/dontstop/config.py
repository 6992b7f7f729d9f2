"""Stage arguments, one way in whatever the caller: the command line (with `--config FILE.yaml`), the experiment's
YAML and the Python API all become the same argument dataclasses, checked and converted by the same rules.

The one registry of stages is `STAGES`. A stage module defines `ARGUMENTS` (its argument dataclasses), `EXAMPLES`
(the epilog of its `--help`) and `run(*arguments)`, which returns the stage's record (`records/`); a stage whose
command line is not a set of dataclasses (compare, run, demo, vocab's sub-commands) defines `main(argv)` instead. A
stage that can continue interrupted work defines `resume_options(directory)`: the options that continue it there.

Field metadata the rest of the package reads (besides HfArgumentParser's `help`, `choices`, `action`, ...):
- `"path"`: the option names files, so an experiment resolves it against its YAML and hashes their content:
  `"file"` (a path), `"named"` (NAME=PATH) or `"model"` (a local directory, or a hub id / pkg:NAME left as is);
- `"fingerprint"`: `False` for an option that changes where or how fast a stage works, never what it produces;
  `"run"` for one that changes what a whole run holds (which seeds, what it keeps) but no single seed's result;
- `"bounds"`: the interval a number must lie in, as written in mathematics: `"(0, 1]"`, `"[1, inf)"`. Checked when
  the options are parsed, before anything loads (`check_bounds`); a dataclass lists bounds of fields it inherits
  from `TrainingArguments` in its `BOUNDS` mapping;
- `"number_or"`: the words a number option also takes (`["auto"]`), for the checks made before torch loads.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib

import yaml

from .errors import UsageError

# name -> (module, one-line summary). Adding a stage adds a line here and a module; nothing else.
STAGES = {
    "inspect": ("dontstop.inspect", "how far corpora are from each other and from the model: should I adapt?"),
    "mine": ("dontstop.mine", "discover a domain's new words and phrases (cohesion, branching entropy, specificity)"),
    "select": ("dontstop.select", "pick the pool text nearest the task (kNN-TAPT), or a random control of equal size"),
    "prepare": ("dontstop.prepare", "hold documents out of each corpus (seeded) and gather the task's texts"),
    "pretrain": ("dontstop.pretrain", "continue pretraining a masked or causal LM on a domain or task corpus"),
    "lm-eval": ("dontstop.lm_eval", "a checkpoint's masked-LM loss on held-out sets (head warm-up if it has none)"),
    "vocab": ("dontstop.vocab", "extend a model's vocabulary with mined words (new rows = mean of their old pieces)"),
    "augment": ("dontstop.augment", "copies of a corpus or task file with words deleted, swapped or cut out"),
    "preview": ("dontstop.preview", "show a corpus masked as pretrain would mask it (units, rate, unit lengths)"),
    "finetune": ("dontstop.finetune", "fine-tune a checkpoint on a labelled task over seeds: dev/test mean ± std"),
    "lr-sweep": ("dontstop.finetune.sweep", "choose the fine-tuning learning rate on dev (first seed, each rate)"),
    "clean": ("dontstop.clean", "find likely label errors in a training file (confident learning, out of fold)"),
    "compare": ("dontstop.compare", "compare finetune runs: mean ± std, deltas, paired (or Welch) tests, Holm"),
    "run": ("dontstop.experiment", "an experiment: arms (baseline, DAPT, TAPT, ...) fine-tuned over seeds, a report"),
    "demo": ("dontstop.demo", "the embedded demo experiment (examples/demo.yaml): the same as `dontstop run`"),
}


def stage_module(name: str):
    return importlib.import_module(STAGES[name][0])


def run_stage(module, arguments):
    """Run a stage with its argument dataclasses, owning its output directory for the while (`outputs.owned`): the
    one way the command line, `dontstop run` and the Python API call a stage."""
    import contextlib

    from .outputs import owned

    output_dir = next((a.output_dir for a in arguments if getattr(a, "output_dir", None)), None)
    with owned(output_dir) if output_dir else contextlib.nullcontext():
        return module.run(*arguments)


def lazy_attribute(package: str, name: str, modules: tuple[str, ...]):
    """`name` from the first of the package's `modules` that has it: a stage package's `__getattr__`, so that its
    slow imports (transformers' Trainer) happen when a name is asked for, not when `--help` runs."""
    for module in modules:
        found = importlib.import_module(f"{package}.{module}")
        if hasattr(found, name):
            return getattr(found, name)
    raise AttributeError(f"module {package!r} has no attribute {name!r}")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the option list, examples in the epilog kept as written."""


class OneLineErrors:
    """An argparse parser mixin: a usage error is one line and a pointer to --help, not the whole usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class ArgumentParser(OneLineErrors, argparse.ArgumentParser):
    """The parser of stages whose command line is not a set of dataclasses (compare, run, demo)."""


# Field metadata that is ours, not argparse's (see the module docstring).
OUR_METADATA = frozenset({"path", "fingerprint", "bounds", "number_or"})


@functools.cache
def parser_class():
    """`transformers.HfArgumentParser`, minus our field metadata (it passes all metadata on to argparse)."""
    import copy
    import types

    from transformers import HfArgumentParser

    class ArgumentParser(OneLineErrors, HfArgumentParser):
        @staticmethod
        def _parse_dataclass_field(parser, field: dataclasses.Field):
            if OUR_METADATA & set(field.metadata):
                field = copy.copy(field)
                field.metadata = types.MappingProxyType(
                    {k: v for k, v in field.metadata.items() if k not in OUR_METADATA}
                )
            HfArgumentParser._parse_dataclass_field(parser, field)

    return ArgumentParser


def stage_parser(dataclass_types, **kwargs):
    """A `transformers.HfArgumentParser` over the stage's dataclasses, plus `--config file.yaml`."""
    parser = parser_class()(dataclass_types, formatter_class=HelpFormatter, **kwargs)
    parser.add_argument(
        "--config",
        metavar="FILE.yaml",
        help="Options from a YAML file (keys are option names); options on the command line win.",
    )
    return parser


def make_parser(name: str):
    """The command-line parser of a registered stage."""
    module = stage_module(name)
    return stage_parser(
        module.ARGUMENTS, prog=f"dontstop {name}", description=module.__doc__.split("\n\n")[0], epilog=module.EXAMPLES
    )


def read_yaml_mapping(path: str, option: str = "", what: str = "keys to values") -> dict:
    """A YAML file holding a mapping; anything else is a one-line UsageError naming the file (and line)."""
    try:
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
    except OSError as e:
        raise UsageError(f"{option}{path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        with open(path, "rb") as f:
            line = f.read()[: e.start].count(b"\n") + 1
        raise UsageError(f"{path}:{line}: invalid UTF-8 (byte {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise UsageError(f"{path}{where}: invalid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(values, dict):
        raise UsageError(f"{path}: expected a mapping of {what}")
    return values


def parse_with_config(parser, argv: list[str]):
    """Parse `argv` into the parser's dataclasses; `--config` YAML gives defaults that the command line overrides."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    if known.config:
        values = read_yaml_mapping(known.config, "--config ", "option names to values")
        valid = {action.dest for action in parser._actions}
        unknown = sorted(set(values) - valid)
        if unknown:
            raise UsageError(f"{known.config}: unknown option(s) {', '.join(unknown)}")
        on_command_line = {arg[2:].split("=")[0] for arg in argv if arg.startswith("--")}
        parser.set_defaults(**{k: v for k, v in values.items() if k not in on_command_line})
    try:
        outputs = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    except ValueError as e:  # dataclass __post_init__ checks (TrainingArguments) say what is wrong
        raise UsageError(first_line(e)) from None
    *parsed, remaining = outputs
    parsed = [d for d in parsed if not isinstance(d, argparse.Namespace)]  # holds only --config
    if remaining:
        parser.error(f"unrecognized arguments: {' '.join(remaining)}")
    check_bounds(parsed)
    return parsed


def bounds_of(instance, field: dataclasses.Field) -> str | None:
    return field.metadata.get("bounds") or getattr(type(instance), "BOUNDS", {}).get(field.name)


def check_bounds(instances, where: str = "") -> None:
    """Every number within the `bounds` of its field; else a UsageError naming the option and the interval."""
    for instance in instances:
        for field in dataclasses.fields(instance):
            interval, value = bounds_of(instance, field), getattr(instance, field.name, None)
            if interval is None or value is None or isinstance(value, bool):
                continue
            for number in value if isinstance(value, list) else [value]:
                check_within(interval, number, f"{where}--{field.name}")


def check_within(interval: str, number: float, option: str) -> None:
    """A UsageError unless `number` lies in `interval` ("(0, 1]", "[1, inf)")."""
    import math
    import re

    opening, low, high, closing = re.fullmatch(r"([\[(])\s*(\S+?)\s*,\s*(\S+?)\s*([\])])", interval).groups()
    low, high = float(low), float(high)
    inside = (number > low or (opening == "[" and number == low)) and (
        number < high or (closing == "]" and number == high)
    )
    if not inside or (isinstance(number, float) and math.isnan(number)):
        raise UsageError(f"{option} {number}: must be in {interval}")


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# --- options as a mapping (the experiment's YAML, the Python API) -----------------------------------------------


def option_fields(dataclass_types) -> dict[str, dataclasses.Field]:
    """Every option of the dataclasses, by name."""
    return {f.name: f for dtype in dataclass_types for f in dataclasses.fields(dtype) if f.init}


def build_arguments(dataclass_types, options: dict, where: str) -> list:
    """The dataclasses, from a mapping of option names to values converted and checked as the command line would
    (types, choices, lists); a bad name or value is a UsageError that starts with `where` and names the option."""
    actions = option_actions(tuple(dataclass_types))
    unknown = sorted(set(options) - set(option_fields(dataclass_types)))
    if unknown:
        raise UsageError(f"{where}: unknown option(s) {', '.join(unknown)}")
    converted = {name: convert(actions[name], value, f"{where}: {name}") for name, value in options.items()}
    try:
        built = [dtype(**{k: v for k, v in converted.items() if k in option_fields((dtype,))}) for dtype in
                 dataclass_types]  # fmt: skip
    except (ValueError, TypeError) as e:  # __post_init__ checks (TrainingArguments) say what is wrong
        raise UsageError(f"{where}: {first_line(e)}") from None
    check_bounds(built, f"{where}: ")
    return built


@functools.cache
def option_actions(dataclass_types: tuple) -> dict[str, argparse.Action]:
    """The argparse action of every option, as the command line builds it: the rules `convert` applies."""
    return {action.dest: action for action in parser_class()(dataclass_types)._actions}


def convert(action: argparse.Action, value, where: str):
    """One option's value as argparse would have made it from the command line."""
    many = action.nargs in ("+", "*")
    if isinstance(value, (list, tuple)):
        if not many:
            raise UsageError(f"{where}: expects one value, got a list")
        return [convert_one(action, v, where) for v in value]
    converted = convert_one(action, value, where)
    return [converted] if many and converted is not None else converted


def convert_one(action: argparse.Action, value, where: str):
    if value is None:
        return None
    kind = action.type
    try:
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        if kind is not None and not (isinstance(value, bool) and kind.__name__ == "string_to_bool"):
            value = kind(value if kind in (int, float) or not isinstance(value, (int, float)) else str(value))
    except (ValueError, TypeError, argparse.ArgumentTypeError):
        wanted = getattr(kind, "__name__", "a valid value").replace("string_to_bool", "true or false")
        raise UsageError(f"{where}: expected {wanted}, got {value!r}") from None
    if action.choices is not None and value not in action.choices:
        raise UsageError(f"{where}: {value!r} is not one of {', '.join(map(str, action.choices))}")
    return value


def path_kind(field: dataclasses.Field) -> str | None:
    """ "file", "named", "model" or None: what `field` holds (see the module docstring)."""
    return field.metadata.get("path")


def fingerprinted(field: dataclasses.Field, scope: str = "stage") -> bool:
    """Whether an option's value is part of what a stage's result depends on (scope "stage"), or a single seed's
    (scope "seed")."""
    mark = field.metadata.get("fingerprint", True)
    return mark is True or (mark == "run" and scope == "stage")
