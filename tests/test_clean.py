"""`dontstop clean`: a planted label error found (both modes), the input never touched, the cleaned copy, errors."""

from __future__ import annotations

import csv
import hashlib
import json
import os

import numpy as np
import pytest
from helpers import flipped_task, write_rows

from dontstop.cli import main

# The tiny random model's sentence vectors differ little between the classes: a weakly regularised regression
# separates them (MiniLM's need no such help).
TOY_C = "100"


def clean(model, train, out, *extra) -> int:
    return main(["clean", "--train_file", str(train), "--model_name_or_path", model, "--output_dir", str(out),
                 "--folds", "4", "--max_seq_length", "32", "--logistic_c", TOY_C, "--disable_tqdm", "true",
                 *extra])  # fmt: skip


def digest(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_embed_mode_finds_a_planted_flipped_label_and_never_touches_the_input(tiny_bert, tmp_path):
    rows = flipped_task(40, seed=0)  # example 7 (line 8) is a "network" text labelled "system"
    train = write_rows(tmp_path / "train.jsonl", rows)
    before, stat = digest(train), os.stat(train)
    assert clean(tiny_bert, train, tmp_path / "out", "--write_clean") == 0
    assert digest(train) == before and os.stat(train).st_mtime_ns == stat.st_mtime_ns
    issues = [json.loads(line) for line in (tmp_path / "out" / "label_issues.jsonl").open()]
    assert issues[0]["line"] == 8 and issues[0]["rank"] == 1
    assert (issues[0]["given_label"], issues[0]["suggested_label"]) == ("system", "network")
    assert issues[0]["text"] == rows[7]["text"] and issues[0]["score"] < 0.5
    assert [r["score"] for r in issues] == sorted(r["score"] for r in issues)  # ranked by self-confidence
    record = json.loads((tmp_path / "out" / "clean.json").read_text())
    assert record["issues"] == len(issues) and record["labels"] == ["network", "system"]
    assert record["per_class"]["system"]["flagged"] >= 1 and record["per_class"]["system"]["examples"] == 21
    probabilities = np.load(tmp_path / "out" / "probabilities.npy")
    assert probabilities.shape == (40, 2) and np.allclose(probabilities.sum(1), 1, atol=1e-5)
    assert probabilities[7].argmax() == 0  # "network", the text's true class, out of fold
    # the cleaned copy: the flagged lines gone, every other line byte for byte as it was
    original = open(train, encoding="utf-8").read().split("\n")
    cleaned = (tmp_path / "out" / "cleaned.jsonl").read_text(encoding="utf-8").split("\n")
    flagged = {r["line"] for r in issues}
    assert cleaned == [line for n, line in enumerate(original, start=1) if n not in flagged]
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "| 1 | 8 | system | network" in readme and "The input was not changed" in readme


def test_relabel_writes_a_csv_copy_with_the_suggested_label(tiny_bert, tmp_path):
    rows = flipped_task(40, seed=1)
    train = tmp_path / "train.csv"
    with open(train, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["text", "label", "id"])
        writer.writeheader()
        writer.writerows({**row, "id": i} for i, row in enumerate(rows))
    out = tmp_path / "out"
    assert clean(tiny_bert, train, out, "--write_clean", "--clean_action", "relabel") == 0
    with open(out / "cleaned.csv", newline="", encoding="utf-8") as f:
        cleaned = list(csv.DictReader(f))
    assert len(cleaned) == 40 and cleaned[7] == {"text": rows[7]["text"], "label": "network", "id": "7"}
    record = json.loads((out / "clean.json").read_text())
    assert record["cleaned"]["relabelled"] == record["issues"] and record["cleaned"]["removed"] == 0


@pytest.mark.slow
def test_finetune_mode_finds_the_planted_label_with_a_run_per_fold(tiny_bert, tmp_path):
    train = write_rows(tmp_path / "train.jsonl", flipped_task(60, seed=2))
    extra = ("--mode", "finetune", "--num_train_epochs", "10", "--learning_rate", "1e-2",
             "--per_device_train_batch_size", "8")  # fmt: skip
    assert clean(tiny_bert, train, tmp_path / "out", *extra) == 0
    issues = [json.loads(line) for line in (tmp_path / "out" / "label_issues.jsonl").open()]
    assert issues[0]["line"] == 8 and issues[0]["suggested_label"] == "network"
    # each fold is a dontstop finetune run that never saw its held-out examples
    for k in range(4):
        results = json.loads((tmp_path / "out" / "folds" / f"fold-{k}" / "run" / "results.json").read_text())
        assert results["train_file"]["examples"] + results["test_file"]["examples"] + results["validation_file"][
            "examples"] == 60  # fmt: skip
    assert json.loads((tmp_path / "out" / "clean.json").read_text())["mode"] == "finetune"


@pytest.mark.parametrize(
    "rows, folds, error",
    [
        ([{"text": "a b", "label": "x"}] * 6, "2", "one class only ('x', 6 examples)"),
        ([{"text": "a b", "label": "x"}] * 6 + [{"text": "c d", "label": "y"}] * 3, "4",
         "class 'y' has 3 examples, fewer than --folds 4"),
        ([{"text": "a b", "label": "x"}] * 6 + [{"text": "c d", "label": ["y"]}], "2", "must hold one label"),
    ],
)  # fmt: skip
def test_files_that_cannot_be_folded_are_one_line_errors(tiny_bert, tmp_path, capsys, rows, folds, error):
    train = write_rows(tmp_path / "train.jsonl", rows)
    args = ["clean", "--train_file", train, "--model_name_or_path", tiny_bert, "--folds", folds,
            "--output_dir", str(tmp_path / "out")]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert error in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_the_python_api_returns_the_record(tiny_bert, tmp_path):
    import dontstop

    train = write_rows(tmp_path / "train.jsonl", flipped_task(40, seed=0))
    record = dontstop.run_clean(
        train_file=train,
        model_name_or_path=tiny_bert,
        folds=4,
        max_seq_length=32,
        logistic_c=float(TOY_C),
        output_dir=str(tmp_path / "out"),
    )
    assert record.issues >= 1 and record.out_of_fold["accuracy"] > 0.8 and record.cleaned_file is None
    assert record.out_of_fold["log_loss"] > 0 and not (tmp_path / "out" / "cleaned.jsonl").exists()
    # --max_issues keeps the most suspect: a count, or a share of the examples
    for cap, kept in ((1, 1), (0.05, 2)):
        out = tmp_path / f"capped-{cap}"
        record = dontstop.run_clean(train_file=train, model_name_or_path=tiny_bert, folds=4, max_seq_length=32,
                                    logistic_c=float(TOY_C), max_issues=cap, output_dir=str(out))  # fmt: skip
        assert record.issues == min(kept, record.found)
        issues = [json.loads(line) for line in (out / "label_issues.jsonl").open()]
        assert len(issues) == record.issues and issues[0]["line"] == 8


def test_the_run_estimate_counts_a_clean_stage_by_its_mode(tmp_path):
    from dontstop.experiment.eta import work_of
    from dontstop.experiment.stages import Stage

    train = write_rows(tmp_path / "train.jsonl", [{"text": "a b", "label": "x"}] * 100)
    embed = work_of(Stage("clean", "labels", {"train_file": train, "folds": 5, "max_seq_length": 32}))
    assert (embed.train_tokens, embed.eval_tokens, embed.loads) == (0, 100 * 32, 1)  # one forward pass per text
    options = {"train_file": train, "folds": 5, "max_seq_length": 32, "mode": "finetune", "num_train_epochs": 2}
    finetune = work_of(Stage("clean", "labels", options))
    assert finetune.train_tokens == 2 * 4 * 100 * 32 and finetune.loads == 5  # each fold trains on the other four
