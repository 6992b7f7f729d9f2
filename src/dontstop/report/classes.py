"""The report's per-class section: F1 of every class for the best arm against the baseline (mean ± std over seeds),
the classes whose F1 changed significantly in any arm, and the confusion matrices of the two arms.

Each class is tested like the headline metric (`compare.compare_values`: paired by seed when the arms drew the same
training examples, Welch's t-test otherwise), and the p-values of one arm's classes are corrected together by Holm's
method: with twenty classes, one in twenty would otherwise look changed by chance alone."""

from __future__ import annotations

import numpy as np

from ..compare import Run, compare_values, load_run, pairing, predictions
from ..evidence import ALPHA, holm
from ..records import ExperimentSummary
from ..scoring import mean_std_percent
from .figures import PLOT_STYLE, _png, _pyplot
from .sections import caption, table
from .statistics import p_text, points

ANNOTATE_UP_TO = 12  # classes; beyond this the cells of a confusion matrix are too small to hold numbers


def class_changes(base: Run, run: Run, split: str) -> list[dict]:
    """Per class of `base`: its F1 in both runs (aggregates over seeds) and the test of the change, p corrected by
    Holm's method over the classes."""
    note = pairing(base, run)
    rows = []
    for name in base.results.classes(split):
        ours, theirs = base.results.class_values(split, name), run.results.class_values(split, name)
        stats = compare_values(base, run, ours, theirs, note, power=False)
        support = base.results.class_values(split, name, "support")
        rows.append({"class": name, "support": support[0], "base": {"mean": np.mean(ours), "std": _std(ours)},
                     "stats": stats})  # fmt: skip
    for row, corrected in zip(rows, holm([r["stats"]["p_value"] for r in rows]), strict=True):
        row["stats"]["p_holm"] = corrected
        row["stats"]["significant"] = corrected is not None and corrected < ALPHA
    return rows


def _std(values: list[float]) -> float | None:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def confusion(run: Run, split: str, labels: list[str]) -> np.ndarray | None:
    """The confusion counts summed over seeds (rows gold, columns predicted, in `labels` order), or None without
    every seed's predictions."""
    found = predictions(run, split)
    if found is None:
        return None
    gold, predicted = found
    index = {label: i for i, label in enumerate(labels)}
    counts = np.zeros((len(labels), len(labels)))
    for seed in predicted:
        np.add.at(counts, ([index[g] for g in gold], [index[p] for p in seed]), 1)
    return counts


def confusion_chart(matrices: dict[str, np.ndarray], labels: list[str]) -> bytes:
    """One panel per arm: each gold class's row, as the share of its examples predicted as each class."""
    plt = _pyplot()
    k = len(labels)
    side = min(6.0, max(3.2, 0.22 * k + 1.6))
    with plt.rc_context({**PLOT_STYLE, "axes.grid": False}):
        fig, axes = plt.subplots(1, len(matrices), figsize=(side * len(matrices) + 0.8, side), squeeze=False)
        for ax, (name, counts) in zip(axes[0], matrices.items(), strict=True):
            shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
            image = ax.imshow(100 * shares, cmap="Blues", vmin=0, vmax=100)
            ax.set_xticks(range(k), labels, rotation=90, fontsize=6.5 if k > 12 else 8.5)
            ax.set_yticks(range(k), labels, fontsize=6.5 if k > 12 else 8.5)
            ax.set_xlabel("predicted")
            ax.set_title(name, loc="left")
            if k <= ANNOTATE_UP_TO:
                for (i, j), value in np.ndenumerate(100 * shares):
                    if value >= 0.5:
                        ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7.5,
                                color="white" if value > 60 else "#1d2330")  # fmt: skip
        axes[0][0].set_ylabel("gold")
        fig.colorbar(image, ax=list(axes[0]), shrink=0.8, label="% of the gold class")
    return _png(fig)


def best_other(comparison: dict) -> dict | None:
    """The arm the section shows against the baseline: the verdict's best, or the best other arm when the baseline
    itself is best; None with the baseline alone."""
    metric, runs = comparison["primary_metric"], comparison["runs"]
    if len(runs) < 2:
        return None
    best = next(row for row in runs if row["name"] == comparison["verdict"]["best"])
    return best if best is not runs[0] else max(runs[1:], key=lambda row: row["metrics"][metric]["mean"])


def class_sections(summary: ExperimentSummary, comparison: dict, figures: dict) -> list[dict]:
    """The per-class section (and its figure, added to `figures`), when the runs scored classes one by one."""
    split = comparison["split"]
    chosen = best_other(comparison)
    runs = [load_run(f"{row['name']}={row['dir']}") for row in comparison["runs"]]
    if chosen is None or not all(run.results.classes(split) for run in runs):
        return []
    base, best = runs[0], next(run for run in runs if run.name == chosen["name"])
    rows = class_changes(base, best, split)
    cells, classes = [], []
    for row in sorted(rows, key=lambda r: r["base"]["mean"]):
        s = row["stats"]
        tone = ("pos" if s["delta"] > 0 else "neg") if s["significant"] else ""
        p = "n/a" if s["p_holm"] is None else p_text(s)
        cells.append([row["class"], f"{row['support']:.0f}", mean_std_percent(row["base"]), mean_std_percent(s),
                      (points(s["delta"]), tone), p, "yes" if s["significant"] else "no"])  # fmt: skip
        classes.append("best" if s["significant"] else "")
    blocks = [
        {"kind": "h2", "text": "Per class", "id": "classes"},
        caption(
            f"{split} F1 of every class, percent, mean ± std over seeds, for **{best.name}** against **{base.name}** "
            f"(worst class of the baseline first); support: the class's {split} examples. Δ in points; "
            f"{rows[0]['stats']['test']} over seeds per class, p corrected by Holm's method over the "
            f"{len(rows)} classes; changed: corrected p < {ALPHA}."
        ),
        table(
            ["class", "support", f"{base.name} F1", f"{best.name} F1", "Δ", "Holm p", "changed"],
            cells,
            "lrrrrrl",
            row_classes=classes,
        ),  # fmt: skip
        *changed_classes(base, runs[1:], split),
    ]
    matrices = {run.name: confusion(run, split, base.results.labels) for run in (base, best)}
    if base.results.task_type == "single_label" and all(m is not None for m in matrices.values()):
        figures["confusion.png"] = confusion_chart(matrices, base.results.labels)
        blocks.append({"kind": "figure", "file": "confusion.png", "caption": f"Confusion on {split}, every seed's "
                       f"predictions pooled: each gold class's row as the share of its examples predicted as each "
                       f"class, for {base.name} (left) and {best.name} (right)."})  # fmt: skip
    return blocks


def p_equals(stats: dict) -> str:
    """ "= 0.012" or "< 0.001", to follow a "p"."""
    text = p_text(stats)
    return f"< {text[1:]}" if text.startswith("<") else f"= {text}"


def changed_classes(base: Run, others: list[Run], split: str) -> list[dict]:
    """One line per arm: the classes whose F1 changed significantly against the baseline (Holm over its classes)."""
    items = []
    for run in others:
        changed = [r for r in class_changes(base, run, split) if r["stats"]["significant"]]
        named = ", ".join(f"{r['class']} ({points(r['stats']['delta'])}, p {p_equals(r['stats'])})" for r in changed)
        items.append(f"**{run.name}**: " + (named or "no class changed significantly"))
    return [caption(f"Classes whose {split} F1 changed significantly against {base.name}, per arm:"),
            {"kind": "list", "items": items}]  # fmt: skip
