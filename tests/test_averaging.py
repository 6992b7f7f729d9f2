"""Weight averaging (`--ema`, `--swa_start`) in `dontstop pretrain` and `dontstop finetune`: what is averaged, when,
at which learning rate, and what is evaluated, saved and reported."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest
import torch
from conftest import pretrain_args, synthetic_documents, write_jsonl
from helpers import StopAt, finetune_args, pretrain, run_cli, separable_task, weights, write_rows
from transformers import AutoModelForMaskedLM, AutoTokenizer, TrainerCallback

from dontstop.averaging import SWACallback, parse_swa_start
from dontstop.cli import main
from dontstop.errors import UsageError


@pytest.fixture
def task(tmp_path):
    return {
        "train": write_rows(tmp_path / "train.jsonl", separable_task(64, 0)),
        "dev": write_rows(tmp_path / "dev.jsonl", separable_task(24, 1)),
    }


class Recorder(TrainerCallback):
    """The parameters after every optimizer step, and the learning rate each step used."""

    def __init__(self):
        self.parameters: dict[int, dict[str, torch.Tensor]] = {}
        self.rates: dict[int, float] = {}

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.rates[state.global_step + 1] = optimizer.param_groups[0]["lr"]

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.parameters[state.global_step] = {n: p.detach().clone() for n, p in model.named_parameters()}


def test_swa_start_is_a_step_or_a_fraction():
    assert parse_swa_start("100") == 100 and parse_swa_start(0) == 0
    assert parse_swa_start("0.75") == 0.75 and parse_swa_start(0.5) == 0.5
    for bad in ("-1", "2.0", "1.0", "0.0", "abc", "nan"):
        with pytest.raises(UsageError, match=f"--swa_start {bad}"):
            parse_swa_start(bad)


def test_swa_snapshots_count_back_from_the_last_step():
    swa = SWACallback(0.75)  # 100 steps: after step 75, every ceil(25 / 20) = 2 steps, ending on step 100
    state = SimpleNamespace(max_steps=100, global_step=0)
    swa.on_train_begin(None, state, None, model=torch.nn.Linear(2, 2))
    collected = [step for step in range(1, 101) if swa.collects(SimpleNamespace(global_step=step))]
    assert collected == list(range(76, 101, 2))
    assert (swa.start, swa.every) == (75, 2)


def test_ema_with_decay_0_is_the_raw_model(tiny_bert, corpus, tmp_path):
    out = str(tmp_path / "out")
    pretrain(
        *pretrain_args(tiny_bert, corpus, out, "--max_steps", "5", "--validation_split_percentage", "0", "--ema", "0")
    )
    raw, averaged = weights(out), weights(os.path.join(out, "ema"))
    assert not torch.equal(raw["cls.predictions.bias"], weights(tiny_bert)["cls.predictions.bias"])  # it trained
    assert raw.keys() == averaged.keys()
    for name in raw:
        assert torch.equal(raw[name], averaged[name]), name


def test_swa_is_the_mean_of_its_snapshots(tiny_bert, corpus, tmp_path):
    out = str(tmp_path / "out")
    recorder = Recorder()
    extra = ("--max_steps", "12", "--swa_start", "3", "--swa_freq", "2", "--validation_split_percentage", "0")
    metrics = pretrain(*pretrain_args(tiny_bert, corpus, out, *extra), callbacks=[recorder])
    steps = metrics["averaged"]["snapshot_steps"]
    assert steps == [4, 6, 8, 10, 12]  # after step 3, every 2 steps counted back from the last
    assert metrics["averaged"]["updates"] == 5
    swa = dict(AutoModelForMaskedLM.from_pretrained(os.path.join(out, "swa")).named_parameters())
    for name, snapshot in recorder.parameters[12].items():
        mean = torch.stack([recorder.parameters[step][name] for step in steps]).mean(0)
        torch.testing.assert_close(swa[name].detach(), mean, rtol=0, atol=1e-6, msg=name)
        if name == "cls.predictions.bias":
            assert not torch.allclose(mean, snapshot)  # the average is not just the last weights


def test_swa_lr_is_the_learning_rate_after_swa_start(tiny_bert, corpus, tmp_path):
    out = str(tmp_path / "out")
    recorder = Recorder()
    extra = ("--max_steps", "8", "--swa_start", "0.5", "--swa_lr", "5e-4", "--logging_steps", "1")
    metrics = pretrain(
        *pretrain_args(tiny_bert, corpus, out, *extra, "--validation_split_percentage", "0"), callbacks=[recorder]
    )
    logged = {entry["step"]: entry["learning_rate"] for entry in metrics["history"] if "learning_rate" in entry}
    for step in range(1, 9):  # --swa_start 0.5 of 8 steps: steps 5 to 8 run at --swa_lr
        for rates in (recorder.rates, logged):
            if step > 4:
                assert rates[step] == pytest.approx(5e-4), step
            else:
                assert rates[step] != pytest.approx(5e-4), step
    assert logged[2] > logged[4]  # before the start, the linear schedule decays as usual
    assert metrics["averaged"]["lr"] == 5e-4 and metrics["averaged"]["start_step"] == 4


def test_pretrain_ema_is_evaluated_saved_and_compared(tiny_bert, corpus, tmp_path):
    out = tmp_path / "out"
    general = write_jsonl(tmp_path / "general.jsonl", synthetic_documents(40, seed=9))
    extra = ("--max_steps", "20", "--eval_steps", "10", "--eval_file", f"general={general}", "--ema", "0.9")
    metrics = pretrain(*pretrain_args(tiny_bert, corpus, str(out), *extra, "--max_eval_samples", "20"))

    averaged = metrics["averaged"]
    assert averaged["method"] == "ema" and averaged["decay"] == 0.9 and averaged["updates"] == 20
    assert averaged["directory"] == "ema" and averaged["compared_on"] == "validation"
    raw_loss, ema_loss = metrics["after"]["eval_validation_loss"], averaged["after"]["eval_validation_loss"]
    assert raw_loss != ema_loss
    assert averaged["better"] == ("ema" if ema_loss < raw_loss else "raw")
    assert set(averaged["after"]) == set(metrics["after"]) - {"epoch"}  # the same metrics, every held-out set
    assert not any(key.startswith("ema_") for key in metrics["after"])
    assert any(e.get("step") == 10 and "ema_eval_general_loss" in e for e in metrics["history"])
    assert not any(key.startswith("ema_") for key in metrics["before"])  # nothing was averaged before training

    model = AutoModelForMaskedLM.from_pretrained(out / "ema")  # plain transformers, tokenizer beside it
    assert AutoTokenizer.from_pretrained(out / "ema").mask_token == "[MASK]"
    raw = AutoModelForMaskedLM.from_pretrained(out)
    assert not torch.allclose(model.cls.predictions.bias, raw.cls.predictions.bias)
    assert json.loads((out / "metrics.json").read_text())["averaged"]["better"] == averaged["better"]
    card = (out / "README.md").read_text()
    assert "## Weight averaging" in card and "in `ema/`" in card and "Lower loss on `validation`" in card
    own_card = (out / "ema" / "README.md").read_text()
    assert "(EMA weights)" in own_card and f"{ema_loss:.4f}" in own_card.split("## Weight averaging")[0]
    assert (out / "ema" / "dontstop_config.json").exists()


def test_resume_continues_the_average(tiny_bert, corpus, tmp_path):
    common = ["--max_steps", "8", "--save_strategy", "steps", "--save_steps", "4", "--ema", "0.8"]
    common += ["--validation_split_percentage", "0"]
    straight = str(tmp_path / "straight")
    pretrain(*pretrain_args(tiny_bert, corpus, straight, *common))
    interrupted = str(tmp_path / "interrupted")
    argv = pretrain_args(tiny_bert, corpus, interrupted, *common)
    pretrain(*argv, callbacks=[StopAt(4)])
    assert os.path.exists(os.path.join(interrupted, "checkpoint-4", "weight_average.pt"))
    metrics = pretrain(*argv, "--resume_from_checkpoint", "last")
    assert metrics["averaged"]["restored_on_resume"] and metrics["averaged"]["updates"] == 8
    a, b = weights(os.path.join(straight, "ema")), weights(os.path.join(interrupted, "ema"))
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_finetune_swa_reports_raw_and_averaged(tiny_bert_no_dropout, task, tmp_path):
    out = tmp_path / "ft"
    args = finetune_args(tiny_bert_no_dropout, task, out, "--seeds", "1", "--swa_start", "0.5")
    assert run_cli(*args) == 0
    results = json.loads((out / "results.json").read_text())
    record = results["seeds"][0]
    # 64 examples in batches of 8, 4 epochs: 32 steps; snapshots after step 16, every ceil(16 / 20) = 1 step
    averaging = record["averaging"]
    assert averaging["method"] == "swa" and (averaging["start_step"], averaging["every"]) == (16, 1)
    evaluations = [h for h in record["history"] if "eval_macro_f1" in h]
    assert [("raw_eval_macro_f1" in h) for h in evaluations] == [False, False, True, True]
    assert set(averaging["raw"]) == {"accuracy", "macro_f1", "micro_f1", "loss"}
    if averaging["averaged"] is None:  # the best epoch came before the first snapshot: the raw weights were kept
        assert record["best_epoch"] <= 2 and averaging["better"] == "raw"
    else:
        best = next(h for h in evaluations if h["epoch"] == record["best_epoch"])
        assert averaging["averaged"]["macro_f1"] == best["eval_macro_f1"]
        assert record["dev"]["macro_f1"] == pytest.approx(best["eval_macro_f1"])  # the averaged weights were kept
        assert averaging["raw"]["macro_f1"] == best["raw_eval_macro_f1"]
        gain = averaging["averaged"]["macro_f1"] - averaging["raw"]["macro_f1"]
        assert averaging["better"] == ("swa" if gain > 0 else "raw")
    assert sum(results["averaging"]["better"].values()) == 1
    assert results["averaging"]["dev_raw"]["macro_f1"]["mean"] == pytest.approx(averaging["raw"]["macro_f1"])
    assert "SWA" in (out / "README.md").read_text()


@pytest.mark.parametrize(
    "extra, error",
    [
        (("--ema", "1.5"), "--ema 1.5: the decay must be in [0, 1)"),
        (("--swa_start", "-1"), "--swa_start -1: expected a step"),
        (("--swa_start", "2.0"), "--swa_start 2.0: expected a step"),
        (("--swa_lr", "1e-4"), "--swa_lr needs --swa_start"),
        (("--swa_start", "10", "--swa_freq", "0"), "--swa_freq 0"),
        (("--ema", "--swa_start", "0.5"), "choose one average"),
    ],
)
def test_bad_averaging_options_are_one_line_errors(tiny_bert, corpus, task, tmp_path, capsys, extra, error):
    out = tmp_path / "out"
    assert main(["pretrain", *pretrain_args(tiny_bert, corpus, str(out), *extra)]) == 2
    message = capsys.readouterr().err.strip()
    assert error in message and "\n" not in message
    assert run_cli(*finetune_args(tiny_bert, task, out, *extra)) == 2
    message = capsys.readouterr().err.strip()
    assert error in message and "\n" not in message
    assert not out.exists()


def test_swa_start_after_the_last_step_is_refused(tiny_bert, corpus, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main(["pretrain", *pretrain_args(tiny_bert, corpus, out, "--max_steps", "4", "--swa_start", "4")]) == 2
    assert "leaves none of the 4 training steps" in capsys.readouterr().err
