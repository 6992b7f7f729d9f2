"""The numbers of the report: every arm's fine-tuning runs compared with the baseline's (`compare.py`), the verdict
computed from them once, and the words and figures the numbers are shown with."""

from __future__ import annotations

import dataclasses

from ..compare import ALPHA, available_metrics, check_comparable, compare_runs, load_run
from ..errors import UsageError
from ..records import ExperimentSummary
from ..scoring import PRIMARY_METRIC, mean_std_percent


def points(delta: float) -> str:
    return f"{round(100 * delta, 1) + 0.0:+.1f}"  # + 0.0: no "-0.0" for a tie


def corrected_p(stats: dict) -> float | None:
    """The p-value the verdict stands on: Holm-corrected for the arms compared with the baseline."""
    return stats.get("p_holm", stats.get("p_value"))


def p_text(stats: dict) -> str:
    p = corrected_p(stats)
    return "n/a" if p is None else ("<0.001" if p < 0.001 else f"{p:.2g}")


def p_phrase(stats: dict) -> str:
    """For sentences: "paired t-test, Holm-corrected p = 0.03" (or p < 0.001)."""
    text = p_text(stats)
    p = f"p < {text[1:]}" if text.startswith("<") else f"p = {text}"
    corrected = "Holm-corrected " if "p_holm" in stats else ""
    return f"{stats['test']}, {corrected}{p}" if stats.get("test") else p


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, s = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def loss(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def count(n: int | None) -> str:
    return "n/a" if n is None else f"{n:,}"


def as_summary(summary: ExperimentSummary | dict) -> ExperimentSummary:
    """The summary as a record (a dict is checked: an unknown or missing key is an error)."""
    return summary if isinstance(summary, ExperimentSummary) else ExperimentSummary.from_dict(summary)


def baseline_first(summary: ExperimentSummary | dict) -> ExperimentSummary:
    """The summary with its baseline arm (named by `baseline`, else the first) first, as compare.py expects."""
    summary = as_summary(summary)
    if not summary.arms:
        raise UsageError("the experiment has no arms to report")
    name = summary.baseline or summary.arms[0].name
    ordered = sorted(summary.arms, key=lambda arm: arm.name != name)  # stable: the others keep their order
    if ordered[0].name != name:
        raise UsageError(f"baseline {name!r}: no arm of that name (arms: {', '.join(a.name for a in summary.arms)})")
    return dataclasses.replace(summary, arms=ordered)


def compare_arms(summary: ExperimentSummary | dict) -> dict:
    """`compare.compare_runs` over the arms' fine-tuning runs (the baseline first), the primary metric first and
    named in the result, with the verdict (`verdict`) computed once."""
    summary = baseline_first(summary)
    runs = [load_run(f"{arm.name}={arm.finetune_dir}") for arm in summary.arms]
    split = summary.split or ("test" if runs[0].has_split("test") else "dev")
    check_comparable(runs, split)
    metrics = available_metrics(runs, split)
    primary = summary.primary_metric
    if primary and primary not in metrics:
        raise UsageError(f"primary metric {primary}: not reported on {split} (available: {', '.join(metrics)})")
    if not primary:
        # results.json names the metric that chose the best epoch; "loss" is no score, so fall back to the task's.
        base = runs[0].results
        candidates = [base.primary_metric, PRIMARY_METRIC.get(base.task_type), *metrics]
        primary = next(m for m in candidates if m in metrics)
    checks = {arm.name: arm.check for arm in summary.arms if arm.check}
    comparison = compare_runs(runs, split, [primary] + [m for m in metrics if m != primary], checks)
    comparison["primary_metric"] = primary
    comparison["verdict"] = verdict(comparison)
    return comparison


def verdict(comparison: dict) -> dict:
    """The headline: which arm is best on the primary metric and whether it beats the baseline significantly, then
    the outcome of any design check. Returns {"text" (Markdown), "tone" ("win", "unclear" or "none"), "best"}."""
    result = methods_verdict(comparison)
    baseline = comparison["runs"][0]["name"]
    for row in comparison["runs"]:
        if "check" in row:
            result["text"] += " " + check_sentence(row, baseline)
    return result


def methods_verdict(comparison: dict) -> dict:
    metric, runs = comparison["primary_metric"], [r for r in comparison["runs"] if "check" not in r]
    label = f"{comparison['split']} {metric}"
    base, others = runs[0], runs[1:]

    def stats(row: dict) -> dict:
        return row["metrics"][metric]

    if not others:
        return {
            "best": base["name"],
            "tone": "none",
            "text": f"Only the baseline ran: {label} {mean_std_percent(stats(base))}.",
        }
    best = max(runs, key=lambda row: stats(row)["mean"])  # the first of equals, so a tie goes to the baseline
    if best is base:
        closest = max(others, key=lambda row: stats(row)["mean"])
        s = stats(closest)
        how = "significantly" if s["significant"] else f"not significantly ({p_phrase(s)})"
        text = (
            f"No arm beats the baseline on {label}: **{base['name']}** scores {mean_std_percent(stats(base))}, and "
            f"the closest arm, **{closest['name']}**, is {points(s['delta'])} points from it, {how}."
        )
        tone = "none"
    else:
        s = stats(best)
        seeds = f"{len(base['seeds'])} vs {len(best['seeds'])} seeds"
        text = (
            f"**{best['name']}** is best on {label} ({mean_std_percent(s)}), {points(s['delta'])} points over "
            f"**{base['name']}**"
        )
        if s["significant"]:
            text += f": a significant gain ({p_phrase(s)}, {seeds})."
            tone = "win"
        elif s["p_value"] is None:
            text += f", but significance could not be tested ({s['p_note']})."
            tone = "unclear"
        else:
            text += f", but the gain is not significant ({p_phrase(s)}, {seeds}): it may be seed noise."
            tone = "unclear"
    rest = [row for row in others if row is not best and stats(row)["significant"]]
    for word, sign in (("above", 1), ("below", -1)):
        named = [f"{row['name']} ({points(stats(row)['delta'])})" for row in rest if sign * stats(row)["delta"] > 0]
        if named:
            text += f" Also significantly {word} the baseline: {', '.join(named)}."
    if tone != "win":
        text += " No arm is better than the baseline at this budget."
    return {"best": best["name"], "tone": tone, "text": text}


def check_sentence(row: dict, baseline: str) -> str:
    """The outcome of a design check, in a sentence: a failed one says the comparison cannot be trusted."""
    check = row["check"]
    seeds = f"{check['equal']} of {check['seeds']} seeds"
    if check["passed"]:
        return f"Identity check **{row['name']}**: the same {check['metric']} as {baseline} on {seeds}."
    return (
        f"**Identity check {row['name']} failed**: the same {check['metric']} as {baseline} on only {seeds} "
        f"(largest difference {points(check['largest_difference'] or 0.0)} points): arms differ in more than their "
        "checkpoint, so their differences are not the method's alone."
    )


def results_table(summary: ExperimentSummary | dict, comparison: dict | None = None) -> str:
    """The terminal's table (Markdown): per arm the primary metric's mean ± std, Δ and p, then the other metrics'
    means, and the verdict under it."""
    comparison = comparison or compare_arms(summary)
    primary, others = comparison["primary_metric"], comparison["metrics"][1:]
    header = ["arm", "seeds", f"{primary}", "Δ", "p", *others]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "--:|" * (len(header) - 1)]
    for i, row in enumerate(comparison["runs"]):
        s = row["metrics"][primary]
        delta = ("baseline", "") if i == 0 else (points(s["delta"]) + ("*" if s["significant"] else ""), p_text(s))
        cells = [row["name"], str(len(row["seeds"])), mean_std_percent(s), *delta]
        lines.append("| " + " | ".join(cells + [mean_std_percent(row["metrics"][m]) for m in others]) + " |")
    plain = comparison["verdict"]["text"].replace("**", "")
    lines += [
        "",
        f"{comparison['split']} split, percent, mean ± std over seeds; Δ in points against {comparison['baseline']}; "
        f"{comparison['method']}; * p < {ALPHA} after the correction.",
        f"Verdict: {plain}",
    ]
    return "\n".join(lines)
