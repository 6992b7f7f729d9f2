"""`dontstop run`: a tiny experiment end to end, stage caching, resuming, the report, and bad experiment files."""

from __future__ import annotations

import base64
import json
import os
import re

import pytest
import yaml
from conftest import synthetic_documents, write_jsonl
from helpers import separable_task, write_rows

from dontstop.errors import UsageError
from dontstop.experiment import MARKER, load_experiment, run_experiment


def experiment_yaml(tmp_path, model: str, **changes) -> str:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    write_jsonl(data / "domain.jsonl", synthetic_documents(120, seed=1))
    write_jsonl(data / "general.jsonl", synthetic_documents(60, seed=2))
    write_rows(data / "train.jsonl", separable_task(48, 0))
    write_rows(data / "dev.jsonl", separable_task(16, 1))
    write_rows(data / "test.jsonl", separable_task(24, 2))
    config = {
        "name": "tiny",
        "model": model,
        "corpora": {"domain": "data/domain.jsonl", "general": "data/general.jsonl"},
        "task": {"train": "data/train.jsonl", "dev": "data/dev.jsonl", "test": "data/test.jsonl"},
        "held_out": {"documents": 10, "eval_samples": 8, "eval_blocks": 4, "max_seq_length": 32, "batch_size": 8},
        "inspect": {"top_k": 50},
        "pretrain": {"max_seq_length": 32, "per_device_train_batch_size": 8, "learning_rate": 1e-3,
                     "logging_steps": 2, "disable_tqdm": True},
        "budgets": {"dapt": {"max_steps": 6}, "tapt": {"max_steps": 4, "line_by_line": True}},
        "finetune": {"seeds": 2, "num_train_epochs": 2, "max_seq_length": 32, "learning_rate": 3e-3,
                     "per_device_train_batch_size": 8, "disable_tqdm": True},
        "arms": ["baseline", "tapt"],
    }  # fmt: skip
    for key, value in changes.items():
        config[key] = value
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


def ran_stages(summary: dict) -> set[str]:
    return {f"{s['kind']} {s['label']}" for s in summary["stages_run"]}


@pytest.mark.slow
def test_tiny_experiment_runs_end_to_end_then_caches_and_reruns_only_what_changed(tiny_bert, tmp_path):
    path = experiment_yaml(tmp_path, tiny_bert)
    out = str(tmp_path / "runs" / "tiny")
    summary = run_experiment(load_experiment(path, out))

    # Every stage ran once: data, overlap, the base and the TAPT checkpoint's evaluation, TAPT, two fine-tunings.
    assert ran_stages(summary) == {
        "prepare data",
        "inspect overlap",
        "lm-eval base",
        "pretrain tapt",
        "lm-eval tapt",
        "finetune baseline",
        "finetune tapt",
    }
    baseline, tapt = summary["arms"]
    assert [a["name"] for a in summary["arms"]] == ["baseline", "tapt"]
    assert summary["estimated_seconds"] > 0  # said before the first stage, kept beside the wall time
    assert baseline["stages"] == [] and baseline["lm_eval"] == {}
    results = json.load(open(os.path.join(tapt["finetune_dir"], "results.json")))
    assert [s["seed"] for s in results["seeds"]] == [42, 43]
    # TAPT fine-tunes its own pretrained checkpoint, which trained 4 steps on the task's text.
    assert results["model"] == tapt["stages"][0]["dir"]
    assert tapt["stages"][0]["steps"] == 4 and tapt["stages"][0]["tokens"] > 0
    assert tapt["compute"]["pretrain_steps"] == 4
    assert set(tapt["lm_eval"]) == {"domain", "general", "task"}
    for losses in tapt["lm_eval"].values():
        assert losses["before"] > 0 and losses["after"] > 0 and losses["before"] != losses["after"]
    # Held-out documents are never trained on: the prepare stage split them off.
    prepare = next(d for d in os.listdir(os.path.join(out, "stages")) if d.startswith("prepare-"))
    counts = json.load(open(os.path.join(out, "stages", prepare, "counts.json")))
    assert counts["domain_heldout"] == 10 and counts["domain_train"] == 110

    # The report: the table and the images, embedded.
    markdown = open(os.path.join(out, "report.md"), encoding="utf-8").read()
    assert "baseline" in markdown and "tapt" in markdown and "Δ" in markdown
    html = open(os.path.join(out, "report.html"), encoding="utf-8").read()
    images = re.findall(r'<img[^>]+src="data:image/png;base64,([^"]+)"', html)
    assert len(images) >= 3
    assert all(base64.b64decode(image)[:8] == b"\x89PNG\r\n\x1a\n" for image in images)
    assert not re.search(r'(src|href)="https?://', html)

    # Run again: everything is cached.
    again = run_experiment(load_experiment(path, out))
    assert ran_stages(again) == set()
    assert again["arms"][1]["stages"][0]["cached"]

    # One fine-tuning setting changed: only the two fine-tunings re-run; the TAPT checkpoint is reused.
    finetune = yaml.safe_load(open(path))["finetune"]
    changed = experiment_yaml(tmp_path, tiny_bert, finetune={**finetune, "learning_rate": 1e-3})
    third = run_experiment(load_experiment(changed, out))
    assert ran_stages(third) == {"finetune baseline", "finetune tapt"}

    # One TAPT setting changed: TAPT and what depends on it re-run; the baseline's fine-tuning does not.
    fourth = run_experiment(
        load_experiment(
            experiment_yaml(
                tmp_path,
                tiny_bert,
                finetune={**finetune, "learning_rate": 1e-3},
                budgets={"dapt": {"max_steps": 6}, "tapt": {"max_steps": 5, "line_by_line": True}},
            ),
            out,
        )
    )
    assert ran_stages(fourth) == {"pretrain tapt", "lm-eval tapt", "finetune tapt"}


@pytest.mark.slow
def test_interrupted_run_resumes_finished_seeds_and_redoes_unfinished_stages(tiny_bert, tmp_path, monkeypatch):
    import dontstop.experiment.runner as experiment

    path = experiment_yaml(tmp_path, tiny_bert, arms=["baseline"], inspect=False)
    out = str(tmp_path / "run")
    plan = load_experiment(path, out)
    real = experiment.run_stage

    def interrupted(stage, root):
        if stage.kind == "finetune":
            raise KeyboardInterrupt
        real(stage, root)

    monkeypatch.setattr(experiment, "run_stage", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(plan)
    finetune = plan.arms[0].finetune.directory(out)
    assert not os.path.exists(os.path.join(finetune, MARKER))
    # A half-done fine-tuning: seed 42 finished (as `dontstop finetune` leaves it), seed 43 not.
    monkeypatch.setattr(experiment, "run_stage", real)
    from dontstop.finetune import run_finetune

    run_finetune(*plan.arms[0].finetune.arguments(out, seeds="42,"))  # the seed 42 alone, not 42 seeds
    first = json.load(open(os.path.join(finetune, "seed-42", "result.json")))
    summary = run_experiment(load_experiment(path, out))
    assert ran_stages(summary) == {"finetune baseline"}
    results = json.load(open(os.path.join(finetune, "results.json")))
    assert [s["seed"] for s in results["seeds"]] == [42, 43]
    assert results["seeds"][0]["dev"] == first["dev"]  # reused, not retrained


def test_dapt_is_shared_by_arms_and_chains_start_from_the_previous_stage(tiny_bert, tmp_path):
    arms = ["dapt", "dapt+tapt", {"name": "dapt-ema", "arm": "dapt", "pretrain": {"ema": 0.9}, "weights": "ema"}]
    path = experiment_yaml(tmp_path, tiny_bert, arms=arms)
    plan = load_experiment(path, str(tmp_path / "out"))
    dapt, both, ema = plan.arms
    assert both.chain[0] is dapt.chain[0]  # one stage, planned once
    assert both.chain[1].options["model_name_or_path"].stage is dapt.chain[0]
    assert ema.chain[0] is not dapt.chain[0] and ema.chain[0].options["ema"] == 0.9
    assert ema.finetune.options["model_name_or_path"].path == "ema"
    assert len([s for s in plan.stages if s.kind == "pretrain"]) == 3


def test_knn_tapt_selects_from_the_domain_training_split(tiny_bert, tmp_path):
    path = experiment_yaml(tmp_path, tiny_bert, arms=[{"name": "knn-tapt", "k": 3}])
    plan = load_experiment(path, str(tmp_path / "out"))
    select, pretrain = plan.arms[0].chain
    assert select.kind == "select" and select.options["k"] == 3 and select.options["strategy"] == "knn"
    assert pretrain.options["train_file"][0].stage is select
    assert pretrain.options["train_file"][0].path == "selected.jsonl"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"arms": ["baseline", "nonsense"]}, "arms[1] (nonsense): not a built-in arm"),
        ({"pretrain": {"learning_rat": 1e-3}}, "pretrain: unknown dontstop pretrain option(s) learning_rat"),
        (
            {"task": {"train": "data/missing.jsonl", "dev": "data/dev.jsonl"}},
            "task.train: data/missing.jsonl: no such",
        ),
        ({"colours": 3}, "unknown key(s) colours"),
        ({"arms": ["baseline", "baseline"]}, "arm names must be distinct"),
        ({"arms": [{"name": "x", "chain": [{"train": {}}]}]}, "expected {pretrain: {...}} or {select: {...}}"),
        ({"arms": [{"name": "x", "arm": "dapt", "check": "same"}]}, "check: 'same' is not one of identity"),
    ],
)
def test_bad_experiment_files_fail_with_one_line_naming_the_key(tiny_bert, tmp_path, change, message):
    path = experiment_yaml(tmp_path, tiny_bert, **change)
    with pytest.raises(UsageError) as error:
        load_experiment(path, str(tmp_path / "out"))
    assert message in str(error.value) and "\n" not in str(error.value)
    assert str(error.value).startswith(path)
    assert not os.path.exists(tmp_path / "out")


def test_cli_refuses_a_foreign_output_directory(tiny_bert, tmp_path, capsys):
    from dontstop.cli import main

    path = experiment_yaml(tmp_path, tiny_bert)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main(["run", path, "--output_dir", str(foreign)]) == 2
    assert "holds no experiment" in capsys.readouterr().err
    assert os.listdir(foreign) == ["notes.txt"]


def test_a_bad_option_value_fails_before_anything_runs(tiny_bert, tmp_path):
    path = experiment_yaml(tmp_path, tiny_bert, budgets={"tapt": {"max_steps": "many"}})
    out = tmp_path / "out"
    with pytest.raises(UsageError) as error:
        run_experiment(load_experiment(path, str(out)))
    assert "pretrain tapt" in str(error.value) and "max_steps" in str(error.value)
    assert not out.exists()


def test_a_model_directory_is_fingerprinted_by_content_not_by_its_documentation(tmp_path):
    from dontstop.fingerprint import content_hash as file_fingerprint

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"num_hidden_layers": 2}')
    before = file_fingerprint(str(model))
    (model / "README.md").write_text("a card")
    assert file_fingerprint(str(model)) == before  # documentation does not change what the model computes
    (model / "config.json").write_text('{"num_hidden_layers": 8}')  # the same size, another model
    assert file_fingerprint(str(model)) != before


def test_checkpoints_and_train_limits_plan_the_curves(tiny_bert, tmp_path):
    finetune = {"seeds": 2, "num_train_epochs": 1, "train_limits": ["4/class", 30, "all"]}
    arms = ["baseline", {"name": "dapt", "checkpoints": [0.25, 0.5, 1.0]}]
    plan = load_experiment(experiment_yaml(tmp_path, tiny_bert, arms=arms, finetune=finetune), str(tmp_path / "o"))
    baseline, dapt = plan.arms
    assert dapt.chain[0].options["snapshots"] == [0.25, 0.5]
    assert [(f, s.options["model_name_or_path"].path) for f, s, _ in dapt.budget] == [
        (0.25, "snapshot-0.25"),
        (0.5, "snapshot-0.5"),
    ]
    assert [size for size, _ in dapt.sizes] == [size for size, _ in baseline.sizes] == ["4/class", "30", "all"]
    options = [stage.options for _, stage in dapt.sizes]
    assert [(o["train_limit"], o["train_limit_per_class"]) for o in options] == [(None, 4), (30, None), (None, None)]
    for bad, message in ((["4/klass"], "'4/klass' is not a size"), ([0], "0 is not a size")):
        finetune = {"seeds": 2, "train_limits": bad}
        with pytest.raises(UsageError, match=message):
            load_experiment(experiment_yaml(tmp_path, tiny_bert, finetune=finetune), str(tmp_path / "o"))
    with pytest.raises(UsageError, match=r"arms\[0\] \(baseline\): checkpoints: needs a pretraining stage"):
        load_experiment(experiment_yaml(tmp_path, tiny_bert, arms=[{"name": "baseline", "checkpoints": [0.5]}]))


@pytest.mark.slow
def test_budget_and_label_curves_run_and_are_reported(tiny_bert, tmp_path):
    from dontstop.records import FinetuneResults

    finetune = {"seeds": 2, "num_train_epochs": 1, "max_seq_length": 32, "learning_rate": 3e-3,
                "per_device_train_batch_size": 8, "train_limits": ["4/class", "all"]}  # fmt: skip
    arms = ["baseline", {"name": "dapt", "checkpoints": [0.5, 1.0]}]
    path = experiment_yaml(tmp_path, tiny_bert, arms=arms, finetune=finetune, inspect=False)
    out = tmp_path / "run"
    summary = run_experiment(load_experiment(path, str(out)))
    dapt = summary.arm("dapt")
    (point,) = dapt.budget
    assert point.fraction == 0.5 and point.steps == 3 and point.tokens > 0 and point.lm_eval["domain"] > 0
    assert FinetuneResults.load(dapt.sizes[0].finetune_dir).seeds[0].train_examples == 8  # 4 of each of 2 labels
    markdown = (out / "report.md").read_text()
    assert "## Pretraining budget" in markdown and "## Labels" in markdown
    assert (out / "budget.png").exists() and (out / "labels.png").exists()


def test_a_clean_block_plans_a_clean_stage_whose_copy_the_arms_train_on(tiny_bert, tmp_path):
    clean = {"folds": 4, "max_seq_length": 32}
    arms = [{"name": "noisy", "arm": "baseline", "clean": False}, {"name": "cleaned", "arm": "baseline"}]
    plan = load_experiment(experiment_yaml(tmp_path, tiny_bert, clean=clean, arms=arms), str(tmp_path / "o"))
    (stage,) = [s for s in plan.stages if s.kind == "clean"]
    assert plan.stages.index(stage) < min(plan.stages.index(arm.finetune) for arm in plan.arms)
    assert stage.options["model_name_or_path"] == tiny_bert and stage.options["write_clean"] is True
    assert stage.options["train_file"] == str(tmp_path / "data" / "train.jsonl") and stage.options["folds"] == 4
    noisy, cleaned = plan.arms
    assert noisy.clean is None and noisy.finetune.options["train_file"] == str(tmp_path / "data" / "train.jsonl")
    ref = cleaned.finetune.options["train_file"]
    assert cleaned.clean is stage and (ref.stage, ref.path) == (stage, "cleaned.jsonl")
    assert "on the cleaned training file" in cleaned.description and "cleaned" not in noisy.description
    for arms, message in (
        ([{"name": "baseline", "clean": "yes"}], r"clean: expected true or false, got 'yes'"),
        ([{"name": "baseline", "clean": True}], r"clean: true needs a clean: section"),
    ):
        with pytest.raises(UsageError, match=message):
            load_experiment(experiment_yaml(tmp_path, tiny_bert, arms=arms), str(tmp_path / "o"))
    with pytest.raises(UsageError, match=r"clean: unknown dontstop clean option\(s\) fold"):
        load_experiment(experiment_yaml(tmp_path, tiny_bert, clean={"fold": 3}), str(tmp_path / "o"))
    with pytest.raises(UsageError, match=r"clean.model_name_or_path: .*no_such_package"):
        load_experiment(experiment_yaml(tmp_path, tiny_bert, clean={"model_name_or_path": "pkg:no_such_package"}))


@pytest.mark.slow
def test_arms_train_on_the_cleaned_file_and_the_report_says_so(tiny_bert, tmp_path):
    from helpers import flipped_task

    from dontstop.records import FinetuneResults, LabelIssues

    clean = {"folds": 4, "max_seq_length": 32, "logistic_c": 100}  # the tiny model's vectors need a weak prior
    arms = [{"name": "noisy", "arm": "baseline", "clean": False}, "baseline"]
    path = experiment_yaml(tmp_path, tiny_bert, inspect=False, clean=clean, arms=arms)
    write_rows(tmp_path / "data" / "train.jsonl", flipped_task(48, seed=0))
    out = tmp_path / "run"
    summary = run_experiment(load_experiment(path, str(out)))
    assert "clean labels" in ran_stages(summary)
    baseline = summary.arm("baseline")
    record = LabelIssues.load(baseline.clean_dir)
    assert record.issues >= 1 and summary.arm("noisy").clean_dir is None
    trained = FinetuneResults.load(baseline.finetune_dir).train_file
    assert trained["examples"] == 48 - record.issues and trained["path"].endswith("cleaned.jsonl")
    assert FinetuneResults.load(summary.arm("noisy").finetune_dir).train_file["examples"] == 48
    markdown = (out / "report.md").read_text()
    assert f"**clean** (embed, 4 folds) · {record.issues} of 48 training labels flagged" in markdown
    again = run_experiment(load_experiment(path, str(out)))
    assert not again.stages_run  # everything cached, the clean stage too
