"""`--mlm_weight`: an auxiliary masked-LM loss on the task text during fine-tuning. Off (0) is exactly off; on, the
loss holds the term, the checkpoint's MLM head trains on the classifier's own encoder; a head-less checkpoint and a
negative weight are one-line errors that write nothing."""

from __future__ import annotations

import json
import os

import pytest
import torch
from helpers import finetune_args, run_cli, separable_task, write_rows, write_task_files


@pytest.fixture
def task_files(tmp_path):
    return write_task_files(tmp_path)


def results(directory) -> dict:
    with open(os.path.join(directory, "results.json")) as f:
        return json.load(f)


def timeless(history: list[dict]) -> list[dict]:
    """A seed's log without its timings (runtime, samples per second), which no two runs share."""
    return [{k: v for k, v in entry.items() if not k.endswith(("runtime", "_per_second"))} for entry in history]


def test_mlm_weight_zero_is_bit_identical_to_without_it_and_a_weight_changes_the_loss(tiny_bert, task_files,
                                                                                      tmp_path):  # fmt: skip
    extra = ("--seeds", "1", "--num_train_epochs", "2", "--keep_models", "none", "--logging_strategy", "steps",
             "--logging_steps", "2")  # fmt: skip
    runs = {}
    for name, options in (("plain", ()), ("zero", ("--mlm_weight", "0")), ("half", ("--mlm_weight", "0.5"))):
        assert run_cli(*finetune_args(tiny_bert, task_files, tmp_path / name, *extra, *options)) == 0
        runs[name] = results(tmp_path / name)
    plain, zero, half = (runs[k]["seeds"][0] for k in ("plain", "zero", "half"))
    assert timeless(zero["history"]) == timeless(plain["history"])
    assert zero["dev"] == plain["dev"] and zero["test"] == plain["test"]
    assert runs["zero"]["methods"] is None
    losses = [[e["loss"] for e in seed["history"] if "loss" in e] for seed in (plain, half)]
    assert losses[0] != losses[1]
    assert runs["half"]["methods"] == {"mlm": {"weight": 0.5, "mlm_probability": 0.15}}


def test_the_mlm_term_is_added_and_the_head_trains_on_the_shared_encoder(tiny_bert, tmp_path):
    import datasets
    from transformers import (
        AutoModelForMaskedLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
    )

    from dontstop.finetune import FinetuningArguments
    from dontstop.finetune.methods import MethodContext
    from dontstop.finetune.methods.mlm import AuxiliaryMLM
    from dontstop.finetune.trainer import FinetuneTrainer
    from dontstop.tasks import Task, TaskSplit

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    rows = separable_task(16, 0)
    train = datasets.Dataset.from_dict(
        {**tokenizer([r["text"] for r in rows]), "labels": [int(r["label"] == "network") for r in rows]}
    )
    options = dict(max_steps=4, learning_rate=1e-2, per_device_train_batch_size=4, report_to=[], eval_strategy="no")
    args = FinetuningArguments(output_dir=str(tmp_path / "t"), mlm_weight=1.0, disable_tqdm=True, **options)
    split = TaskSplit("t", ["a"], ["x"], [1])
    task = Task("single_label", ["x", "y"], split, split)
    mlm = AuxiliaryMLM(MethodContext(model, tokenizer, args, task, 7, 32, source=tiny_bert))
    assert mlm.lm.base_model is model.base_model  # one encoder
    assert mlm.lm.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied, as in the checkpoint
    original = AutoModelForMaskedLM.from_pretrained(tiny_bert).cls.predictions.transform.dense.weight.clone()
    assert torch.equal(mlm.lm.cls.predictions.transform.dense.weight, original)  # the checkpoint's head, not a new one
    trainer = FinetuneTrainer(model=model, args=args, train_dataset=train, methods=[mlm],
                              data_collator=DataCollatorWithPadding(tokenizer))  # fmt: skip
    inputs = {k: v for k, v in DataCollatorWithPadding(tokenizer)([train[i] for i in range(4)]).items()}
    model.train()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        plain = model(**inputs).loss
        torch.manual_seed(0)
        with_term = trainer.compute_loss(model, inputs)
    torch.testing.assert_close(with_term, plain + mlm.last_term)
    assert mlm.last_term > 0
    trainer.train()
    assert not torch.equal(mlm.lm.cls.predictions.transform.dense.weight.detach().cpu(), original)


@pytest.mark.parametrize("option, message", [("-1", "--mlm_weight"), ("nan", "--mlm_weight")])
def test_a_negative_weight_is_a_one_line_error(option, message, tiny_bert, task_files, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(*finetune_args(tiny_bert, task_files, out, "--mlm_weight", option)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and not os.path.exists(out)


def test_a_checkpoint_without_an_mlm_head_is_refused_pointing_to_pretrain(tiny_bert_headless, tmp_path, capsys):
    files = {name: write_rows(tmp_path / f"{name}.jsonl", separable_task(12, i)) for i, name in enumerate(("train",
             "dev"))}  # fmt: skip
    out = tmp_path / "out"
    assert run_cli(*finetune_args(tiny_bert_headless, files, out, "--mlm_weight", "0.5")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "--mlm_weight" in err[-1] and "dontstop pretrain" in err[-1]
    assert not os.path.exists(out)


def test_mlm_weight_with_a_prompt_trains_the_one_head(tiny_bert, task_files, tmp_path):
    out = tmp_path / "out"
    extra = ("--seeds", "1", "--num_train_epochs", "1", "--prompt", "{text} the package {mask} .", "--verbalizer",
             '{"system": "driver", "network": "socket"}', "--mlm_weight", "0.5", "--keep_models", "none")  # fmt: skip
    assert run_cli(*finetune_args(tiny_bert, task_files, out, *extra)) == 0
    assert results(out)["methods"]["mlm"]["weight"] == 0.5


def test_an_experiment_arm_takes_mlm_weight_and_an_auto_verbalizer_and_refuses_multitask(tiny_bert, tmp_path):
    import yaml
    from conftest import synthetic_documents, write_jsonl

    from dontstop.errors import UsageError
    from dontstop.experiment import load_experiment

    write_jsonl(tmp_path / "domain.jsonl", synthetic_documents(60, seed=1))
    for name, n in (("train", 24), ("dev", 8)):
        write_rows(tmp_path / f"{name}.jsonl", separable_task(n, 0))
    auto = {"prompt": "{text} the package {mask} .", "verbalizer": "auto", "mlm_weight": 0.5}
    arms = [
        "baseline",
        {"name": "aux", "arm": "baseline", "finetune": {"mlm_weight": 0.5}},
        {"name": "pcp", "finetune": auto},
    ]
    config = {"model": tiny_bert, "corpora": {"domain": "domain.jsonl"}, "task": {"train": "train.jsonl",
              "dev": "dev.jsonl"}, "held_out": {"documents": 5}, "inspect": False, "arms": arms}  # fmt: skip
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(config))
    plan = load_experiment(str(tmp_path / "experiment.yaml"), str(tmp_path / "runs"))
    baseline, aux, pcp = plan.arms
    assert "mlm_weight" not in baseline.finetune.options and aux.finetune.options["mlm_weight"] == 0.5
    assert pcp.finetune.options["verbalizer"] == "auto" and pcp.finetune.options["mlm_weight"] == 0.5
    config["arms"] = [{"name": "multi", "arm": "baseline", "finetune": {"task": ["a=train.jsonl", "b=train.jsonl"]}}]
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(UsageError, match="multi-task fine-tuning"):
        load_experiment(str(tmp_path / "experiment.yaml"), str(tmp_path / "runs"))
