"""LoRA adapters (`--adapter lora`) in `dontstop pretrain` and `dontstop finetune`: what trains and what stays
bit-identical, what is saved and how it loads, that the merged model is the adapter model, and stacking a task
adapter on a domain adapter."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import torch
from conftest import WORDS, pretrain_args, synthetic_documents, write_jsonl
from helpers import domain_corpus, extend, finetune_args, pretrain, separable_task, with_random_head, write_rows
from peft import AutoPeftModel, PeftModel
from safetensors.torch import load_file
from transformers import (
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    TrainerCallback,
)

from dontstop.adapters import (
    AdapterArguments,
    add_pretraining_adapter,
    default_target_modules,
    merged_copy,
    underlying_model,
)
from dontstop.cli import main
from dontstop.models import DomainAdapter, merge_domain_adapter


def file_hashes(directory) -> dict[str, str]:
    return {
        name: hashlib.sha256(open(os.path.join(directory, name), "rb").read()).hexdigest()
        for name in sorted(os.listdir(directory))
        if os.path.isfile(os.path.join(directory, name))
    }


def texts(n=6, seed=5) -> list[str]:
    return synthetic_documents(n, seed=seed)


def logits(model, tokenizer, batch: list[str]) -> torch.Tensor:
    inputs = tokenizer(batch, return_tensors="pt", padding=True, truncation=True, max_length=32)
    with torch.no_grad():
        return model.eval()(**inputs).logits


class Snapshot(TrainerCallback):
    """The model's parameters (and whether each trains) at the end of the given step and at the end of training."""

    def __init__(self, step: int | None = None):
        self.step = step
        self.at_step: dict[str, torch.Tensor] | None = None
        self.at_end: dict[str, tuple[torch.Tensor, bool]] | None = None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            self.at_step = {name: p.detach().clone() for name, p in model.named_parameters()}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.at_end = {name: (p.detach().clone(), p.requires_grad) for name, p in model.named_parameters()}


@pytest.fixture(scope="module")
def domain_run(tmp_path_factory, tiny_bert):
    """A BERT adapter pretrained with --merge_adapter: (output dir, metrics, base file hashes before, snapshot)."""
    root = tmp_path_factory.mktemp("adapter-bert")
    corpus = write_jsonl(root / "corpus.jsonl", synthetic_documents(120))
    before = file_hashes(tiny_bert)
    snapshot = Snapshot()
    out = str(root / "out")
    argv = pretrain_args(tiny_bert, corpus, out, "--max_steps", "3", "--adapter", "lora", "--merge_adapter")
    metrics = pretrain(*argv, "--lora_r", "4", "--validation_split_percentage", "0", callbacks=[snapshot])
    return out, metrics, before, snapshot


def test_adapter_training_leaves_the_base_untouched_and_trains_the_head(domain_run, tiny_bert):
    out, metrics, before, snapshot = domain_run
    assert file_hashes(tiny_bert) == before  # the base model's files, byte for byte
    base = dict(AutoModelForMaskedLM.from_pretrained(tiny_bert).named_parameters())
    frozen = {name: value for name, (value, trains) in snapshot.at_end.items() if not trains}
    assert len(frozen) >= len(base) - 1  # every base tensor but the output bias
    for name, value in frozen.items():
        key = name.removeprefix("base_model.model.").replace(".base_layer", "").replace(".original_module", "")
        assert torch.equal(value, base[key].detach()), f"frozen {key} moved"
    trained = {name: value for name, (value, trains) in snapshot.at_end.items() if trains}
    head = "base_model.model.cls.predictions.transform.modules_to_save.default.dense.weight"
    assert not torch.equal(trained[head], base["cls.predictions.transform.dense.weight"].detach())
    assert not torch.equal(trained["base_model.model.cls.predictions.bias"], base["cls.predictions.bias"].detach())
    assert all(trained[n].any() for n in trained if "lora_B" in n)  # LoRA's B starts at zero: it moved
    report = metrics["adapter"]
    assert report["target_modules"] == ["query", "value"] and report["r"] == 4 and report["merged"] == "merged"
    assert report["modules_to_save"] == ["cls.predictions.transform"]
    assert report["output_bias"] == ["cls.predictions.bias"]
    assert report["trainable_parameters"] == sum(v.numel() for v in trained.values())
    assert report["base_parameters"] == sum(p.numel() for p in base.values()) and report["trainable_share"] < 0.2


def test_merged_model_reproduces_the_adapter_model(domain_run, tiny_bert):
    out, *_ = domain_run
    tokenizer = AutoTokenizer.from_pretrained(out)
    adapter = PeftModel.from_pretrained(AutoModelForMaskedLM.from_pretrained(tiny_bert), out)
    merged = AutoModelForMaskedLM.from_pretrained(os.path.join(out, "merged"))
    expected = logits(adapter, tokenizer, texts())
    assert torch.allclose(logits(merged, tokenizer, texts()), expected, atol=1e-5)
    base = AutoModelForMaskedLM.from_pretrained(tiny_bert)
    assert not torch.allclose(logits(base, tokenizer, texts()), expected, atol=1e-3)  # the adapter did something
    # the merged model keeps the tie: its output layer is still the (unchanged) input embedding matrix
    assert merged.cls.predictions.decoder.weight is merged.get_input_embeddings().weight
    assert torch.equal(merged.get_input_embeddings().weight, base.get_input_embeddings().weight)


def test_adapter_directory_loads_with_plain_peft(domain_run, tiny_bert):
    out, metrics, *_ = domain_run
    names = set(os.listdir(out))
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md"} <= names
    assert {"dontstop_config.json", "metrics.json", "merged"} <= names and "model.safetensors" not in names
    config = json.load(open(os.path.join(out, "adapter_config.json")))
    assert config["base_model_name_or_path"] == os.path.abspath(tiny_bert)
    assert config["peft_type"] == "LORA" and config["r"] == 4
    # small: the tied vocabulary matrix is not in it
    stored = load_file(os.path.join(out, "adapter_model.safetensors"))
    assert not [key for key in stored if "word_embeddings" in key or "decoder.weight" in key]
    tokenizer = AutoTokenizer.from_pretrained(out)
    by_auto = AutoPeftModel.from_pretrained(out)  # the base found from adapter_config.json alone
    by_hand = PeftModel.from_pretrained(AutoModelForMaskedLM.from_pretrained(tiny_bert), out)
    assert torch.equal(logits(by_auto, tokenizer, texts()), logits(by_hand, tokenizer, texts()))
    with open(os.path.join(out, "README.md"), encoding="utf-8") as f:
        card = f.read()
    assert "library_name: peft" in card and "PeftModel.from_pretrained(base" in card and "LoRA adapter" in card
    with open(os.path.join(out, "merged", "README.md"), encoding="utf-8") as f:
        assert "AutoModelForMaskedLM.from_pretrained" in f.read()
    with open(os.path.join(out, "dontstop_config.json")) as f:
        training = json.load(f)["training"]
    assert training["adapter"] == "lora" and training["lora_r"] == 4 and training["merge_adapter"] is True


def test_masked_only_head_gives_the_adapter_model_the_same_loss_and_gradients(tiny_bert):
    from dontstop.heads import masked_lm_loss_sum, masked_only_head, use_masked_only_head
    from dontstop.masking import MaskedLMCollator
    from dontstop.pretrain import MaskingArguments

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    model = add_pretraining_adapter(
        AutoModelForMaskedLM.from_pretrained(tiny_bert), AdapterArguments(adapter="lora"), "mlm", set(), []
    ).model
    with torch.no_grad():  # B = 0 would leave LoRA out of the comparison
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_()
    model.eval()
    collator = MaskedLMCollator.from_tokenizer(tokenizer, model.config.vocab_size, masking=MaskingArguments().spec())
    examples = [
        {"input_ids": tokenizer(t, truncation=True, max_length=32)["input_ids"], "idx": i, "epoch": 0}
        for i, t in enumerate(texts(8))
    ]
    batch = {k: v for k, v in collator(examples).items() if k in ("input_ids", "attention_mask", "labels")}

    def loss_and_grads(masked_only: bool):
        model.zero_grad()
        loss, count, _ = masked_lm_loss_sum(model, batch, masked_only)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    full, full_grads = loss_and_grads(False)
    inner = underlying_model(model)
    restore = use_masked_only_head(inner, masked_only_head(inner))
    fast, fast_grads = loss_and_grads(True)
    restore()
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-6)
    for name, grad in full_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_the_seed_alone_fixes_the_adapter_initialisation(tiny_bert, monkeypatch):
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer
    from transformers import set_seed

    monkeypatch.delattr(TrainableTokensLayer, "_dontstop_keeps_bias", raising=False)  # the probe runs again

    def lora_a():
        set_seed(3)
        model = AutoModelForMaskedLM.from_pretrained(tiny_bert)
        wrapped = add_pretraining_adapter(model, AdapterArguments(adapter="lora"), "mlm", set(), [5]).model
        return [p.detach().clone() for n, p in wrapped.named_parameters() if "lora_A" in n]

    first = lora_a()  # probing peft for huggingface/peft#3649 first: it must not draw from the run's generator
    assert all(torch.equal(a, b) for a, b in zip(first, lora_a(), strict=True))


@pytest.mark.parametrize(
    "kind, targets, head, bias",
    [
        ("bert", ["query", "value"], ["cls.predictions.transform"], ["cls.predictions.bias"]),
        # untied, transformers 5 also unties the decoder's bias from the head's (and reloads it fresh): both train
        (
            "untied bert",
            ["query", "value"],
            ["cls.predictions.transform"],
            ["cls.predictions.bias", "cls.predictions.decoder.bias"],
        ),
        ("roberta", ["query", "value"], ["lm_head.dense", "lm_head.layer_norm"], ["lm_head.bias"]),
        ("distilbert", ["q_lin", "v_lin"], ["vocab_layer_norm", "vocab_transform"], ["vocab_projector.bias"]),
        ("gpt2", ["c_attn"], [], []),
    ],
)
def test_defaults_per_architecture_and_merging_with_new_token_rows(kind, targets, head, bias, request, tmp_path):
    """Each architecture's default targets and trained head; its merged copy reproduces the adapter model, new token
    rows (in the input embeddings and the output layer, tied or not, beside its bias) included."""
    if kind == "untied bert":  # the output layer has its own matrix, which gets its own new-row tensor
        directory = with_random_head(request.getfixturevalue("tiny_bert"), tmp_path / "untied", untie=True)
    else:
        directory = request.getfixturevalue(f"tiny_{kind}")
    auto = AutoModelForCausalLM if kind == "gpt2" else AutoModelForMaskedLM
    assert default_target_modules(kind.removeprefix("untied ")) == targets
    base = auto.from_pretrained(directory)
    new_ids = [5, 9]
    adapter = add_pretraining_adapter(
        base, AdapterArguments(adapter="lora"), "clm" if kind == "gpt2" else "mlm", set(), new_ids
    )
    report = adapter.report
    assert (report["target_modules"], report["modules_to_save"], report["output_bias"]) == (targets, head, bias)
    assert report["new_token_rows"] == 2
    torch.manual_seed(0)
    with torch.no_grad():  # stands in for training: every trainable tensor moves
        for param in adapter.model.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * 0.05)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    batch = [" ".join(WORDS[:12]), " ".join(WORDS[5:20])]
    expected = logits(adapter.model, tokenizer, batch)
    merged = merged_copy(adapter.model)
    assert type(merged) is type(base)
    torch.testing.assert_close(logits(merged, tokenizer, batch), expected, rtol=0, atol=1e-5)
    tied = merged.get_output_embeddings().weight is merged.get_input_embeddings().weight
    assert tied == (kind != "untied bert")  # a tie is kept, and none is made
    if kind == "untied bert":
        deltas = [n for n, _ in adapter.model.named_parameters() if "trainable_tokens_delta" in n]
        assert [n.split(".token_adapter")[0].removeprefix("base_model.model.") for n in deltas] == [
            "bert.embeddings.word_embeddings",
            "cls.predictions.decoder",
        ]


@pytest.fixture(scope="module")
def extended(tmp_path_factory, tiny_bert):
    root = tmp_path_factory.mktemp("adapter-vocab")
    directory = str(root / "ext")
    meta = extend(tiny_bert, directory)
    return directory, meta, domain_corpus(root / "domain.jsonl")


def test_new_token_rows_train_first_then_merge(extended, tmp_path):
    directory, meta, corpus = extended
    new_ids, rows = meta["new_token_ids"], meta["new_embedding_rows"]
    before = file_hashes(directory)
    out = str(tmp_path / "out")
    snapshot = Snapshot(step=1)
    argv = pretrain_args(directory, corpus, out, "--max_steps", "3", "--adapter", "lora", "--merge_adapter")
    argv += ["--train_new_embeddings_only_steps", "1", "--validation_split_percentage", "0", "--warmup_steps", "0"]
    metrics = pretrain(*argv, callbacks=[snapshot])
    assert metrics["adapter"]["new_token_rows"] == len(new_ids) and file_hashes(directory) == before

    # step 1 trained the new rows alone: the new rows' delta and their output-bias entries moved, nothing else
    start = AutoModelForMaskedLM.from_pretrained(directory)
    delta = "base_model.model.bert.embeddings.word_embeddings.token_adapter.trainable_tokens_delta.default"
    assert (snapshot.at_step[delta] != start.get_input_embeddings().weight[new_ids]).any(1).all()
    old = torch.ones(rows, dtype=torch.bool)
    old[new_ids] = False
    bias = snapshot.at_step["base_model.model.cls.predictions.bias"]
    assert torch.equal(bias[old], start.cls.predictions.bias[old]) and (bias[~old] != 0).all()
    assert not [n for n, v in snapshot.at_step.items() if "lora_B" in n and v.any()]
    head = "base_model.model.cls.predictions.transform.modules_to_save.default.dense.weight"
    assert torch.equal(snapshot.at_step[head], start.cls.predictions.transform.dense.weight)

    # the merged model: new rows trained (input and, tied, output), old rows bit-identical; same outputs
    merged = AutoModelForMaskedLM.from_pretrained(os.path.join(out, "merged"))
    embeddings, original = merged.get_input_embeddings().weight, start.get_input_embeddings().weight
    assert torch.equal(embeddings[old], original[old]) and (embeddings[~old] != original[~old]).any(1).all()
    assert merged.cls.predictions.decoder.weight is embeddings
    tokenizer = AutoTokenizer.from_pretrained(out)
    batch = ["the foobar reads kernelspace and the kernel module loads", "foobar"]
    adapter = PeftModel.from_pretrained(AutoModelForMaskedLM.from_pretrained(directory), out)
    torch.testing.assert_close(logits(merged, tokenizer, batch), logits(adapter, tokenizer, batch), rtol=0, atol=1e-5)


def test_head_warmup_trains_the_fresh_head_alone_then_the_adapter(tiny_bert_headless, tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", synthetic_documents(80))
    out = str(tmp_path / "out")
    snapshot = Snapshot(step=1)
    argv = pretrain_args(tiny_bert_headless, corpus, out, "--max_steps", "3", "--adapter", "lora")
    argv += ["--head_warmup_steps", "1", "--warmup_steps", "0", "--validation_split_percentage", "0"]
    metrics = pretrain(*argv, callbacks=[snapshot])
    assert metrics["head_warmup"]["steps"] == 1
    assert set(metrics["head_warmup"]["new_parameters"]) == {
        "base_model.model.cls.predictions.bias",
        *(
            f"base_model.model.cls.predictions.transform.modules_to_save.default.{n}"
            for n in ("dense.weight", "dense.bias", "LayerNorm.weight", "LayerNorm.bias")
        ),
    }
    lora_b = [n for n in snapshot.at_step if "lora_B" in n]
    assert not any(snapshot.at_step[n].any() for n in lora_b)  # during the warm-up only the fresh head trained
    assert all(trains and value.any() for n in lora_b for value, trains in [snapshot.at_end[n]])
    # The checkpoint has no head: the adapter carries all of it, so loading needs no random initialisation.
    tokenizer = AutoTokenizer.from_pretrained(out)
    outputs = []
    for seed in (1, 2):
        torch.manual_seed(seed)  # would give two different random heads if any head weight were missing
        base = AutoModelForMaskedLM.from_pretrained(tiny_bert_headless)
        outputs.append(logits(PeftModel.from_pretrained(base, out), tokenizer, texts(3)))
    assert torch.equal(*outputs)


@pytest.fixture
def task_files(tmp_path):
    return {
        "train": write_rows(tmp_path / "train.jsonl", separable_task(24, 0)),
        "dev": write_rows(tmp_path / "dev.jsonl", separable_task(12, 1)),
    }


def test_finetune_stacks_a_task_adapter_on_the_domain_adapter(
    domain_run, tiny_bert, task_files, tmp_path, monkeypatch
):
    import dontstop.finetune.pipeline as finetune

    domain, *_ = domain_run
    before = file_hashes(domain)
    loaded = []
    load = finetune.load_seeded_model

    def keep(*args, **kwargs):
        loaded.append(load(*args, **kwargs))
        return loaded[-1]  # (model, names initialised afresh)

    monkeypatch.setattr(finetune, "load_seeded_model", keep)
    out = tmp_path / "ft"
    argv = finetune_args(domain, task_files, out, "--seeds", "1", "--num_train_epochs", "1", "--adapter", "lora")
    assert main(["finetune", *argv, "--keep_models", "--merge_adapter"]) == 0
    assert file_hashes(domain) == before  # the domain adapter's files were only read

    # Under the task adapter, the encoder is the base with the domain adapter merged in, and stays so.
    ((model, _),) = loaded
    reference = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    reference = dict(merge_domain_adapter(reference, DomainAdapter(domain, tiny_bert)).named_parameters())
    plain = dict(AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2).named_parameters())
    query = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(reference[query], plain[query])  # the domain adapter is in it
    for name, param in model.named_parameters():
        key = name.removeprefix("base_model.model.").replace(".base_layer", "")
        if key.startswith(("bert.embeddings", "bert.encoder")) and "lora_" not in key:
            assert not param.requires_grad and torch.equal(param, reference[key]), f"{key} moved"
    assert all(p.any() for n, p in model.named_parameters() if "lora_B" in n)  # the task adapter trained

    results = json.loads((out / "results.json").read_text())
    assert results["adapter"]["domain"] == {"path": domain, "base": tiny_bert}
    assert "classifier" in results["adapter"]["task"]["modules_to_save"]
    saved = out / "seed-42" / "model"
    config = json.loads((saved / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS" and "classifier" in config["modules_to_save"]
    # Loading the kept task adapter: base, domain adapter merged in, task adapter on top; and the merged plain model.
    tokenizer = AutoTokenizer.from_pretrained(saved)
    dev = [json.loads(line)["text"] for line in open(task_files["dev"])]
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    stacked = PeftModel.from_pretrained(merge_domain_adapter(base, DomainAdapter(domain, tiny_bert)), saved)
    merged = AutoModelForSequenceClassification.from_pretrained(saved / "merged")
    expected = logits(stacked, tokenizer, dev)
    torch.testing.assert_close(logits(merged, tokenizer, dev), expected, rtol=0, atol=1e-5)
    predicted = [json.loads(line)["prediction"] for line in open(out / "seed-42" / "predictions_dev.jsonl")]
    assert [results["labels"][i] for i in expected.argmax(-1).tolist()] == predicted
    assert "merged into its base" in (out / "README.md").read_text()


def test_full_finetuning_from_an_adapter_directory_starts_from_the_merged_weights(domain_run, tiny_bert, tmp_path):
    from dontstop.finetune import FinetuningArguments, TaskArguments, load_seeded_model, load_tokenizer_and_config
    from dontstop.tasks import load_task

    domain, *_ = domain_run
    files = {"train": write_rows(tmp_path / "t.jsonl", separable_task(8, 0))}
    task = load_task(files["train"], files["train"], None, "auto", text_column="text", label_column="label")
    source, _, config = load_tokenizer_and_config(TaskArguments(model_name_or_path=domain), task)
    model, _ = load_seeded_model(task, source, config, 3, FinetuningArguments(output_dir=str(tmp_path / "o")))
    assert type(model).__name__ == "BertForSequenceClassification" and all(p.requires_grad for p in model.parameters())
    adapted = PeftModel.from_pretrained(AutoModelForMaskedLM.from_pretrained(tiny_bert), domain).merge_and_unload()
    query = "encoder.layer.1.attention.self.value.weight"
    assert torch.equal(model.bert.get_parameter(query), adapted.bert.get_parameter(query))


def ernie_model(directory, tokenizer_from) -> str:
    """A tiny model of an architecture with no default LoRA targets."""
    from transformers import ErnieConfig, ErnieForMaskedLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    config = ErnieConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    ErnieForMaskedLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def assert_one_line_error(err: str, stage: str, message: str) -> None:
    """The error is the last line, and one line (model loading may have drawn progress bars before it)."""
    last = err.strip().split("\n")[-1]
    assert last.startswith(f"dontstop {stage}: error: ") and message in last, err


BAD_PRETRAIN = {
    "no default targets": (["--adapter", "lora"], "--lora_target_modules: no default for model type 'ernie'"),
    "absent module": (
        ["--adapter", "lora", "--lora_target_modules", "query,nosuch"],
        "--lora_target_modules: no module named 'nosuch'",
    ),
    "tied layer": (["--adapter", "lora", "--lora_target_modules", "decoder"], "shares its weights with the input"),
    "merge without adapter": (["--merge_adapter"], "--merge_adapter needs --adapter lora"),
    "targets without adapter": (["--lora_target_modules", "query"], "--lora_target_modules needs --adapter lora"),
    "rank": (["--adapter", "lora", "--lora_r", "0"], "--lora_r 0"),
}


@pytest.mark.parametrize("case", sorted(BAD_PRETRAIN))
def test_bad_adapter_options_are_one_line_exit_2_nothing_written(case, tiny_bert, corpus, tmp_path, capsys):
    extra, message = BAD_PRETRAIN[case]
    model = ernie_model(tmp_path / "ernie", tiny_bert) if case == "no default targets" else tiny_bert
    out = tmp_path / "out"
    assert main(["pretrain", *pretrain_args(model, corpus, str(out), "--max_steps", "2", *extra)]) == 2
    assert_one_line_error(capsys.readouterr().err, "pretrain", message)
    assert not out.exists()


def test_an_adapter_never_writes_into_its_base_directory(tiny_bert, corpus, capsys):
    before = file_hashes(tiny_bert)
    argv = pretrain_args(tiny_bert, corpus, tiny_bert, "--adapter", "lora", "--overwrite_output_dir", "true")
    assert main(["pretrain", *argv]) == 2
    assert_one_line_error(capsys.readouterr().err, "pretrain", "the base model's directory")
    assert file_hashes(tiny_bert) == before


def test_bad_finetune_adapter_options(domain_run, task_files, tmp_path, capsys):
    domain, *_ = domain_run
    out = tmp_path / "ft"
    for extra, message in (
        (["--adapter", "lora", "--adversarial", "fgm"], "--adversarial with --adapter lora"),
        (
            ["--adapter", "lora", "--merge_adapter", "--keep_models", "none"],
            "--merge_adapter merges the kept models: --keep_models best or all",
        ),
        (["--merge_adapter", "--keep_models"], "--merge_adapter needs --adapter lora"),
    ):
        assert main(["finetune", *finetune_args(domain, task_files, out, *extra)]) == 2
        assert_one_line_error(capsys.readouterr().err, "finetune", message)
        assert not out.exists()
