"""A newcomer's first hour: quiet logs (the libraries' chatter gone, `--verbose` brings it back), trackers writing
under the output directory, and a tracker that is not installed named in one line."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import pytest
from conftest import pretrain_args

from dontstop.cli import main


def test_tensorboard_curves_land_under_the_output_directory(tiny_bert, corpus, tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    elsewhere = tmp_path / "working-directory"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = tmp_path / "out"
    argv = pretrain_args(tiny_bert, corpus, str(out), "--max_steps", "4", "--logging_steps", "1")
    assert main(["pretrain", *argv, "--report_to", "tensorboard"]) == 0
    assert not os.listdir(elsewhere)  # nothing in ./runs
    assert glob.glob(str(out / "runs" / "events.out.tfevents.*"))
    curves = EventAccumulator(str(out / "runs"))  # one run: every event file of the directory
    curves.Reload()
    assert [e.step for e in curves.Scalars("train/loss")] == [1, 2, 3, 4]
    assert 0 in [e.step for e in curves.Scalars("eval/validation_loss")]  # the evaluation before training


def test_a_tracker_that_is_not_installed_is_one_line(tiny_bert, corpus, tmp_path, capsys, monkeypatch):
    from transformers.integrations import integration_utils

    monkeypatch.setattr(integration_utils, "is_wandb_available", lambda: False)
    out = tmp_path / "out"
    assert main(["pretrain", *pretrain_args(tiny_bert, corpus, str(out), "--report_to", "wandb")]) == 2
    assert capsys.readouterr().err.strip() == (
        "dontstop pretrain: error: --report_to wandb needs the wandb package: pip install wandb"
    )
    assert not out.exists()


def run_pretrain(model, corpus, out, *extra) -> str:
    argv = ["-m", "dontstop", "pretrain", *pretrain_args(model, corpus, str(out), "--max_steps", "12"), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_quiet_by_default_and_everything_with_verbose(tiny_bert_headless, corpus, tmp_path):
    quiet = run_pretrain(tiny_bert_headless, corpus, tmp_path / "quiet", "--eval_steps", "6")
    loud = run_pretrain(tiny_bert_headless, corpus, tmp_path / "loud", "--eval_steps", "6", "--verbose")
    for chatter in ("LOAD REPORT", "{'loss'", "'eval_validation_loss'"):
        assert chatter not in quiet and chatter in loud, chatter
    # dontstop says the same in its own words, once, and one line per evaluation.
    assert "MLM head not in the checkpoint (5 tensors): a new one trains alone first" in quiet
    assert quiet.count("held-out loss: validation") == 2  # the evaluations at steps 6 and 12


def test_the_estimate_scales_each_kind_by_what_its_finished_stages_took():
    from dontstop.experiment.eta import Estimate, Prices
    from dontstop.experiment.stages import Stage

    def pretrain(steps):
        return Stage("pretrain", f"p{steps}", {"max_steps": steps, "per_device_train_batch_size": 2,
                                               "max_seq_length": 8})  # fmt: skip

    estimate = Estimate(Prices(per_token=0.01, per_load=1.0))
    first, second = pretrain(10), pretrain(20)
    finetune = Stage("finetune", "f", {"seeds": "2", "num_train_epochs": 1, "max_seq_length": 4})
    assert estimate.planned(first) == pytest.approx(10 * 2 * 8 * 0.01 + 1.0)  # tokens trained, one load
    estimate.learn(first, 2 * estimate.planned(first))  # it took twice the estimate
    assert estimate.remaining([second]) == pytest.approx(2 * (20 * 2 * 8 * 0.01 + 1.0))
    # A kind not seen yet is scaled by all finished stages that ran the model together, not by one of fixed seconds.
    estimate.learn(Stage("prepare", "data", {}), 0.01)
    assert estimate.remaining([finetune]) == pytest.approx(2 * estimate.planned(finetune))
    # Only the given model warms a head up before its evaluation: an arm's checkpoint has a trained one.
    from dontstop.experiment.eta import lm_eval_work
    from dontstop.experiment.stages import Ref

    options = {"head_warmup_steps": 30, "batch_size": 16, "max_seq_length": 8, "eval_file": ["d"], "eval_blocks": 4}
    base = lm_eval_work(Stage("lm-eval", "base", {**options, "model_name_or_path": "m"}))
    arm = lm_eval_work(Stage("lm-eval", "dapt", {**options, "model_name_or_path": Ref(first)}))
    assert (base.eval_tokens, arm.eval_tokens) == ((30 * 16 + 4) * 8, 4 * 8)
    alike = lm_eval_work(
        Stage("lm-eval", "dapt", {**options, "model_name_or_path": Ref(first), "warm_up_head": "always"})
    )
    assert alike.eval_tokens == base.eval_tokens  # dontstop run warms every head up alike


def test_the_estimate_counts_a_per_class_limit_and_an_inspect_probe(tmp_path):
    """A 86-hour estimate for a 1-hour run came from these two: 10 per class counted as the whole training file, and
    an inspect stage with a probe counted as its probe's steps only (its ratio then scaled every later stage)."""
    from dontstop.experiment.eta import finetune_work, inspect_work
    from dontstop.experiment.stages import Stage

    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": f"t{i}", "label": f"c{i % 3}"}) + "\n" for i in range(300)))
    options = {"train_file": str(train), "seeds": "1", "num_train_epochs": 1, "max_seq_length": 4}
    whole = finetune_work(Stage("finetune", "f", options))
    few = finetune_work(Stage("finetune", "f", {**options, "train_limit_per_class": 10}))
    assert (whole.train_tokens, few.train_tokens) == (300 * 4, 3 * 10 * 4)
    bare = {"corpus": ["g", "d", "t"], "batch_size": 2, "max_seq_length": 4, "eval_blocks": 5, "head_warmup_steps": 3}
    assert inspect_work(Stage("inspect", "i", bare)).train_tokens == 0
    probed = inspect_work(Stage("inspect", "i", {**bare, "model_name_or_path": "m", "probe_steps": 7}))
    # One probed corpus (not the general reference, not the task): its steps, two warm-ups, 3 + 4 measured sets.
    assert probed.train_tokens == 7 * 2 * 4
    assert probed.eval_tokens == 2 * 3 * 2 * 4 + 3 * 5 * 4 + 4 * 5 * 4
    assert probed.loads == 2


def test_checkpoints_go_once_the_run_has_taken_all_its_steps(tiny_bert, corpus, tmp_path):
    saving = ["--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2"]
    out, kept = tmp_path / "out", tmp_path / "kept"
    assert main(["pretrain", *pretrain_args(tiny_bert, corpus, str(out), *saving)]) == 0
    assert not [n for n in os.listdir(out) if n.startswith("checkpoint-")]
    assert (out / "model.safetensors").exists()
    assert main(["pretrain", *pretrain_args(tiny_bert, corpus, str(kept), *saving, "--keep_checkpoints")]) == 0
    assert [n for n in os.listdir(kept) if n.startswith("checkpoint-")] == ["checkpoint-4"]  # the newest only


def test_the_default_length_fits_a_small_corpus(tiny_bert, tmp_path):
    import json

    from conftest import synthetic_documents, write_jsonl
    from transformers import AutoTokenizer

    documents = synthetic_documents(12, seed=3)
    small = write_jsonl(tmp_path / "small.jsonl", documents)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    longest = max(len(tokenizer(d)["input_ids"]) for d in documents)  # with [CLS] and [SEP]
    argv = pretrain_args(tiny_bert, small, str(tmp_path / "out"), "--max_steps", "1")
    argv.remove("--max_seq_length")
    argv.remove("32")
    assert main(["pretrain", *argv]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["max_seq_length"] == -(-longest // 8) * 8 < 128  # not the tiny model's 128


def test_finetune_without_a_dev_file_holds_one_out_and_keeps_the_best_seeds_model(tiny_bert, tmp_path):
    import json

    from helpers import finetune_args, separable_task, write_rows

    train = write_rows(tmp_path / "train.jsonl", separable_task(60, 0))
    out = tmp_path / "out"
    argv = finetune_args(tiny_bert, {"train": train, "dev": "-"}, out, "--seeds", "2", "--num_train_epochs", "1")
    at = argv.index("--validation_file")
    del argv[at : at + 2]
    assert main(["finetune", *argv]) == 0
    results = json.loads((out / "results.json").read_text())
    dev, kept = results["validation_file"], results["train_file"]
    assert dev["held_out"] == "10% of the training file, stratified by label (seed 0)"
    assert (dev["examples"], kept["examples"]) == (6, 54)
    dev_lines = {json.loads(line)["line"] for line in open(out / f"seed-{results['seeds'][0]['seed']}" /
                                                             "predictions_dev.jsonl")}  # fmt: skip
    assert len(dev_lines) == 6  # the same six for every seed: held out once, with seed 0
    best = max(results["seeds"], key=lambda s: s["dev"]["macro_f1"])
    assert results["best_model"] == f"seed-{best['seed']}/model"
    models = sorted(str(p.relative_to(out)) for p in out.glob("seed-*/model"))
    assert models == [results["best_model"]]  # --keep_models best: the other seed's model went


def test_learning_rate_auto_fine_tunes_the_first_seed_at_each_rate_and_keeps_the_best(tiny_bert, tmp_path):
    import json

    from helpers import finetune_args, separable_task, write_rows

    files = {"train": write_rows(tmp_path / "train.jsonl", separable_task(48, 0)),
             "dev": write_rows(tmp_path / "dev.jsonl", separable_task(16, 1))}  # fmt: skip
    out = tmp_path / "out"
    rates = ["--learning_rate", "auto", "--learning_rate_candidates", "1e-6,3e-3", "--seeds", "2"]
    assert main(["finetune", *finetune_args(tiny_bert, files, out, *rates, "--num_train_epochs", "2")]) == 0
    results = json.loads((out / "results.json").read_text())
    sweep = results["learning_rate_sweep"]
    assert [c["learning_rate"] for c in sweep["candidates"]] == [1e-6, 3e-3] and sweep["seed"] == 42
    best = max(sweep["candidates"], key=lambda c: c["dev"]["macro_f1"])
    assert sweep["chosen"] == results["learning_rate"] == best["learning_rate"]
    assert json.loads((out / "learning_rate_sweep.json").read_text()) == sweep
    # The first seed at the chosen rate is the sweep's run at that rate: the same draw, head and data order.
    chosen = next(c for c in sweep["candidates"] if c["learning_rate"] == sweep["chosen"])
    assert results["seeds"][0]["dev"] == chosen["dev"]
    # Another run takes the rate from the sweep file alone (no second sweep); a rate given beside it is refused.
    again, file = tmp_path / "again", str(out / "learning_rate_sweep.json")
    argv = finetune_args(tiny_bert, files, again, "--learning_rate_sweep", file)
    del argv[argv.index("--learning_rate") : argv.index("--learning_rate") + 2]  # the helpers' own rate
    assert main(["finetune", *argv]) == 0
    assert json.loads((again / "results.json").read_text())["learning_rate"] == sweep["chosen"]
    assert not (again / "learning_rate_sweep.json").exists()
    argv = finetune_args(tiny_bert, files, tmp_path / "both", "--learning_rate", "1e-4", "--learning_rate_sweep", file)
    assert main(["finetune", *argv]) == 2


def test_an_experiment_sweeps_the_rate_once_on_the_baseline_model(tiny_bert, tmp_path):
    import yaml

    from dontstop.experiment import load_experiment
    from dontstop.experiment.stages import Ref

    path = experiment_yaml_without_rate(tmp_path, tiny_bert)
    plan = load_experiment(path, str(tmp_path / "out"))
    sweeps = [s for s in plan.stages if s.kind == "lr-sweep"]
    assert len(sweeps) == 1 and sweeps[0].options["model_name_or_path"] == tiny_bert
    for arm in plan.arms:
        assert isinstance(arm.finetune.options["learning_rate_sweep"], Ref)
        assert arm.finetune.options["learning_rate_sweep"].stage is sweeps[0]
    data = yaml.safe_load(open(path))
    data["finetune"]["learning_rate"] = 1e-3
    (tmp_path / "fixed.yaml").write_text(yaml.safe_dump(data))
    assert not [s for s in load_experiment(str(tmp_path / "fixed.yaml")).stages if s.kind == "lr-sweep"]


def experiment_yaml_without_rate(tmp_path, model) -> str:
    import yaml
    from conftest import synthetic_documents, write_jsonl
    from helpers import separable_task, write_rows

    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "domain.jsonl", synthetic_documents(40, seed=1))
    write_rows(data / "train.jsonl", separable_task(24, 0))
    write_rows(data / "dev.jsonl", separable_task(8, 1))
    config = {"model": model, "corpora": {"domain": "data/domain.jsonl"}, "arms": ["baseline", "dapt"],
              "task": {"train": "data/train.jsonl", "dev": "data/dev.jsonl"}, "finetune": {"seeds": 2},
              "held_out": {"documents": 4}}  # fmt: skip
    (tmp_path / "x.yaml").write_text(yaml.safe_dump(config))
    return str(tmp_path / "x.yaml")


def test_prepare_holds_out_what_is_asked_and_its_bars_count(tmp_path, capsys):
    from conftest import synthetic_documents, write_jsonl
    from helpers import separable_task, write_rows

    general = write_jsonl(tmp_path / "general.jsonl", synthetic_documents(68, seed=1))
    domain = write_jsonl(tmp_path / "domain.jsonl", synthetic_documents(500, seed=2))
    task = write_rows(tmp_path / "task.jsonl", separable_task(999, 0))
    out = tmp_path / "out"
    argv = ["prepare", "--domain", domain, "--general", general, "--task_train", task, "--task_dev", task,
            "--held_out_documents", "40", "--output_dir", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert sum(1 for _ in open(out / "general_heldout.jsonl")) == 40  # as asked: no silent cap at a tenth
    assert sum(1 for _ in open(out / "general_train.jsonl")) == 28
    err = capsys.readouterr().err.replace("\r", "\n")
    assert "999/999" in err and "0doc" not in err
    assert main([*argv[:-1], str(tmp_path / "again"), "--held_out_documents", "68"]) == 2
    assert "68 documents, so holding out --held_out_documents 68 leaves none" in capsys.readouterr().err


def test_the_forgetting_axis_shows_a_small_change():
    from dontstop.report.figures import loss_axis

    low, high = loss_axis([6.91, 6.80, 7.06, 7.52])
    assert 6.0 < low < 6.80 and high > 7.52 and (0.11 / (high - low)) > 0.05  # 0.11 nats is > 5% of the axis


def test_a_constant_arm_is_compared_without_scipy_warnings(tmp_path):
    import warnings

    from dontstop.evidence import paired, welch

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert welch([0.5, 0.5, 0.5], [0.6, 0.7, 0.8])["p_value"] is not None
        assert paired([0.1, 0.2, 0.3], [0.2, 0.3, 0.4])["p_note"] == "the same difference at every seed"


def test_model_cards_name_the_hub_model_they_started_from(tmp_path):
    from dontstop.models import hub_base_model

    assert hub_base_model("roberta-base") == "roberta-base"
    assert hub_base_model("FacebookAI/roberta-base") == "FacebookAI/roberta-base"
    stage = tmp_path / "dapt"
    stage.mkdir()
    assert hub_base_model(str(stage)) is None  # a local checkpoint without a card: no hub id to name
    (stage / "README.md").write_text("---\nlibrary_name: transformers\nbase_model: roberta-base\n---\n# DAPT\n")
    assert hub_base_model(str(stage)) == "roberta-base"  # a chain of local stages names where it began


def test_the_screenshot_script_names_the_report_where_run_writes_it():
    from pathlib import Path

    script = (Path(__file__).parent.parent / "scripts" / "screenshot_report.sh").read_text()
    example = next(line for line in script.splitlines() if "screenshot_report.sh runs/" in line).split()[2]
    assert example == "runs/demo/report.html"  # run writes OUTPUT_DIR/report.html, OUTPUT_DIR runs/NAME
