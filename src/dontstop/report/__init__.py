"""The report of a `dontstop run` experiment: `report.md`, a self-contained `report.html` and the figures beside them.

    from dontstop.report import write_report
    write_report(summary, "runs/demo/report")  # summary: an ExperimentSummary, see below

In order: a verdict (the best arm on the primary metric and whether it beats the baseline significantly, in plain
words), the results table (mean ± std over seeds, Δ in points against the baseline and Welch's p, all computed by
`compare.py`), a bar chart of the primary metric, the pretraining loss curves, the held-out LM loss before and after
each arm (forgetting), the vocabulary overlap of the corpora (from `dontstop inspect`), compute per arm, each arm's
chain of stages with its directories, and every setting. The content is built once as a list of blocks (heading,
paragraph, table, figure, ...) and rendered twice: Markdown for the repository, HTML (inline CSS, PNGs as base64 data
URIs, nothing fetched) for people.

The summary is an `ExperimentSummary` (`records/`, what `dontstop run` writes to experiment.json), or the same as a
dict, checked on the way in. Optional entries it lacks are shown as n/a or leave their section out.

The package: `statistics` (the comparison, the verdict, numbers as words), `figures`, `sections` (the content as
blocks), `render` (blocks to Markdown and HTML; the page and its CSS are the files `page.html` and `report.css`).
"""

from __future__ import annotations

import logging
import os

from ..outputs import staged
from ..records import ExperimentSummary
from .curves import curve_sections
from .figures import arm_colors, forgetting_chart, forgetting_rows, loss_chart, overlap, pretrain_lines, results_chart
from .render import render_html, render_markdown
from .sections import build
from .statistics import baseline_first, compare_arms, results_table, verdict  # noqa: F401  (the API)

logger = logging.getLogger(__name__)

__all__ = ["compare_arms", "results_table", "verdict", "write_report"]


def write_report(summary: ExperimentSummary | dict, output_dir: str) -> dict:
    """Write report.md, report.html and the figures into `output_dir` (all or nothing). Returns {"html", "markdown",
    "paths" (every file by name), "comparison" (`compare.compare_runs`'s, plus "primary_metric" and "verdict"),
    "verdict"}; pass the comparison on to `results_table` to skip computing it again."""
    summary = baseline_first(summary)
    comparison = compare_arms(summary)
    colors = arm_colors(summary)
    figures: dict[str, bytes] = {}
    figures["results.png"], bottom = results_chart(comparison, colors)
    curves = loss_chart(pretrain_lines(summary))
    if curves is not None:
        figures["loss_curves.png"] = curves
    forgetting = forgetting_chart(forgetting_rows(summary), colors)
    if forgetting is not None:
        figures["forgetting.png"] = forgetting
    heatmap, similarity = overlap(summary.inspect_dir)
    if heatmap is not None:
        figures["overlap.png"] = heatmap
    curves = curve_sections(summary, comparison, colors, figures)
    blocks = build(summary, comparison, figures, similarity, bottom, curves)
    markdown, page = render_markdown(blocks), render_html(blocks, figures)
    with staged(output_dir) as path:
        for name, data in figures.items():
            with open(path(name), "wb") as f:
                f.write(data)
        with open(path("report.md"), "w", encoding="utf-8") as f:
            f.write(markdown)
        with open(path("report.html"), "w", encoding="utf-8") as f:
            f.write(page)
    paths = {name: os.path.join(output_dir, name) for name in ["report.md", "report.html", *figures]}
    logger.info("Report: %s", paths["report.html"])
    return {
        "html": paths["report.html"],
        "markdown": paths["report.md"],
        "paths": paths,
        "comparison": comparison,
        "verdict": comparison["verdict"],
    }
