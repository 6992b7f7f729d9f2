"""Paired comparisons of `dontstop finetune` runs for the benchmarks' tables: `compare.compare_runs` over a list of
runs (the first the baseline), and the cells of a row (Δ with its interval, p, Holm's p, Wilcoxon's p, the paired
bootstrap over test examples), in percent; and the report written out."""

from __future__ import annotations

import platform


def percent(value: float | None, signed: bool = False) -> str:
    return "n/a" if value is None else f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"


def p_value(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"


def comparison_rows(runs: list[dict], metric: str) -> dict[str, dict]:
    """compare.compare_runs over `runs` (the first the baseline): {run name: its row}."""
    from dontstop.compare import compare_runs, load_run

    loaded = [load_run(f"{run['name']}={run['dir']}") for run in runs]
    comparison = compare_runs(loaded, "test", [metric, "accuracy"])
    return {row["name"]: row for row in comparison["runs"]}


def delta_cells(row: dict, metric: str) -> list[str]:
    stats = row["metrics"][metric]
    if "delta" not in stats:
        return ["baseline", "", "", "", ""]
    low, high = stats["ci_low"], stats["ci_high"]
    interval = f" [{percent(low, True)}, {percent(high, True)}]" if low is not None else ""
    boot = stats.get("bootstrap")
    boot = f"[{percent(boot['low'], True)}, {percent(boot['high'], True)}]" if boot else "n/a"
    return [f"{percent(stats['delta'], True)}{interval}", p_value(stats["p_value"]), p_value(stats["p_holm"]),
            p_value(stats.get("wilcoxon_p")), boot]  # fmt: skip


def publish(text: str, output: str | None) -> None:
    """Print a benchmark's report and write it to `output` (none: printed only), with the platform it ran on."""
    print(text)
    if output:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        print(f"written to {output}")
    print(f"platform: {platform.platform()}")
