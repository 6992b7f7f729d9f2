"""End-to-end `dontstop pretrain` runs on tiny models: what changed, what was written, what is reproducible."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from conftest import pretrain_args, synthetic_documents, write_jsonl
from helpers import StopAt, parse, weights
from helpers import pretrain_cli as run
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, pipeline

from dontstop.cli import main
from dontstop.pretrain import derived_head_warmup_steps, run_pretrain


def test_end_to_end_mlm_run_learns_and_writes_a_loadable_model(tiny_bert, corpus, tmp_path):
    out = str(tmp_path / "out")
    general = write_jsonl(tmp_path / "general.jsonl", synthetic_documents(40, seed=9))
    metrics = run(
        *pretrain_args(
            tiny_bert,
            corpus,
            out,
            "--max_steps",
            "60",
            "--eval_file",
            f"general={general}",
            "--eval_steps",
            "30",
            "--max_eval_samples",
            "20",
        )
    )

    before, after = metrics["before"], metrics["after"]
    for name in ("validation", "general"):
        assert after[f"eval_{name}_loss"] < before[f"eval_{name}_loss"] - 0.2
        assert after[f"eval_{name}_accuracy"] > before[f"eval_{name}_accuracy"]
        assert after[f"eval_{name}_perplexity"] == pytest.approx(torch.tensor(after[f"eval_{name}_loss"]).exp().item())
    assert any(e.get("step") == 30 and "eval_validation_loss" in e for e in metrics["history"]), (
        "no eval at --eval_steps"
    )

    initial, trained = weights(tiny_bert), weights(out)
    changed = [k for k in initial if not torch.equal(initial[k], trained[k])]
    assert len(changed) > 0.9 * len(initial)

    model = AutoModelForMaskedLM.from_pretrained(out)
    assert model.config.model_type == "bert"
    predictions = pipeline("fill-mask", model=out)("the kernel [MASK] loads a driver")
    assert len(predictions) == 5
    with open(os.path.join(out, "README.md")) as f:
        card = f.read()
    assert tiny_bert in card and "| validation |" in card and "| general |" in card and "300" in card
    with open(os.path.join(out, "dontstop_config.json")) as f:
        config = json.load(f)
    assert config["training"]["adam_beta2"] == 0.98 and config["training"]["warmup_steps"] == 0.06
    assert config["data"]["train_file"] == [corpus]


def test_paper_defaults_are_the_training_defaults(tiny_bert, corpus, tmp_path):
    from dontstop.pretrain import PretrainingArguments

    args = PretrainingArguments(output_dir=str(tmp_path))
    assert (args.warmup_steps, args.weight_decay, args.adam_beta1, args.adam_beta2, args.adam_epsilon) == (
        0.06,
        0.01,
        0.9,
        0.98,
        1e-6,
    )


def test_causal_lm_run(tiny_gpt2, corpus, tmp_path):
    out = str(tmp_path / "out")
    metrics = run(*pretrain_args(tiny_gpt2, corpus, out, "--max_steps", "40"))
    assert metrics["objective"] == "clm"
    assert metrics["after"]["eval_validation_loss"] < metrics["before"]["eval_validation_loss"] - 0.2
    assert AutoModelForCausalLM.from_pretrained(out).config.model_type == "gpt2"


def test_objective_can_be_forced(tiny_roberta, corpus, tmp_path):
    # A checkpoint whose config names a causal-LM architecture: without the flag its objective is inferred as clm.
    causal = tmp_path / "roberta-says-causal"
    shutil.copytree(tiny_roberta, causal)
    config = json.loads((causal / "config.json").read_text())
    (causal / "config.json").write_text(json.dumps({**config, "architectures": ["RobertaForCausalLM"]}))
    out = str(tmp_path / "out")
    metrics = run(*pretrain_args(str(causal), corpus, out, "--max_steps", "4", "--objective", "mlm"))
    assert metrics["objective"] == "mlm"


def test_fresh_model_from_config(tiny_bert, corpus, tmp_path):
    out = str(tmp_path / "out")
    args = pretrain_args(tiny_bert, corpus, out, "--max_steps", "4")
    args[args.index("--model_name_or_path")] = "--config_name"
    args += ["--tokenizer_name", tiny_bert]
    metrics = run(*args)
    assert "head_warmup" not in metrics
    assert not torch.equal(
        weights(out)["bert.embeddings.word_embeddings.weight"],
        weights(tiny_bert)["bert.embeddings.word_embeddings.weight"],
    )


def test_line_by_line_run(tiny_bert, corpus, tmp_path):
    out = str(tmp_path / "out")
    metrics = run(*pretrain_args(tiny_bert, corpus, out, "--max_steps", "10", "--line_by_line"))
    assert metrics["after"]["eval_validation_loss"] < metrics["before"]["eval_validation_loss"]


def test_streaming_run_needs_max_steps_and_trains(tiny_bert, corpus, tmp_path):
    out = str(tmp_path / "out")
    assert main(["pretrain", *pretrain_args(tiny_bert, corpus, out, "--streaming")]) == 2
    assert not os.path.exists(out)
    metrics = run(
        *pretrain_args(tiny_bert, corpus, out, "--streaming", "--max_steps", "12", "--validation_file", corpus)
    )
    assert max(e.get("step", 0) for e in metrics["history"]) == 12
    assert metrics["after"]["eval_validation_loss"] < metrics["before"]["eval_validation_loss"]


def test_resume_continues_exactly(tiny_bert, corpus, tmp_path):
    # 2 epochs of 19 steps: the interruption falls mid-epoch, and dropout and masks both depend on restored state.
    common = [
        "--num_train_epochs",
        "2",
        "--save_strategy",
        "steps",
        "--save_steps",
        "15",
        "--gradient_accumulation_steps",
        "2",
        "--validation_split_percentage",
        "0",
        "--per_device_train_batch_size",
        "4",
    ]  # later flags win over pretrain_args' defaults
    straight = str(tmp_path / "straight")
    run_pretrain(*parse(pretrain_args(tiny_bert, corpus, straight, *common)))

    interrupted = str(tmp_path / "interrupted")
    argv = pretrain_args(tiny_bert, corpus, interrupted, *common)
    run_pretrain(*parse(argv), callbacks=[StopAt(15)])
    assert os.path.isdir(os.path.join(interrupted, "checkpoint-15"))
    partial = weights(interrupted)
    assert not all(torch.equal(partial[k], weights(straight)[k]) for k in partial)

    run_pretrain(*parse(argv + ["--resume_from_checkpoint", "last"]))
    a, b = weights(straight), weights(interrupted)
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_same_seed_same_weights_whatever_the_worker_count(tiny_bert, corpus, tmp_path):
    results = []
    for workers in ("0", "2"):
        out = str(tmp_path / f"w{workers}")
        run(
            *pretrain_args(
                tiny_bert,
                corpus,
                out,
                "--max_steps",
                "12",
                "--dataloader_num_workers",
                workers,
                "--validation_split_percentage",
                "0",
            )
        )
        results.append(weights(out))
    for name in results[0]:
        assert torch.equal(results[0][name], results[1][name]), name
    other = str(tmp_path / "other-seed")
    run(
        *pretrain_args(
            tiny_bert, corpus, other, "--max_steps", "12", "--validation_split_percentage", "0", "--data_seed", "99"
        )
    )
    assert not torch.equal(results[0]["cls.predictions.bias"], weights(other)["cls.predictions.bias"])


def test_headless_checkpoint_warms_up_the_new_head_alone(tiny_bert_headless, corpus, tmp_path):
    only_warmup = str(tmp_path / "warmup")
    metrics = run(
        *pretrain_args(tiny_bert_headless, corpus, only_warmup, "--max_steps", "6", "--head_warmup_steps", "6")
    )
    warm = metrics["head_warmup"]
    assert warm["steps"] == 6
    assert set(warm["new_parameters"]) >= {"cls.predictions.transform.dense.weight", "cls.predictions.bias"}
    assert warm["eval_after_warmup"]["eval_validation_loss"] < metrics["before"]["eval_validation_loss"]
    original, trained = weights(tiny_bert_headless), weights(only_warmup)
    for name, tensor in original.items():
        if name.startswith("pooler"):
            continue
        assert torch.equal(tensor, trained[f"bert.{name}"]), f"{name} moved during head warm-up"
    assert not torch.equal(
        trained["cls.predictions.transform.dense.weight"],
        AutoModelForMaskedLM.from_pretrained(tiny_bert_headless).cls.predictions.transform.dense.weight,
    )

    full = str(tmp_path / "full")
    run(*pretrain_args(tiny_bert_headless, corpus, full, "--max_steps", "8", "--head_warmup_steps", "4"))
    assert not torch.equal(
        original["encoder.layer.0.attention.self.query.weight"],
        weights(full)["bert.encoder.layer.0.attention.self.query.weight"],
    )


def test_a_short_head_warmup_trains_at_its_own_rate_then_the_run_schedule_starts(tiny_bert_headless, corpus, tmp_path):
    out = str(tmp_path / "out")
    schedule = ["--learning_rate", "1e-4", "--head_warmup_learning_rate", "1e-3", "--warmup_steps", "0"]
    metrics = run(*pretrain_args(tiny_bert_headless, corpus, out, "--max_steps", "20", "--logging_steps", "1",
                                 *schedule))  # fmt: skip
    assert metrics["head_warmup"]["steps"] == 10  # derived 2 (10% of 20), raised to the minimum
    rates = [e["learning_rate"] for e in metrics["history"] if "learning_rate" in e]
    # The rate each logged step trained at: the warm-up ramps 1e-3 up from above 0 over its first step, holds it,
    # then the run's own linear decay starts at 1e-4 over the 10 steps left.
    assert rates[0] == pytest.approx(5e-4) and rates[1:10] == pytest.approx([1e-3] * 9)
    assert rates[10:] == pytest.approx([1e-4 * (10 - k) / 10 for k in range(10)])
    warm = metrics["head_warmup"]["eval_after_warmup"]["eval_validation_loss"]
    assert warm < metrics["before"]["eval_validation_loss"] - 0.01  # the warm-up moved the head


def test_streaming_blocks_are_the_same_whatever_the_worker_count(tiny_bert, corpus):
    from transformers import AutoTokenizer

    from dontstop.tokenization import Framing, StreamingBlocks

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    seen = []
    for workers in (0, 2):
        blocks = StreamingBlocks([corpus], tokenizer, Framing.from_tokenizer(tokenizer), 32, batch_size=4)
        loader = torch.utils.data.DataLoader(
            blocks,
            batch_size=4,
            num_workers=workers,
            collate_fn=lambda f: [(x["idx"], x["input_ids"].tolist()) for x in f],
        )
        seen.append([item for batch in loader for item in batch])
    assert seen[0] == seen[1]
    assert [idx for idx, _ in seen[0]] == list(range(len(seen[0])))
    assert all(len(ids) == 32 for _, ids in seen[0][:-1])


def test_head_warmup_without_held_out_sets(tiny_bert_headless, corpus, tmp_path):
    out = str(tmp_path / "out")
    metrics = run(
        *pretrain_args(
            tiny_bert_headless,
            corpus,
            out,
            "--max_steps",
            "3",
            "--head_warmup_steps",
            "1",
            "--validation_split_percentage",
            "0",
        )
    )
    assert metrics["head_warmup"]["eval_after_warmup"] is None and "after" not in metrics


def test_seed_fixes_the_new_head_initialisation(tiny_bert_headless, corpus, tmp_path):
    heads = []
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        out = str(tmp_path / name)
        run(
            *pretrain_args(
                tiny_bert_headless,
                corpus,
                out,
                "--max_steps",
                "1",
                "--head_warmup_steps",
                "1",
                "--learning_rate",
                "1e-30",
                "--seed",
                seed,
                "--validation_split_percentage",
                "0",
            )
        )
        heads.append(weights(out)["cls.predictions.transform.dense.weight"])
    assert torch.equal(heads[0], heads[1])
    assert not torch.equal(heads[0], heads[2])


def test_head_warmup_default_is_derived():
    assert derived_head_warmup_steps(None, 1000) == 100
    assert derived_head_warmup_steps(None, 100_000) == 500
    assert derived_head_warmup_steps(None, 3) == 1
    assert derived_head_warmup_steps(None, 40) == 10  # 4, raised to the minimum
    assert derived_head_warmup_steps(3, 12) == 6  # raised, but never past half the run
    assert derived_head_warmup_steps(0, 1000) == 0


def test_non_empty_output_dir_is_never_overwritten_without_asking(tiny_bert, corpus, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert main(["pretrain", *pretrain_args(tiny_bert, corpus, str(out), "--max_steps", "2")]) == 2
    assert "--overwrite_output_dir" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == ["precious.txt"]
    run(*pretrain_args(tiny_bert, corpus, str(out), "--max_steps", "2", "--overwrite_output_dir"))
    assert (out / "precious.txt").read_text() == "keep me"
    assert (out / "model.safetensors").exists()


def torchrun(*args: str, port: int) -> None:
    """`dontstop pretrain` in 2 processes on CPU (gloo); CPU-only multi-process runs need --use_cpu."""
    import subprocess
    import sys

    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(port),
        "-m",
        "dontstop",
        "pretrain",
        *args,
        "--use_cpu",
        "true",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-8000:]


@pytest.mark.slow
def test_two_process_ddp_equals_one_process_with_the_global_batch(tiny_bert_no_dropout, corpus, tmp_path):
    """2 ranks x 8 examples see exactly the examples and masks of one process's batch of 16, so without dropout the
    weights must agree: gradients are synchronised and the loss is normalised by the global token count."""
    common = ["--max_steps", "5", "--validation_split_percentage", "0"]
    ddp = str(tmp_path / "ddp")
    torchrun(*pretrain_args(tiny_bert_no_dropout, corpus, ddp, *common), port=29533)
    single = str(tmp_path / "single")
    run(*pretrain_args(tiny_bert_no_dropout, corpus, single, *common, "--per_device_train_batch_size", "16"))
    a, b = weights(ddp), weights(single)
    assert not torch.equal(a["cls.predictions.bias"], weights(tiny_bert_no_dropout)["cls.predictions.bias"])
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.slow
def test_two_process_head_warmup_freezes_the_encoder_on_every_rank(tiny_bert_headless, corpus, tmp_path):
    warmup_only = str(tmp_path / "warmup")
    torchrun(
        *pretrain_args(tiny_bert_headless, corpus, warmup_only, "--max_steps", "4", "--head_warmup_steps", "4"),
        port=29534,
    )
    original, trained = weights(tiny_bert_headless), weights(warmup_only)
    for name, tensor in original.items():
        if not name.startswith("pooler"):
            assert torch.equal(tensor, trained[f"bert.{name}"]), f"{name} moved during head warm-up"
    full = str(tmp_path / "full")
    torchrun(
        *pretrain_args(tiny_bert_headless, corpus, full, "--max_steps", "6", "--head_warmup_steps", "2"), port=29535
    )
    assert not torch.equal(
        original["encoder.layer.0.attention.self.query.weight"],
        weights(full)["bert.encoder.layer.0.attention.self.query.weight"],
    )
