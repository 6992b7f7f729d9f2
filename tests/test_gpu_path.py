"""The options of the GPU path, run on CPU: padding-free batches, documents that do not attend to each other, bf16
autocast with the masked-only head (and the head warm-up, weight averaging, LoRA), compile, and the options that need
CUDA refused in one line."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from conftest import pretrain_args
from helpers import pretrain, weights
from helpers import pretrain_cli as run
from transformers import TrainerCallback

from dontstop.cli import main


class Watch(TrainerCallback):
    """Records the dtype the encoder computes in (training and evaluation) and the optimizer the Trainer built."""

    def __init__(self):
        self.dtypes: set[tuple[bool, torch.dtype]] = set()
        self.optimizer = None

    def on_init_end(self, args, state, control, model=None, **kwargs):
        from dontstop.adapters import underlying_model

        layer = underlying_model(model).base_model.encoder.layer[0].intermediate.dense
        layer.register_forward_hook(lambda module, inputs, output: self.dtypes.add((module.training, output.dtype)))

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        self.optimizer = optimizer


@pytest.mark.parametrize("mode", [("--line_by_line", "--padding_free"), ("--packing", "documents")])
def test_segmented_runs_learn_and_do_not_depend_on_the_worker_count(mode, tiny_bert, corpus, tmp_path):
    results = []
    for workers in ("0", "2"):
        out = str(tmp_path / f"w{workers}")
        metrics = run(*pretrain_args(tiny_bert, corpus, out, "--max_steps", "12", "--dataloader_num_workers", workers,
                                     *mode))  # fmt: skip
        assert metrics["after"]["eval_validation_loss"] < metrics["before"]["eval_validation_loss"] - 0.05
        results.append(weights(out))
    for name in results[0]:
        assert torch.equal(results[0][name], results[1][name]), name
    with open(tmp_path / "w0" / "dontstop_config.json") as f:
        data = json.load(f)["data"]
    assert data["padding_free"] if mode[-1] == "--padding_free" else data["packing"] == "documents"
    with open(tmp_path / "w0" / "README.md") as f:
        assert "each document attending only to itself" in f.read()


@pytest.mark.parametrize("average", [("--ema", "0.9"), ("--swa_start", "0.5")])
def test_bf16_on_cpu_with_the_masked_only_head_warmup_and_averaging(average, tiny_bert_headless, corpus, tmp_path):
    out = str(tmp_path / "out")
    watch = Watch()
    metrics = pretrain(
        *pretrain_args(tiny_bert_headless, corpus, out, "--max_steps", "12", "--head_warmup_steps", "3", "--bf16",
                       "--use_cpu", "true", *average),
        callbacks=[watch],
    )  # fmt: skip
    assert watch.dtypes == {(True, torch.bfloat16), (False, torch.bfloat16)}  # trained and evaluated in bf16
    assert metrics["head_warmup"]["steps"] == 6  # the 3 asked for, raised to the floor (half of 12 steps)
    assert metrics["after"]["eval_validation_loss"] < metrics["before"]["eval_validation_loss"]
    name = average[0].strip("-")[:3]
    saved = weights(f"{out}/{name}")
    assert all(t.dtype == torch.float32 for t in saved.values())
    assert any(not torch.equal(saved[k], weights(out)[k]) for k in saved)  # the average, not the raw weights


def test_the_average_of_a_bf16_model_is_kept_in_fp32():
    """A bf16 checkpoint trains in bf16; its EMA must not: 0.001 x a change is below bf16's resolution."""
    from dontstop.averaging import EMACallback

    model = torch.nn.Linear(4, 4).to(torch.bfloat16)
    ema = EMACallback(0.999)
    ema.on_train_begin(None, None, None, model=model)
    ema.on_step_end(None, None, None, model=model)
    ema.updates = 10_000  # past the decay's warm-up: each update moves the average by 0.001 x the difference
    start = ema.averaged.module.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(0.5)
    for _ in range(20):
        ema.on_step_end(None, None, None, model=model)
    averaged = ema.averaged.module.weight
    assert averaged.dtype == torch.float32
    assert (averaged - start).abs().min() > 0  # moved every entry; in bf16, most would not have moved


def test_bf16_on_cpu_with_lora(tiny_bert, corpus, tmp_path):
    out = str(tmp_path / "lora")
    watch = Watch()
    metrics = pretrain(
        *pretrain_args(tiny_bert, corpus, out, "--max_steps", "8", "--bf16", "--use_cpu", "true", "--adapter", "lora"),
        callbacks=[watch],
    )
    assert (True, torch.bfloat16) in watch.dtypes
    assert metrics["adapter"]["method"] == "lora"
    assert metrics["after"]["eval_validation_loss"] < metrics["before"]["eval_validation_loss"]


def test_fused_adamw_is_the_default_and_runs_on_cpu(tiny_bert, corpus, tmp_path):
    watch = Watch()
    pretrain(*pretrain_args(tiny_bert, corpus, str(tmp_path / "o"), "--max_steps", "2"), callbacks=[watch])
    optimizer = getattr(watch.optimizer, "optimizer", watch.optimizer)  # accelerate wraps it
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["fused"]


@pytest.mark.parametrize(
    "extra, error",
    [
        (("--attn_implementation", "flash_attention_2"), "--attn_implementation flash_attention_2 needs a CUDA GPU"),
        (("--tf32", "true"), "--tf32 requires"),
        (("--padding_free",), "--padding_free packs --line_by_line examples"),
        (("--line_by_line", "--packing", "documents"), "--packing documents: --line_by_line examples"),
    ],
)
def test_options_that_cannot_run_here_are_one_line_errors(extra, error, tiny_bert, corpus, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["pretrain", *pretrain_args(tiny_bert, corpus, str(out), "--max_steps", "2", *extra)]) == 2
    message = capsys.readouterr().err.strip()
    assert error in message and len(message.splitlines()) == 1, message
    assert not out.exists()


def test_segments_need_a_masked_lm(tiny_gpt2, corpus, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["pretrain", *pretrain_args(tiny_gpt2, corpus, str(out), "--packing", "documents")]) == 2
    assert "--packing documents is for masked LMs" in capsys.readouterr().err
    assert not out.exists()


def test_unsupported_architectures_are_named():
    from transformers import AutoModelForMaskedLM, DebertaV2Config

    from dontstop.attention import check_segment_support
    from dontstop.errors import UsageError

    config = DebertaV2Config(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=32)  # fmt: skip
    with pytest.raises(UsageError, match="--padding_free: not for model type 'deberta-v2'.*supported: albert, bert"):
        check_segment_support(AutoModelForMaskedLM.from_config(config), "--padding_free")


def test_torch_compile_with_the_masked_only_head_is_one_graph(tiny_bert, corpus, tmp_path):
    """Dynamo traces the masked-only forward whole (aot_eager: the tracing of inductor, without its code generation),
    one graph reused whatever the number of masked tokens, and the losses are the uncompiled run's."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    args = ("--max_steps", "6", "--logging_steps", "1", "--validation_split_percentage", "0")
    plain = pretrain(*pretrain_args(tiny_bert, corpus, str(tmp_path / "plain"), *args))
    compiled = pretrain(*pretrain_args(tiny_bert, corpus, str(tmp_path / "compiled"), *args,
                                       "--torch_compile_backend", "aot_eager"))  # fmt: skip
    assert counters["stats"]["unique_graphs"] >= 1 and not counters["graph_break"]
    assert counters["stats"]["unique_graphs"] <= 2  # at most one recompilation, for dynamic sizes
    losses = [[h["loss"] for h in m["history"] if "loss" in h] for m in (plain, compiled)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    torch._dynamo.reset()


@pytest.mark.slow
def test_torch_compile_with_inductor(tiny_bert_no_dropout, corpus, tmp_path):
    """The real compiler (C++ code generation on CPU: 40 s to 2 minutes here): the same losses within float tolerance
    (without dropout: inductor draws its dropout masks from its own generator)."""
    args = ("--max_steps", "4", "--logging_steps", "1", "--validation_split_percentage", "0")
    model = tiny_bert_no_dropout
    plain = pretrain(*pretrain_args(model, corpus, str(tmp_path / "plain"), *args))
    compiled = pretrain(*pretrain_args(model, corpus, str(tmp_path / "compiled"), *args, "--torch_compile"))
    losses = [[h["loss"] for h in m["history"] if "loss" in h] for m in (plain, compiled)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_no_pin_memory_warning_without_a_gpu(tiny_bert, corpus, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pretrain(*pretrain_args(tiny_bert, corpus, str(tmp_path / "o"), "--max_steps", "2"))
    assert not [w for w in caught if "pin_memory" in str(w.message)]
