"""One experiment, one command: the base model against DAPT, TAPT, DAPT+TAPT, kNN-TAPT and any chain of stages,
each fine-tuned over seeds, then a report.

    dontstop run experiment.yaml          (no argument: the embedded demo, examples/demo.yaml)

The YAML names the model, the corpora, the task, the arms and their budgets (see examples/demo.yaml). Every stage
(prepare, inspect, mine, select, pretrain, lm-eval, finetune) writes its own directory under OUTPUT_DIR/stages/,
named after a hash of everything that determines its result: its settings, the content of its input files and the
hashes of the stages it starts from. A stage whose directory holds a finished marker with that hash is skipped, so
re-running does only what is new; changing one setting re-runs that stage and what depends on it; an interrupted
run resumes (a fine-tuning stage keeps its finished seeds, a pretraining stage its last checkpoint).

The package: `schema` (the YAML, checked), `stages` (a stage, its key and its arguments), `plan` (arms to stages),
`runner` (running and resuming) and `summary` (what the report is drawn from).
"""

from __future__ import annotations

import argparse

from ..config import ArgumentParser
from .plan import Plan, find_demo, load_experiment
from .runner import MARKER, run_experiment

__all__ = ["MARKER", "Plan", "find_demo", "load_experiment", "run_experiment", "main"]


def make_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="dontstop run",
        description=__doc__.split("\n\nThe package:")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES,
    )
    parser.add_argument("experiment", nargs="?", help="The experiment YAML (default: the demo, examples/demo.yaml).")
    parser.add_argument("--output_dir", help="Where the stages and the report go (default: the YAML's output_dir).")
    parser.add_argument("--plan", action="store_true", help="Print the stages and which are cached; run nothing.")
    return parser


EXAMPLES = """examples:
  dontstop run                              # the embedded demo (examples/demo.yaml)
  dontstop run my-experiment.yaml --plan    # what would run, what is cached
  dontstop run my-experiment.yaml           # run (or resume) it; the report is OUTPUT_DIR/report.html
"""


def main(argv: list[str]) -> int:
    args = make_parser().parse_args(argv)
    run_experiment(load_experiment(args.experiment or find_demo(), args.output_dir), only_plan=args.plan)
    return 0
