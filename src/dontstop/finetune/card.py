"""The README.md of a fine-tuning run: per seed, then mean ± std, and the settings."""

from __future__ import annotations

import os

from ..models import hub_base_model
from ..records import FinetuneResults
from ..scoring import mean_std_percent


def results_table(results: FinetuneResults) -> list[str]:
    """Markdown: one row per seed, then mean ± std (percent)."""
    split = "test" if "test" in results.aggregate else "dev"
    names = results.metrics
    rows = [
        f"| seed | best epoch | {' | '.join(f'{split} {m}' for m in names)} |",
        "|---|---|" + "---|" * len(names),
    ]
    for record in results.seeds:
        values = " | ".join(f"{100 * getattr(record, split)[m]:.1f}" for m in names)
        epoch = "n/a" if record.best_epoch is None else f"{record.best_epoch:g}"
        rows.append(f"| {record.seed} | {epoch} | {values} |")
    means = " | ".join(f"**{mean_std_percent(results.aggregate[split][m])}**" for m in names)
    rows.append(f"| mean ± std | | {means} |")
    return rows


def per_class_table(results: FinetuneResults) -> list[str]:
    """Markdown: precision, recall and F1 of every class (mean ± std over seeds, percent) and its support, on the
    split of the headline table; the classes by F1, worst first."""
    split = "test" if "test" in results.aggregate else "dev"
    classes = (results.per_class or {}).get(split)
    if not classes:
        return []
    rows = [
        f"Per class, {split} (percent, mean ± std over seeds; support: examples of the class), worst F1 first:",
        "",
        "| class | support | precision | recall | F1 |",
        "|---|--:|--:|--:|--:|",
    ]
    for name, stats in sorted(classes.items(), key=lambda item: item[1]["f1"]["mean"]):
        cells = [mean_std_percent(stats[m]) for m in ("precision", "recall", "f1")]
        rows.append(f"| {name} | {stats['support']['mean']:.0f} | {' | '.join(cells)} |")
    return rows + [""]


def imbalance_extras(args) -> list[str]:
    """The remedies for imbalance a run used, in words (none for a plain run)."""
    beta = f" (beta {args.class_weights_beta})" if args.class_weights == "effective" else ""
    return [
        name
        for name, on in (
            (f"{args.class_weights.replace('_', ' ')} class weights{beta}", args.class_weights != "none"),
            (f"focal loss (gamma {args.focal_gamma})", args.loss == "focal"),
            (f"the {args.sampler} class-aware sampler", args.sampler != "random"),
        )
        if on
    ]


def swa_options(args) -> str:
    given = [f"every {args.swa_freq} steps" if args.swa_freq else "", f"lr {args.swa_lr}" if args.swa_lr else ""]
    return "".join(f", {g}" for g in given if g)


def finetune_averaging_lines(results: FinetuneResults) -> list[str]:
    """With weight averaging: how often the averaged weights beat the raw ones on dev at the best epoch."""
    summary = results.averaging
    if not summary:
        return []
    method, metric = summary["method"], results.primary_metric
    return [
        f"- {method.upper()}: the averaged weights chose the best epoch and are the ones scored; at the best epoch "
        f"they beat the raw weights on dev {metric} in {summary['better'][method]} of {len(results.seeds)} seeds "
        f"(raw weights' dev {metric}: {mean_std_percent(summary['dev_raw'][metric])})"
    ]


def method_lines(results: FinetuneResults) -> list[str]:
    """The training methods switched on, the unlabeled text they read, and self-training's rounds."""
    lines = []
    for name, settings in (results.methods or {}).items():
        shown = ", ".join(f"{key} {value}" for key, value in settings.items() if value is not None)
        lines.append(f"- training method `{name}`" + (f": {shown}" if shown else ""))
    unlabeled = results.unlabeled or {}
    for entry in unlabeled.get("files", []):
        leaked = sum(entry["leaked"].values())
        lines.append(
            f"- unlabeled text `{entry['path']}`: {entry['kept']:,} texts kept of {entry['documents']:,} "
            f"({leaked:,} equal to a dev/test text and {entry['duplicates']:,} repeats left out)"
        )
    if unlabeled.get("from_train"):
        lines.append("- unlabeled text: the training texts each seed's few-shot draw left out")
    rounds = [seed.rounds for seed in results.seeds if seed.rounds]
    if rounds:
        metric, split = results.primary_metric, "test" if "test" in results.aggregate else "dev"
        lines.append(f"- self-training, the mean over seeds per round ({split} {metric}; pseudo-labels right):")
        for index in range(max(map(len, rounds))):
            entries = [r[index] for r in rounds if len(r) > index]
            score = sum(e[split][metric] for e in entries) / len(entries)
            known = [e["pseudo_label_accuracy"] for e in entries if e.get("pseudo_label_accuracy") is not None]
            accuracy = f", pseudo-labels {100 * sum(known) / len(known):.1f}% right" if known else ""
            added = sum(e.get("pseudo_labels", 0) for e in entries) / len(entries)
            lines.append(f"  - round {index}: {100 * score:.1f}; {added:.0f} pseudo-labelled examples{accuracy}")
    return lines


def prompt_lines(prompt: dict | None) -> list[str]:
    """With --prompt: the template and label words the MLM head scored, and how."""
    if not prompt:
        return []
    words = "; ".join(f"{label}: {', '.join(words)}" for label, words in prompt["verbalizer"].items())
    rule = "the head's logit of each label word at the slot"
    if prompt["scoring"] != "logit":
        rule = f"the mean log-probability of each label word's tokens over {prompt['slots']} mask slots"
    return [f"- prompt-based: the model's own MLM head fills `{prompt['template']}`; a label scores {rule} (the mean "
            f"over its words); label words {words}. Kept models load with `AutoModelForMaskedLM` (the template and "
            "verbalizer are in config.json under `prompt`)."]  # fmt: skip


def write_finetune_readme(output_dir: str, results: FinetuneResults, args) -> None:
    """The table of a `dontstop finetune` run (per seed, then mean ± std) and its settings."""
    seeds = results.seeds
    minutes = results.wall_seconds / 60
    limit = seeds[0].train_examples
    extras = [
        name
        for name, on in (
            (f"EMA of the weights (decay {args.ema})", args.ema is not None),
            (f"SWA of the weights (from {args.swa_start}{swa_options(args)})", args.swa_start is not None),
            (
                f"a LoRA task adapter (rank {args.lora_r}, alpha {args.lora_alpha}, dropout {args.lora_dropout})",
                args.uses_adapter,
            ),
        )
        if on
    ] + imbalance_extras(args)
    domain = (results.adapter or {}).get("domain")
    based_on = hub_base_model(results.model)
    pipeline = "token-classification" if results.task_type == "token" else "text-classification"
    lines = [
        "---",
        "library_name: transformers",
        *([f"base_model: {based_on}"] if based_on else []),
        f"pipeline_tag: {pipeline}",
        "tags: [dontstop, fine-tuning]",
        "---",
        "",
        f"# Fine-tuning `{results.model}`: {results.task_type.replace('_', '-')} task",
        "",
        f"{len(seeds)} seeds; {limit:,} training examples per seed"
        + (f" (of {results.train_file['examples']:,})" if limit < results.train_file["examples"] else "")
        + f"; {len(results.labels)} labels; best epoch chosen on dev by {results.primary_metric}.",
        "Scores are percentages; ± is the sample standard deviation over seeds.",
        "",
        *results_table(results),
        "",
        *per_class_table(results),
        f"- learning rate {args.learning_rate}, batch {args.per_device_train_batch_size}, up to "
        f"{args.num_train_epochs:g} epochs, early stopping patience {args.early_stopping_patience}, "
        f"max sequence length {results.max_seq_length}" + (f"; {', '.join(extras)}" if extras else ""),
        f"- train `{results.train_file['path']}`, dev `{results.validation_file['path']}`"
        + (f", test `{results.test_file['path']}`" if results.test_file else ""),
        *([f"- the LoRA adapter `{domain['path']}` merged into its base `{domain['base']}` first"] if domain else []),
        *finetune_averaging_lines(results),
        *method_lines(results),
        *prompt_lines(results.prompt),
        f"- wall time {minutes:.1f} min; predictions per seed in `seed-*/predictions_*.jsonl`; every number in "
        "`results.json`, every setting in `dontstop_config.json`.",
        "",
    ]
    with open(os.path.join(output_dir, "README.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
