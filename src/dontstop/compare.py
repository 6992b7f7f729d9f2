"""Compare fine-tuning runs: mean ± std over seeds per metric, and whether each run beats the first one.

    dontstop compare base=runs/ft-base dapt=runs/ft-dapt tapt=runs/ft-tapt --metrics macro_f1,accuracy

Each directory is the output of `dontstop finetune` (its `results.json`); the first run is the baseline. Per run and
metric: the mean and sample standard deviation (ddof=1) of the per-seed scores on the chosen split. Per later run:
the difference of the means against the baseline and its test over seeds (`evidence.py`):
- paired by seed when both runs drew the same training examples for every seed (the paired design of `dontstop
  finetune` and `dontstop run`: seed s also fixes the head's initialisation and the data order, so the runs differ
  only in the checkpoint): the paired t-test, with Wilcoxon's signed-rank test beside it;
- otherwise Welch's unequal-variance t-test, and a line saying why the seeds could not be paired.
Each gives a two-sided p-value and a 95% confidence interval of the difference; the p-values of the runs compared
with the baseline are corrected by Holm's method, and "significant" means the corrected p < 0.05. Where every seed
wrote its predictions, a paired bootstrap over the test examples (1,000 resamples, seeded) gives the 95% interval of
the difference in the seed-averaged metric: how much of it the choice of test examples could move. From the observed
spread: the smallest difference the design detects with 80% power, and the seeds that would detect the observed one.
The test is n/a with fewer than 2 seeds on a side, or when nothing varies (the t statistic is undefined).

Runs are only comparable on the same task, labels and evaluation file (by sha256); `--allow_different_data` waives
the file check.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import dataclass

from .errors import UsageError
from .evidence import ALPHA, bootstrap_difference, design_power, holm, paired, welch
from .records import FinetuneResults
from .scoring import aggregate, mean_std_percent

logger = logging.getLogger(__name__)


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


def pairing(base: Run, run: Run) -> str | None:
    """None when `run` can be paired with `base` seed by seed (the same seeds, each with the same training draw),
    else why not."""
    ours = {seed.seed: seed.draw for seed in base.results.seeds}
    theirs = {seed.seed: seed.draw for seed in run.results.seeds}
    if sorted(ours, key=str) != sorted(theirs, key=str):
        return "different seeds"
    if any(draw is None for draw in [*ours.values(), *theirs.values()]):
        return "no training draw recorded"
    differ = [str(s) for s in ours if ours[s] != theirs[s]]
    return f"different training draws at seed {', '.join(differ)}" if differ else None


def predictions(run: Run, split: str) -> tuple[list, list[list]] | None:
    """(gold labels, each seed's predicted labels) from the run's per-seed prediction files, or None without them."""
    gold, predicted = None, []
    for seed in run.results.seeds:
        path = os.path.join(run.dir, f"seed-{seed.seed}", f"predictions_{split}.jsonl")
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        if gold is not None and [r["label"] for r in rows] != gold:
            return None
        gold = [r["label"] for r in rows]
        predicted.append([r["prediction"] for r in rows])
    return gold, predicted


def compare_metric(base: Run, run: Run, split: str, metric: str, note: str | None) -> dict:
    """Mean and std of `run`, and the test against `base`: paired when `note` is None, else Welch's."""
    return compare_values(base, run, base.values(split, metric), run.values(split, metric), note)


def compare_values(
    base: Run, run: Run, ours: list[float], theirs: list[float], note: str | None, power: bool = True
) -> dict:
    """Mean and std of `theirs` (one value per seed of `run`, in its order) and the test against `ours` (per seed of
    `base`): paired by seed when `note` is None, else Welch's; with `power`, what the design can detect. Any per-seed
    score: a metric, one class's F1."""
    compared = theirs
    if note is None:
        order = {seed.seed: i for i, seed in enumerate(run.results.seeds)}
        compared = [theirs[order[seed.seed]] for seed in base.results.seeds]
        test = paired(ours, compared)
    else:
        test = {**welch(ours, theirs), "pairing_note": note}
    if power:
        test["power"] = design_power(ours, compared, note is None)
    return {**aggregate(theirs), **test}


def compare_runs(
    runs: list[Run], split: str = "test", metrics: list[str] | None = None, checks: dict[str, str] | None = None
) -> dict:
    """Per run and metric: mean, std (ddof=1), n and values; per later run, the test against the first (paired when
    the draws match), its p corrected by Holm's method for the number of runs compared, and the paired bootstrap
    over test examples where the per-seed predictions are there. `checks` names runs that check the design
    ({name: "identity"}: must score as the first, seed for seed): each gets its check's outcome, and none is
    counted in the correction."""
    checks = checks or {}
    available = available_metrics(runs, split)
    unknown = [m for m in metrics or [] if m not in available]
    if unknown:
        raise UsageError(f"unknown metric(s) {', '.join(unknown)} (available: {', '.join(available) or 'none'})")
    metrics = list(metrics or available)
    base = runs[0]
    gold = predictions(base, split)
    rows = []
    for run in runs:
        seeds = [seed.seed for seed in run.results.seeds]
        row = {"name": run.name, "dir": run.dir, "model": run.results.model, "seeds": seeds, "metrics": {}}
        if run is base:
            row["metrics"] = {m: aggregate(run.values(split, m)) for m in metrics}
            rows.append(row)
            continue
        row["same_seeds"] = sorted(seeds, key=str) == sorted(rows[0]["seeds"], key=str)
        note = pairing(base, run)
        row["paired"] = note is None
        row["metrics"] = {m: compare_metric(base, run, split, m, note) for m in metrics}
        if run.name in checks:
            row["check"] = identity_check(base, run, split, metrics[0])
        other = predictions(run, split) if gold is not None else None
        if other is not None and other[0] == gold[0]:
            intervals = bootstrap_difference(base.results.task_type, gold[0], gold[1], other[1], metrics)
            for m in metrics:
                row["metrics"][m]["bootstrap"] = intervals[m]
        rows.append(row)
    compared = [row for row in rows[1:] if "check" not in row]
    for m in metrics:  # the family: every run against the baseline, on this metric (design checks aside)
        family = [row["metrics"][m] for row in compared]
        for stats, corrected in zip(family, holm([s["p_value"] for s in family]), strict=True):
            stats["p_holm"] = corrected
            stats["significant"] = corrected is not None and corrected < ALPHA
    tests = sorted({row["metrics"][m]["test"] for row in compared for m in metrics})
    return {
        "split": split,
        "baseline": base.name,
        "metrics": metrics,
        "method": method(tests, len(compared)),
        "alpha": ALPHA,
        "runs": rows,
    }


def identity_check(base: Run, run: Run, split: str, metric: str) -> dict:
    """An arm that must change nothing: its per-seed scores against the baseline's, seed by seed."""
    ours = dict(zip([s.seed for s in base.results.seeds], base.values(split, metric), strict=True))
    theirs = dict(zip([s.seed for s in run.results.seeds], run.values(split, metric), strict=True))
    shared = [seed for seed in ours if seed in theirs]
    differences = [abs(theirs[seed] - ours[seed]) for seed in shared]
    return {
        "kind": "identity",
        "metric": metric,
        "seeds": len(shared),
        "equal": sum(d == 0 for d in differences),
        "largest_difference": max(differences, default=None),
        "passed": bool(shared) and all(d == 0 for d in differences),
    }


def method(tests: list[str], compared: int) -> str:
    described = {
        "paired t-test": "paired t-test over seeds (the same training draw per seed; Wilcoxon's signed-rank test "
        "beside it)",
        "Welch's t-test": "Welch's t-test over seeds (two-sided, unequal variances; seeds not paired)",
    }
    tests = " and ".join(described[t] for t in tests) or "no test"
    return f"{tests[0].upper()}{tests[1:]}; p corrected by Holm's method for {compared} comparison(s)"


def p_text(p: float | None) -> str:
    return "n/a" if p is None else ("<0.001" if p < 0.001 else f"{p:.2g}")


def _delta(stats: dict) -> str:
    p, corrected = stats["p_value"], stats.get("p_holm")
    shown = "p n/a" if p is None else f"p={p_text(p)}".replace("=<", "<")
    if corrected is not None and corrected != p:
        shown += f", Holm {p_text(corrected)}"
    return f"{100 * stats['delta']:+.1f} ({shown}{'*' if stats['significant'] else ''})"


def interval(stats: dict) -> str | None:
    bootstrap = stats.get("bootstrap")
    if not bootstrap:
        return None
    return f"[{100 * bootstrap['low']:+.1f}, {100 * bootstrap['high']:+.1f}]"


def to_markdown(comparison: dict) -> str:
    """The table (percent; Δ in percentage points against the baseline), the runs' models and the footnotes."""
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
        f"against {runs[0]['name']}. {comparison['method']}; * p < {ALPHA} after the correction{na}.",
        *evidence_lines(comparison),
    ]
    return "\n".join(lines)


def evidence_lines(comparison: dict) -> list[str]:
    """Per run: why it was not paired, the test-set interval and the power of the design, on the first metric."""
    m, lines = comparison["metrics"][0], []
    for row in comparison["runs"][1:]:
        stats = row["metrics"][m]
        parts = []
        if stats.get("pairing_note"):
            parts.append(f"not paired with {comparison['baseline']} ({stats['pairing_note']}): Welch's test")
        if interval(stats):
            parts.append(f"95% interval of Δ over test examples (bootstrap) {interval(stats)}")
        detectable, needed = stats["power"]["detectable"], stats["power"]["seeds_needed"]
        if detectable is not None:
            parts.append(f"smallest Δ this design detects (80% power): {100 * detectable:.1f}")
        if needed is not None:
            parts.append(f"seeds per arm to detect the observed Δ: {needed}")
        if parts:
            lines.append(f"{row['name']}, {m}: " + "; ".join(parts) + ".")
    return lines


def make_parser() -> argparse.ArgumentParser:
    from .config import ArgumentParser, HelpFormatter

    parser = ArgumentParser(
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
