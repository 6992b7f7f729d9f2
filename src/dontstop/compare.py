"""Compare fine-tuning runs: mean ± std over seeds per metric, and whether each run beats the first one.

    dontstop compare base=runs/ft-base dapt=runs/ft-dapt tapt=runs/ft-tapt --metrics macro_f1,accuracy

Each directory is the output of `dontstop finetune` (its `results.json`); the first run is the baseline. Per run and
metric: the mean and sample standard deviation (ddof=1) of the per-seed scores on the chosen split. Per later run:
the difference of the means against the baseline, with Welch's unequal-variance t-test over the per-seed scores
(two-sided p-value, Welch–Satterthwaite degrees of freedom, 95% confidence interval of the difference). Seeds are
treated as independent samples, not paired, even when both runs used the same seeds: a seed fixes the head's
initialisation and data order, and those interact differently with different starting checkpoints. The test is n/a
with fewer than 2 seeds on a side, or when neither side varies (the t statistic is undefined).

Runs are only comparable on the same task, labels and evaluation file (by sha256); `--allow_different_data` waives
the file check.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
from dataclasses import dataclass

from .errors import UsageError
from .records import FinetuneResults
from .scoring import aggregate, mean_std_percent

logger = logging.getLogger(__name__)

ALPHA = 0.05
METHOD = "Welch's t-test over seeds (two-sided, unequal variances; seeds are not paired)"


@dataclass
class Run:
    name: str
    dir: str
    results: FinetuneResults

    def values(self, split: str, metric: str) -> list[float]:
        return self.results.values(split, metric)

    def has_split(self, split: str) -> bool:
        return self.results.has_split(split)


def load_run(spec: str) -> Run:
    """`[NAME=]DIR` -> the run in DIR/results.json, named NAME or after the directory."""
    name, sep, path = spec.partition("=")
    if not (sep and name and not os.path.isdir(spec)):
        name, path = os.path.basename(os.path.normpath(spec)), spec
    file = os.path.join(path, FinetuneResults.FILE)
    if not os.path.isfile(file):
        raise UsageError(f"{file}: no such file (is {path} an output directory of dontstop finetune?)")
    results = FinetuneResults.load(file)
    if not results.seeds:
        raise UsageError(f"{file}: no seeds in it")
    return Run(name, path, results)


def check_comparable(runs: list[Run], split: str, allow_different_data: bool = False) -> None:
    """Every run measures the baseline's task, on its labels and (unless allowed) its evaluation file."""
    names: dict[str, str] = {}
    for run in runs:
        if run.name in names:
            raise UsageError(f"two runs are named {run.name!r} ({names[run.name]}, {run.dir}): pass NAME=DIR")
        names[run.name] = run.dir
        if not run.has_split(split):
            other = "dev" if split == "test" else "test"
            raise UsageError(f"{run.dir}: no {split} results in results.json; compare on --split {other}")
    base = runs[0].results
    for run in runs[1:]:
        r = run.results
        if r.task_type != base.task_type:
            raise UsageError(f"{run.dir}: task_type {r.task_type} differs from the baseline's {base.task_type}")
        if sorted(r.labels) != sorted(base.labels):
            raise UsageError(f"{run.dir}: its labels differ from the baseline's ({runs[0].dir})")
        # The file's hash, and how many of its examples were scored (finetune --validation_limit draws a subset).
        ours, theirs = [(f.get("sha256"), f.get("examples")) for f in (x.evaluated_file(split) for x in (base, r))]
        if ours != theirs:
            if not allow_different_data:
                raise UsageError(
                    f"{run.dir}: evaluated on a different {split} file than the baseline ({runs[0].dir}), so the "
                    "runs are not comparable; pass --allow_different_data to compare anyway"
                )
            logger.warning("%s: evaluated on a different %s file than the baseline", run.dir, split)


def available_metrics(runs: list[Run], split: str) -> list[str]:
    """The baseline's metrics, in its display order, that every run reports on `split`."""
    return [
        m
        for m in runs[0].results.metrics
        if all(all(m in getattr(seed, split) for seed in r.results.seeds) for r in runs)
    ]


def welch(a: list[float], b: list[float]) -> dict:
    """Welch's t-test of mean(b) - mean(a): delta, t, df, 95% CI and two-sided p, or p None with the reason."""
    from scipy import stats

    delta = statistics.fmean(b) - statistics.fmean(a)
    out = {"delta": delta, "t": None, "df": None, "ci_low": None, "ci_high": None, "p_value": None, "p_note": None}
    if len(a) < 2 or len(b) < 2:
        out["p_note"] = "fewer than 2 seeds on a side"
    elif statistics.variance(a) == 0 and statistics.variance(b) == 0:
        out["p_note"] = "no variance on either side"
    else:
        result = stats.ttest_ind(b, a, equal_var=False)
        ci = result.confidence_interval(confidence_level=1 - ALPHA)
        out.update(t=float(result.statistic), df=float(result.df), p_value=float(result.pvalue))
        out.update(ci_low=float(ci.low), ci_high=float(ci.high))
    out["significant"] = out["p_value"] is not None and out["p_value"] < ALPHA
    return out


def compare_runs(runs: list[Run], split: str = "test", metrics: list[str] | None = None) -> dict:
    """Per run and metric: mean, std (ddof=1), n and values; per later run, `welch` against the first."""
    available = available_metrics(runs, split)
    unknown = [m for m in metrics or [] if m not in available]
    if unknown:
        raise UsageError(f"unknown metric(s) {', '.join(unknown)} (available: {', '.join(available) or 'none'})")
    metrics = list(metrics or available)
    base = runs[0]
    rows = []
    for run in runs:
        seeds = [seed.seed for seed in run.results.seeds]
        row = {"name": run.name, "dir": run.dir, "model": run.results.model, "seeds": seeds, "metrics": {}}
        if run is not base:
            row["same_seeds"] = sorted(seeds, key=str) == sorted(rows[0]["seeds"], key=str)
        for m in metrics:
            values = run.values(split, m)
            row["metrics"][m] = aggregate(values)
            if run is not base:
                row["metrics"][m].update(welch(base.values(split, m), values))
        rows.append(row)
    return {"split": split, "baseline": base.name, "metrics": metrics, "method": METHOD, "alpha": ALPHA, "runs": rows}


def _delta(stats: dict) -> str:
    p = stats["p_value"]
    shown = "p n/a" if p is None else ("p<0.001" if p < 0.001 else f"p={p:.2g}")
    return f"{100 * stats['delta']:+.1f} ({shown}{'*' if stats['significant'] else ''})"


def to_markdown(comparison: dict) -> str:
    """The table (percent; Δ in percentage points against the baseline), the runs' models and the footnote."""
    metrics, runs = comparison["metrics"], comparison["runs"]
    header = ["run", "seeds"] + [h for m in metrics for h in (m, f"Δ {m}")]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["--:"] * (len(header) - 1)) + "|"]
    for i, row in enumerate(runs):
        cells = [row["name"], str(len(row["seeds"]))]
        for m in metrics:
            cells += [mean_std_percent(row["metrics"][m]), "baseline" if i == 0 else _delta(row["metrics"][m])]
        lines.append("| " + " | ".join(cells) + " |")
    described = []
    for row in runs:
        seeds = ", ".join(map(str, row["seeds"]))
        same = f", the same as {runs[0]['name']}" if row.get("same_seeds") else ""
        described.append(f"{row['name']} = {row['model']} (seeds {seeds}{same})")
    notes = {row["metrics"][m]["p_note"] for row in runs[1:] for m in metrics} - {None}
    na = f"; p n/a: {', or '.join(sorted(notes))}" if notes else ""
    lines += [
        "",
        "Runs: " + "; ".join(described) + ".",
        f"{comparison['split']} split; mean ± sample std (ddof=1) over seeds, in percent; Δ in percentage points "
        f"against {runs[0]['name']}. {METHOD}; * p < {ALPHA}{na}.",
    ]
    return "\n".join(lines)


def make_parser() -> argparse.ArgumentParser:
    from .config import HelpFormatter

    parser = argparse.ArgumentParser(
        prog="dontstop compare", description=__doc__.split("\n\n")[0], epilog=EXAMPLES, formatter_class=HelpFormatter
    )
    parser.add_argument("runs", nargs="+", metavar="[NAME=]DIR", help="finetune output directories; first = baseline")
    parser.add_argument("--split", default="test", choices=["test", "dev"], help="Which scores to compare.")
    parser.add_argument(
        "--metrics", help="Comma-separated metrics to show; unset: the baseline's metrics that every run reports."
    )
    parser.add_argument("--format", default="markdown", choices=["markdown", "json"], help="What to print.")
    parser.add_argument("--output_dir", help="Also write compare.md and compare.json here.")
    parser.add_argument("--overwrite_output_dir", action="store_true", help="Write into a non-empty --output_dir.")
    parser.add_argument(
        "--allow_different_data", action="store_true", help="Compare runs evaluated on different files."
    )
    return parser


EXAMPLES = """examples:
  # does domain-adaptive pretraining help? (test split, every metric of the baseline)
  dontstop compare base=runs/ft-roberta dapt=runs/ft-dapt tapt=runs/ft-dapt-tapt

  # one metric on the dev split, saved next to the runs, as JSON for scripting
  dontstop compare runs/ft-roberta runs/ft-dapt --split dev --metrics macro_f1 --output_dir runs/compare --format json
"""


def main(argv: list[str]) -> int:
    from .outputs import check_output_dir, write_json

    args = make_parser().parse_args(argv)
    if len(args.runs) < 2:
        raise UsageError("give at least two runs: the baseline first, then the runs to compare with it")
    if args.output_dir:
        check_output_dir(args.output_dir, args.overwrite_output_dir)
    runs = [load_run(spec) for spec in args.runs]
    check_comparable(runs, args.split, args.allow_different_data)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    comparison = compare_runs(runs, args.split, metrics)
    markdown = to_markdown(comparison)
    if args.output_dir:
        write_json(os.path.join(args.output_dir, "compare.json"), comparison)
        with open(os.path.join(args.output_dir, "compare.md"), "w", encoding="utf-8") as f:
            f.write(markdown + "\n")
    print(json.dumps(comparison, indent=2, ensure_ascii=False) if args.format == "json" else markdown)
    return 0
