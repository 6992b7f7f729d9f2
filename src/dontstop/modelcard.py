"""The README.md files written beside outputs: the model card of a pretraining run, the table of a fine-tuning run."""

from __future__ import annotations

import os

from .scoring import mean_std_percent


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def loss_table(metrics: dict) -> list[str]:
    before, after = metrics.get("before", {}), metrics.get("after", {})
    warm = (metrics.get("head_warmup") or {}).get("eval_after_warmup") or {}
    names = sorted({k[len("eval_") : -len("_loss")] for k in after if k.endswith("_loss")})
    if not names:
        return ["No held-out set was evaluated."]
    header = (
        "| held-out set | predicted tokens | loss before |"
        + (" loss after head warm-up |" if warm else "")
        + " loss after | perplexity after | masked/next-token accuracy after |"
    )
    rows = [header, "|" + "---|" * (header.count("|") - 1)]
    for name in names:
        key = f"eval_{name}"
        row = f"| {name} | {_fmt(after.get(f'{key}_tokens'))} | {_fmt(before.get(f'{key}_loss'))} |"
        if warm:
            row += f" {_fmt(warm.get(f'{key}_loss'))} |"
        row += (
            f" {_fmt(after.get(f'{key}_loss'))} | {_fmt(after.get(f'{key}_perplexity'))} |"
            f" {_fmt(after.get(f'{key}_accuracy'))} |"
        )
        rows.append(row)
    return rows


def averaging_lines(metrics: dict) -> list[str]:
    """The card's section on weight averaging: what was averaged, raw against averaged held-out losses, the winner."""
    averaged = metrics.get("averaged")
    if not averaged:
        return []
    method, own = averaged["method"], metrics.get("weights") == averaged["method"]
    if method == "ema":
        what = (
            f"an exponential moving average of the weights (decay {averaged['decay']}, warmed up), updated every step"
        )
    else:
        what = (
            f"stochastic weight averaging: the mean of {averaged['updates']} snapshots of the weights, one every "
            f"{averaged['every']} steps after step {averaged['start_step']}"
        )
        if averaged["lr"] is not None:
            what += f" (learning rate held at {averaged['lr']} after step {averaged['start_step']})"
    if own:
        where = f"; the raw weights are in `{'../..' if metrics.get('merged_adapter') else '..'}`."
    else:
        where = f", in `{averaged['directory']}/`." if averaged["directory"] else " (nothing was averaged)."
    lines = [
        "## Weight averaging",
        "",
        f"{'These weights are' if own else 'Beside these raw weights, the run kept'} {what}{where}",
    ]
    raw, average = metrics.get("after") or {}, averaged.get("after") or {}
    names = sorted(k[len("eval_") : -len("_loss")] for k in average if k.endswith("_loss"))
    if names:
        lines += ["", "| held-out set | raw loss | averaged loss |", "|---|---|---|"]
        lines += [
            f"| {n} | {_fmt(raw.get(f'eval_{n}_loss'))} | {_fmt(average.get(f'eval_{n}_loss'))} |" for n in names
        ]
    if averaged.get("better"):
        winner = "the raw weights" if averaged["better"] == "raw" else f"the averaged ({method.upper()}) weights"
        lines += ["", f"Lower loss on `{averaged['compared_on']}`: **{winner}**."]
    return [*lines, ""]


def adapter_lines(metrics: dict) -> list[str]:
    """The card's section on a LoRA adapter (`metrics["adapter"]`): what trained and how much; for its merged copy
    (the card's `merged_adapter`), where the weights came from."""
    adapter = metrics["adapter"]
    base = adapter["base_model"]
    if metrics.get("merged_adapter"):
        return [
            f"A plain model: the run's LoRA adapter (the parent directory) merged into `{base}`.",
            "",
        ]
    trained = [f"`{m}`" for m in adapter["modules_to_save"] + adapter["output_bias"]]
    if adapter["new_token_rows"]:
        trained.append(f"the rows of the {adapter['new_token_rows']:,} tokens added by `dontstop vocab extend`")
    targets = adapter["target_modules"]
    on = ", ".join(f"`{t}`" for t in targets) if isinstance(targets, list) else targets
    lines = [
        "## LoRA adapter",
        "",
        f"This directory holds a LoRA adapter (peft), not a whole model: rank {adapter['r']}, alpha "
        f"{adapter['alpha']}, dropout {adapter['dropout']}, on {on}"
        + (f"; also trained: {', '.join(trained)}" if trained else "")
        + f". {adapter['trainable_parameters']:,} of the base model's {adapter['base_parameters']:,} parameters "
        f"trained ({100 * adapter['trainable_share']:.2f}%); the base model's weights stayed frozen and are not here.",
    ]
    if adapter.get("merged"):
        lines += ["", f"`{adapter['merged']}/` holds the adapter merged into the base: a plain model."]
    if adapter["new_token_rows"] and adapter["output_bias"]:
        lines += [
            "",
            "peft 0.21 drops an output layer's bias beside trainable token rows until the adapter is merged "
            "(huggingface/peft#3649): load this adapter after `import dontstop.adapters` (which fixes it), with a "
            "peft that has the fix, or use the merged model.",
        ]
    return [*lines, ""]


def write_model_card(output_dir, model_args, data_args, masking_args, training_args, metrics, corpus_stats) -> None:
    base = model_args.model_name_or_path or f"(fresh model from config {model_args.config_name})"
    objective = metrics["objective"]
    auto = "AutoModelForMaskedLM" if objective == "mlm" else "AutoModelForCausalLM"
    task = "fill-mask" if objective == "mlm" else "text-generation"
    train = metrics.get("train", {})
    layout = "one example per document" if data_args.line_by_line else "documents packed into full blocks"
    steps = max((entry.get("step", 0) for entry in metrics.get("history", [])), default=0)
    averaged = metrics.get("averaged") or {}
    # The card of the averaged weights' own directory shows their losses (`weights` names the average).
    own = bool(averaged) and metrics.get("weights") == averaged["method"]
    shown = {**metrics, "after": averaged.get("after") or {}} if own else metrics
    adapter = metrics.get("adapter") if not metrics.get("merged_adapter") else None
    if adapter:  # loads with peft onto its base model
        usage = [
            "from peft import PeftModel",
            f"from transformers import {auto}, AutoTokenizer",
            f'base = {auto}.from_pretrained("{adapter["base_model"]}")',
            f'model = PeftModel.from_pretrained(base, "{output_dir}")  # .merge_and_unload(): a plain model',
            f'tokenizer = AutoTokenizer.from_pretrained("{output_dir}")',
        ]
    else:
        usage = [
            f"from transformers import {auto}, AutoTokenizer, pipeline",
            f'model = {auto}.from_pretrained("{output_dir}")',
            f'pipe = pipeline("{task}", model="{output_dir}")',
        ]
    title = f"# Continued pretraining of `{base}`"
    title += f" ({averaged['method'].upper()} weights)" if own else ""
    title += ", LoRA adapter" if adapter else ", LoRA adapter merged" if metrics.get("merged_adapter") else ""
    lines = [
        "---",
        f"library_name: {'peft' if adapter else 'transformers'}",
        *([f"base_model: {adapter['base_model']}"] if adapter else []),
        f"pipeline_tag: {task}",
        f"tags: [dontstop, continued-pretraining{', lora' if metrics.get('adapter') else ''}]",
        "---",
        "",
        title,
        "",
        f"Trained with `dontstop pretrain` ({'masked' if objective == 'mlm' else 'causal'} language modelling, "
        f"sequences of {metrics['max_seq_length']} tokens, {layout}).",
        "",
        "```python",
        *usage,
        "```",
        "",
        *(adapter_lines(metrics) if metrics.get("adapter") else []),
        "## Held-out losses",
        "",
        *loss_table(shown),
        "",
        *averaging_lines(metrics),
    ]
    if metrics.get("head_warmup"):
        warm = metrics["head_warmup"]
        lines += [
            f"The checkpoint had no weights for {len(warm['new_parameters'])} head tensors; they were trained "
            f"alone for {warm['steps']} steps before the whole model trained. The 'before' loss is that of a random "
            "head; the loss after the head warm-up is what the unchanged encoder already knew.",
            "",
        ]
    lines += ["## Corpora", "", "| role | path | documents | tokens |", "|---|---|---|---|"]
    for entry in corpus_stats["train"]:
        lines.append(f"| train | `{entry['path']}` | {_fmt(entry['documents'])} | {_fmt(entry['tokens'])} |")
    if corpus_stats.get("replay"):
        entry = corpus_stats["replay"]
        role = f"replay ({entry['ratio']:g} of tokens)"
        lines.append(f"| {role} | `{entry['path']}` | {_fmt(entry['documents'])} | {_fmt(entry['tokens'])} |")
    for name, entry in corpus_stats["eval"].items():
        lines.append(f"| eval: {name} | `{entry['path']}` | {_fmt(entry['documents'])} | {_fmt(entry['tokens'])} |")
    args = training_args
    schedule = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
    lines += [
        "",
        "## Hyperparameters",
        "",
        f"- steps: {steps:,}, epochs: {_fmt(train.get('epoch'))}",
        f"- batch size per device: {args.per_device_train_batch_size}, "
        f"gradient accumulation: {args.gradient_accumulation_steps}",
        f"- learning rate: {args.learning_rate}, schedule: {schedule}, warm-up: {args.warmup_steps}",
        f"- AdamW betas: ({args.adam_beta1}, {args.adam_beta2}), epsilon: {args.adam_epsilon}, "
        f"weight decay: {args.weight_decay}",
        f"- seed: {args.seed}",
    ]
    if objective == "mlm":
        lines.append(
            f"- masking: {masking_args.masking} (segmenter {masking_args.segmenter}), "
            f"rate {masking_args.mlm_probability}, units replaced by mask/random/kept "
            f"{masking_args.mask_replace_prob}/{masking_args.random_replace_prob}/"
            f"{1 - masking_args.mask_replace_prob - masking_args.random_replace_prob:.2f}; no next-sentence prediction"
        )
    lines += [
        f"- training wall time: {_fmt(train.get('train_runtime'))} s",
        "",
        "Every setting is in `dontstop_config.json`; every logged metric in `metrics.json`.",
        "",
    ]
    with open(os.path.join(output_dir, "README.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def results_table(results: dict) -> list[str]:
    """Markdown: one row per seed, then mean ± std (percent)."""
    split = "test" if "test" in results["aggregate"] else "dev"
    names = results["metrics"]
    rows = [
        f"| seed | best epoch | {' | '.join(f'{split} {m}' for m in names)} |",
        "|---|---|" + "---|" * len(names),
    ]
    for record in results["seeds"]:
        values = " | ".join(f"{100 * record[split][m]:.1f}" for m in names)
        epoch = "n/a" if record["best_epoch"] is None else f"{record['best_epoch']:g}"
        rows.append(f"| {record['seed']} | {epoch} | {values} |")
    means = " | ".join(f"**{mean_std_percent(results['aggregate'][split][m])}**" for m in names)
    rows.append(f"| mean ± std | | {means} |")
    return rows


def swa_options(args) -> str:
    given = [f"every {args.swa_freq} steps" if args.swa_freq else "", f"lr {args.swa_lr}" if args.swa_lr else ""]
    return "".join(f", {g}" for g in given if g)


def finetune_averaging_lines(results: dict) -> list[str]:
    """With weight averaging: how often the averaged weights beat the raw ones on dev at the best epoch."""
    summary = results.get("averaging")
    if not summary:
        return []
    method, metric = summary["method"], results["primary_metric"]
    return [
        f"- {method.upper()}: the averaged weights chose the best epoch and are the ones scored; at the best epoch "
        f"they beat the raw weights on dev {metric} in {summary['better'][method]} of {len(results['seeds'])} seeds "
        f"(raw weights' dev {metric}: {mean_std_percent(summary['dev_raw'][metric])})"
    ]


def write_finetune_readme(output_dir: str, results: dict, args) -> None:
    """The table of a `dontstop finetune` run (per seed, then mean ± std) and its settings."""
    seeds = results["seeds"]
    minutes = results["wall_seconds"] / 60
    limit = seeds[0]["train_examples"]
    extras = [
        name
        for name, on in (
            (f"FGM adversarial training (epsilon {args.adv_epsilon})", args.adversarial == "fgm"),
            (f"EMA of the weights (decay {args.ema})", args.ema is not None),
            (f"SWA of the weights (from {args.swa_start}{swa_options(args)})", args.swa_start is not None),
            (
                f"a LoRA task adapter (rank {args.lora_r}, alpha {args.lora_alpha}, dropout {args.lora_dropout})",
                args.uses_adapter,
            ),
        )
        if on
    ]
    domain = (results.get("adapter") or {}).get("domain")
    lines = [
        f"# Fine-tuning `{results['model']}`: {results['task_type'].replace('_', '-')} task",
        "",
        f"{len(seeds)} seeds; {limit:,} training examples per seed"
        + (f" (of {results['train_file']['examples']:,})" if limit < results["train_file"]["examples"] else "")
        + f"; {len(results['labels'])} labels; best epoch chosen on dev by {results['primary_metric']}.",
        "Scores are percentages; ± is the sample standard deviation over seeds.",
        "",
        *results_table(results),
        "",
        f"- learning rate {args.learning_rate}, batch {args.per_device_train_batch_size}, up to "
        f"{args.num_train_epochs:g} epochs, early stopping patience {args.early_stopping_patience}, "
        f"max sequence length {results['max_seq_length']}" + (f"; {', '.join(extras)}" if extras else ""),
        f"- train `{results['train_file']['path']}`, dev `{results['validation_file']['path']}`"
        + (f", test `{results['test_file']['path']}`" if results["test_file"] else ""),
        *([f"- the LoRA adapter `{domain['path']}` merged into its base `{domain['base']}` first"] if domain else []),
        *finetune_averaging_lines(results),
        f"- wall time {minutes:.1f} min; predictions per seed in `seed-*/predictions_*.jsonl`; every number in "
        "`results.json`, every setting in `dontstop_config.json`.",
        "",
    ]
    with open(os.path.join(output_dir, "README.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
