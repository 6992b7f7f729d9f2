"""`dontstop <stage> [options]`: one entry point, one module per stage.

Each stage module exposes `make_parser()` and `main(argv)`; heavy imports happen inside them, so `dontstop --help`
is instant. Bad input anywhere becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

import yaml

from .errors import UsageError

# name -> (module, one-line summary). Adding a stage adds a line here and a module; nothing else.
STAGES = {
    "inspect": ("dontstop.inspect", "how far corpora are from each other and from the model: should I adapt?"),
    "mine": ("dontstop.mine", "discover a domain's new words and phrases (cohesion, branching entropy, specificity)"),
    "select": ("dontstop.select", "pick the pool text nearest the task (kNN-TAPT), or a random control of equal size"),
    "pretrain": ("dontstop.pretrain", "continue pretraining a masked or causal LM on a domain or task corpus"),
    "vocab": ("dontstop.vocab", "extend a model's vocabulary with mined words (new rows = mean of their old pieces)"),
    "preview": ("dontstop.preview", "show a corpus masked as pretrain would mask it (units, rate, unit lengths)"),
    "finetune": ("dontstop.finetune", "fine-tune a checkpoint on a labelled task over seeds: dev/test mean ± std"),
    "compare": ("dontstop.compare", "compare finetune runs: mean ± std, deltas and Welch's t-test against the first"),
    "run": ("dontstop.experiment", "an experiment: arms (baseline, DAPT, TAPT, ...) fine-tuned over seeds, a report"),
    "demo": ("dontstop.demo", "the embedded demo experiment (examples/demo.yaml): the same as `dontstop run`"),
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the option list, examples in the epilog kept as written."""


def stage_parser(dataclass_types, **kwargs):
    """A `transformers.HfArgumentParser` over the stage's dataclasses, plus `--config file.yaml`."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(dataclass_types, formatter_class=HelpFormatter, **kwargs)
    parser.add_argument(
        "--config",
        metavar="FILE.yaml",
        help="Options from a YAML file (keys are option names); options on the command line win.",
    )
    return parser


def read_yaml_mapping(path: str, option: str = "", what: str = "keys to values") -> dict:
    """A YAML file holding a mapping; anything else is a one-line UsageError naming the file (and line)."""
    try:
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
    except OSError as e:
        raise UsageError(f"{option}{path}: {e.strerror}") from None
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
        raise UsageError(str(e).strip().splitlines()[0]) from None
    *dataclasses, remaining = outputs
    dataclasses = [d for d in dataclasses if not isinstance(d, argparse.Namespace)]  # holds only --config
    if remaining:
        parser.error(f"unrecognized arguments: {' '.join(remaining)}")
    return dataclasses


def top_level_help() -> str:
    width = max(map(len, STAGES))
    lines = [
        "usage: dontstop <stage> [options]    (dontstop <stage> --help for a stage's options and examples)",
        "",
        "Continued pretraining (DAPT/TAPT) of language models, measured.",
        "",
        "stages:",
    ]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in STAGES.items()]
    return "\n".join(lines)


def setup_logging() -> None:
    level = os.environ.get("DONTSTOP_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=level)
    logging.getLogger("dontstop").setLevel(level)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(top_level_help())
        return 0
    stage, rest = argv[0], argv[1:]
    if stage not in STAGES:
        print(f"dontstop: error: unknown stage {stage!r} (stages: {', '.join(STAGES)})", file=sys.stderr)
        return 2
    setup_logging()
    module = importlib.import_module(STAGES[stage][0])
    try:
        return module.main(rest) or 0
    except UsageError as e:
        print(f"dontstop {stage}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
