"""The stages' records, the stages of their own that `dontstop run` used to hide (prepare, lm-eval), and the Python
API that calls every stage as the command line does."""

from __future__ import annotations

import json
import os

import pytest
from conftest import synthetic_documents, write_jsonl
from helpers import separable_task, write_rows

import dontstop
from dontstop.cli import main
from dontstop.errors import UsageError
from dontstop.records import ExperimentSummary, FinetuneResults, LMEvaluation, PretrainMetrics, eval_key, eval_values


def test_eval_keys_are_taken_apart_in_one_place():
    assert eval_key("eval_validation_loss") == ("validation", "loss")
    assert eval_key("eval_my_set_perplexity") == ("my_set", "perplexity")
    assert eval_key("eval_loss") == ("eval", "loss")
    assert eval_key("ema_eval_general_loss") is None and eval_key("ema_eval_general_loss", "ema_eval") == (
        "general",
        "loss",
    )
    assert eval_values({"eval_a_loss": 1.0, "eval_a_accuracy": 0.5, "epoch": 1}) == {"a": 1.0}


def test_a_record_round_trips_and_reads_like_its_json(tmp_path):
    metrics = PretrainMetrics(objective="mlm", after={"eval_domain_loss": 2.5}, history=[{"step": 4, "loss": 3.0}])
    metrics.save(str(tmp_path))
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert "before" not in on_disk and on_disk["after"] == {"eval_domain_loss": 2.5}  # what was not recorded is absent
    loaded = PretrainMetrics.load(str(tmp_path))
    assert loaded == metrics and loaded["after"] is loaded.after and loaded.steps == 4
    assert loaded.losses("after") == {"domain": 2.5} and loaded.losses("start") == {}


def test_a_file_that_is_not_its_record_is_one_line_naming_file_and_key(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(
        json.dumps({"task_type": "single_label", "labels": ["a"], "metrics": [], "seeds": [], "colour": 1})
    )
    with pytest.raises(UsageError, match=r"results\.json: unknown key\(s\) colour in a FinetuneResults"):
        FinetuneResults.load(str(path))
    path.write_text(json.dumps({"task_type": "single_label", "labels": ["a"], "seeds": []}))
    with pytest.raises(UsageError, match=r"results\.json: missing key\(s\) metrics"):
        FinetuneResults.load(str(path))
    path.write_text('{"task_type": ')
    with pytest.raises(UsageError, match=r"results\.json:1: invalid JSON"):
        FinetuneResults.load(str(path))


def test_a_summary_with_a_misnamed_key_is_refused():
    good = {"name": "x", "arms": [{"name": "baseline", "finetune_dir": "d", "lm_eval": {"domain": {"before": 1.0}}}]}
    assert ExperimentSummary.from_dict(good).arms[0].lm_eval["domain"].before == 1.0
    bad = {"name": "x", "arms": [{"name": "baseline", "finetune_dir": "d", "lm_eval": {"domain": {"befor": 1.0}}}]}
    with pytest.raises(UsageError, match=r"arms\[0\]\.lm_eval\.domain: unknown key\(s\) befor"):
        ExperimentSummary.from_dict(bad)


@pytest.fixture
def prepared(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    domain = write_jsonl(data / "domain.jsonl", synthetic_documents(50, seed=1))
    general = write_jsonl(data / "general.jsonl", synthetic_documents(30, seed=2))
    train = write_rows(data / "train.jsonl", separable_task(20, 0))
    dev = write_rows(data / "dev.jsonl", separable_task(8, 1))
    out = tmp_path / "prepared"
    argv = ["prepare", "--domain", domain, "--general", general, "--task_train", train, "--task_dev", dev]
    assert main([*argv, "--held_out_documents", "4", "--output_dir", str(out)]) == 0
    return out


def test_prepare_holds_documents_out_by_a_seeded_draw(prepared):
    counts = json.loads((prepared / "counts.json").read_text())
    assert counts == {
        "task_train": 20,
        "task_dev": 8,
        "domain_train": 46,
        "domain_heldout": 4,
        "general_train": 26,
        "general_heldout": 4,  # exactly the number asked for, from every corpus
    }
    train = {json.loads(line)["text"] for line in open(prepared / "domain_train.jsonl")}
    held = {json.loads(line)["text"] for line in open(prepared / "domain_heldout.jsonl")}
    assert not train & held and len(train | held) == len(set(synthetic_documents(50, seed=1)))


def test_lm_eval_warms_up_a_missing_head_and_measures(prepared, tiny_bert, tiny_bert_headless, tmp_path):
    def evaluate(model, name, *extra):
        argv = [
            "lm-eval",
            "--model_name_or_path",
            model,
            "--output_dir",
            str(tmp_path / name),
            "--max_seq_length",
            "32",
        ]
        argv += ["--eval_file", f"domain={prepared / 'domain_heldout.jsonl'}", "--eval_blocks", "4", *extra]
        assert main(argv) == 0
        return LMEvaluation.load(str(tmp_path / name))

    with_head = evaluate(tiny_bert, "with-head")
    assert with_head.losses["domain"].lm_head == "checkpoint" and with_head.losses["domain"].lm_loss > 0
    warm = ["--warmup_file", f"domain={prepared / 'domain_train.jsonl'}", "--head_warmup_steps", "3"]
    headless = evaluate(tiny_bert_headless, "headless", *warm)
    assert headless.losses["domain"].lm_head == "warmed up" and headless.loss("domain") > 0
    assert evaluate(tiny_bert_headless, "no-warm-up").losses["domain"].lm_loss is None  # a random head: no loss
    again = evaluate(tiny_bert, "again")
    assert again.losses["domain"] == with_head.losses["domain"]  # the same blocks and masks


def test_lm_eval_can_warm_up_every_head_alike_and_leaves_the_encoder_alone(prepared, tiny_bert, tmp_path):
    """--warm_up_head always (dontstop run's choice): a checkpoint with a head gets the same head-only steps as one
    without, its encoder bit-identical, and nothing but the head's own weights moves."""
    import torch

    from dontstop.lm_eval import LMEvalArguments, Meter, read_texts

    args = LMEvalArguments(max_seq_length=32, batch_size=4, head_warmup_steps=3, warm_up_head="always")
    meter = Meter(tiny_bert, args)
    before = {k: v.clone() for k, v in meter.lm.model.state_dict().items()}
    meter.warm_up({"domain": read_texts(str(prepared / "domain_train.jsonl"), "text", 20_000)})
    after = meter.lm.model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert meter.head == "warmed up" and {"cls.predictions.transform.dense.weight", "cls.predictions.bias"} <= moved
    assert all(k.startswith("cls.") for k in moved)  # the encoder (and the decoder tied to its embeddings) unchanged


def test_the_python_api_runs_a_stage_from_keywords_and_returns_its_record(tiny_bert, corpus, tmp_path):
    out = str(tmp_path / "dapt")
    metrics = dontstop.run_pretrain(
        model_name_or_path=tiny_bert, train_file=[corpus], output_dir=out, max_steps=3, max_seq_length=32,
        per_device_train_batch_size=8, save_strategy="no", disable_tqdm=True,
    )  # fmt: skip
    assert isinstance(metrics, PretrainMetrics) and metrics.steps == 3
    assert PretrainMetrics.load(out) == metrics
    with pytest.raises(UsageError, match=r"dontstop\.run_pretrain: max_steps: expected int, got 'many'"):
        dontstop.run_pretrain(model_name_or_path=tiny_bert, train_file=[corpus], output_dir=out, max_steps="many")
    with pytest.raises(UsageError, match="unknown option"):
        dontstop.run_pretrain(model_name_or_path=tiny_bert, learning_rat=1.0)
    assert callable(dontstop.run_experiment) and callable(dontstop.run_finetune) and os.path.isdir(out)
