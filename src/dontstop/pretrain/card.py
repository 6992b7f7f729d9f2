"""The model card (README.md) written beside the weights of a pretraining run: how to load it, its held-out losses,
what weight averaging and adapters did, its corpora and its hyperparameters."""

from __future__ import annotations

import os

from ..models import hub_base_model
from ..records import PretrainMetrics, eval_values


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def loss_table(metrics: PretrainMetrics, after: dict | None = None) -> list[str]:
    """Per held-out set: predicted tokens, the loss before, after the head warm-up and after training, perplexity
    and accuracy after. `after` replaces the final evaluation (the averaged weights' card shows theirs)."""
    after = metrics.after if after is None else after
    warm = (metrics.head_warmup or {}).get("eval_after_warmup") or {}
    losses = eval_values(after)
    if not losses:
        return ["No held-out set was evaluated."]
    before, warmed = eval_values(metrics.before), eval_values(warm)
    tokens, perplexity, accuracy = (eval_values(after, m) for m in ("tokens", "perplexity", "accuracy"))
    header = (
        "| held-out set | predicted tokens | loss before |"
        + (" loss after head warm-up |" if warm else "")
        + " loss after | perplexity after | masked/next-token accuracy after |"
    )
    rows = [header, "|" + "---|" * (header.count("|") - 1)]
    for name in sorted(losses):
        row = f"| {name} | {_fmt(tokens.get(name))} | {_fmt(before.get(name))} |"
        if warm:
            row += f" {_fmt(warmed.get(name))} |"
        row += f" {_fmt(losses[name])} | {_fmt(perplexity.get(name))} | {_fmt(accuracy.get(name))} |"
        rows.append(row)
    return rows


def averaging_lines(metrics: PretrainMetrics, own: bool, merged: bool) -> list[str]:
    """The section on weight averaging: what was averaged, raw against averaged held-out losses, the winner. `own`:
    this card is the averaged weights' own; `merged`: it is their merged-adapter copy's."""
    averaged = metrics.averaged
    if not averaged:
        return []
    method = averaged["method"]
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
        where = f"; the raw weights are in `{'../..' if merged else '..'}`."
    else:
        where = f", in `{averaged['directory']}/`." if averaged["directory"] else " (nothing was averaged)."
    lines = [
        "## Weight averaging",
        "",
        f"{'These weights are' if own else 'Beside these raw weights, the run kept'} {what}{where}",
    ]
    raw, average = eval_values(metrics.after), eval_values(averaged.get("after"))
    if average:
        lines += ["", "| held-out set | raw loss | averaged loss |", "|---|---|---|"]
        lines += [f"| {n} | {_fmt(raw.get(n))} | {_fmt(average[n])} |" for n in sorted(average)]
    if averaged.get("better"):
        winner = "the raw weights" if averaged["better"] == "raw" else f"the averaged ({method.upper()}) weights"
        lines += ["", f"Lower loss on `{averaged['compared_on']}`: **{winner}**."]
    return [*lines, ""]


def adapter_lines(adapter: dict, merged: bool) -> list[str]:
    """The section on a LoRA adapter: what trained and how much; for its merged copy, where the weights came from."""
    base = adapter["base_model"]
    if merged:
        return [f"A plain model: the run's LoRA adapter (the parent directory) merged into `{base}`.", ""]
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
            "(huggingface/peft#3649): load this adapter after `dontstop.models.keep_output_bias()` (which fixes "
            "it), with a peft that has the fix, or use the merged model.",
        ]
    return [*lines, ""]


def usage_lines(directory: str, objective: str, adapter: dict | None) -> list[str]:
    auto = "AutoModelForMaskedLM" if objective == "mlm" else "AutoModelForCausalLM"
    task = "fill-mask" if objective == "mlm" else "text-generation"
    if adapter:  # loads with peft onto its base model
        code = [
            "from peft import PeftModel",
            f"from transformers import {auto}, AutoTokenizer",
            f'base = {auto}.from_pretrained("{adapter["base_model"]}")',
            f'model = PeftModel.from_pretrained(base, "{directory}")  # .merge_and_unload(): a plain model',
            f'tokenizer = AutoTokenizer.from_pretrained("{directory}")',
        ]
    else:
        code = [
            f"from transformers import {auto}, AutoTokenizer, pipeline",
            f'model = {auto}.from_pretrained("{directory}")',
            f'pipe = pipeline("{task}", model="{directory}")',
        ]
    return ["```python", *code, "```", ""]


def corpus_lines(corpus_stats: dict) -> list[str]:
    lines = ["## Corpora", "", "| role | path | documents | tokens |", "|---|---|---|---|"]
    for entry in corpus_stats["train"]:
        lines.append(f"| train | `{entry['path']}` | {_fmt(entry['documents'])} | {_fmt(entry['tokens'])} |")
    if corpus_stats.get("replay"):
        entry = corpus_stats["replay"]
        role = f"replay ({entry['ratio']:g} of tokens)"
        lines.append(f"| {role} | `{entry['path']}` | {_fmt(entry['documents'])} | {_fmt(entry['tokens'])} |")
    for name, entry in corpus_stats["eval"].items():
        lines.append(f"| eval: {name} | `{entry['path']}` | {_fmt(entry['documents'])} | {_fmt(entry['tokens'])} |")
    return lines


def hyperparameter_lines(metrics: PretrainMetrics, masking_args, args) -> list[str]:
    schedule = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
    lines = [
        "## Hyperparameters",
        "",
        f"- steps: {metrics.steps:,}, epochs: {_fmt(metrics.train.get('epoch'))}",
        f"- batch size per device: {args.per_device_train_batch_size}, "
        f"gradient accumulation: {args.gradient_accumulation_steps}",
        f"- learning rate: {args.learning_rate}, schedule: {schedule}, warm-up: {args.warmup_steps}",
        f"- AdamW betas: ({args.adam_beta1}, {args.adam_beta2}), epsilon: {args.adam_epsilon}, "
        f"weight decay: {args.weight_decay}",
        f"- seed: {args.seed}",
    ]
    if metrics.objective == "mlm":
        m = masking_args
        lines.append(
            f"- masking: {m.masking} (segmenter {m.segmenter}), rate {m.mlm_probability}, units replaced by "
            f"mask/random/kept {m.mask_replace_prob}/{m.random_replace_prob}/"
            f"{1 - m.mask_replace_prob - m.random_replace_prob:.2f}; no next-sentence prediction"
        )
    return lines + [f"- training wall time: {_fmt(metrics.train.get('train_runtime'))} s"]


def write_model_card(
    directory: str, arguments, metrics: PretrainMetrics, corpus_stats: dict, weights: str | None = None,
    merged: bool = False,
) -> None:  # fmt: skip
    """README.md of `directory`: the run's main weights, or (`weights`) its averaged ones, or (`merged`) a merged
    copy of its adapter."""
    model_args, data_args, masking_args, training_args = arguments
    base = model_args.model_name_or_path or f"(fresh model from config {model_args.config_name})"
    averaged = metrics.averaged or {}
    own = bool(averaged) and weights == averaged.get("method")  # the averaged weights' own card shows their losses
    adapter = metrics.adapter if not merged else None
    layout = "one example per document" if data_args.line_by_line else "documents packed into full blocks"
    if data_args.segment_option:  # the attention a user of the model should know it was trained with
        layout += ", packed without padding" if data_args.padding_free else ""
        layout += ", each document attending only to itself"
    if data_args.prompt:  # prompt-based continued pretraining (prompted.py)
        slot = (
            f"the word of its `{data_args.prompt_label_column}` label" if data_args.prompt_label_column else "a mask"
        )
        layout += f"; every text in the template `{data_args.prompt}`, its slot holding {slot}"
        layout += "" if data_args.mask_template else ", the template's words never masked"
    title = f"# Continued pretraining of `{base}`" + (f" ({averaged['method'].upper()} weights)" if own else "")
    title += ", LoRA adapter" if adapter else ", LoRA adapter merged" if merged else ""
    lines = [
        "---",
        f"library_name: {'peft' if adapter else 'transformers'}",
        *([f"base_model: {based_on}"] if (based_on := hub_base_model(model_args.model_name_or_path)) else []),
        f"pipeline_tag: {'fill-mask' if metrics.objective == 'mlm' else 'text-generation'}",
        f"tags: [dontstop, continued-pretraining{', lora' if metrics.adapter else ''}]",
        "---",
        "",
        title,
        "",
        f"Trained with `dontstop pretrain` ({'masked' if metrics.objective == 'mlm' else 'causal'} language "
        f"modelling, sequences of {metrics.max_seq_length} tokens, {layout}).",
        "",
        *usage_lines(directory, metrics.objective, adapter),
        *(adapter_lines(metrics.adapter, merged) if metrics.adapter else []),
        "## Held-out losses",
        "",
        *loss_table(metrics, averaged.get("after") or {} if own else None),
        "",
        *averaging_lines(metrics, own, merged),
        *head_warmup_lines(metrics),
        *knowledge_lines(metrics, data_args),
        *carried_lines(metrics),
        *corpus_lines(corpus_stats),
        "",
        *hyperparameter_lines(metrics, masking_args, training_args),
        "",
        "Every setting is in `dontstop_config.json`; every logged metric in `metrics.json`.",
        "",
    ]
    with open(os.path.join(directory, "README.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def knowledge_lines(metrics: PretrainMetrics, data_args) -> list[str]:
    """What --glossary/--triples appended and what --ngram_adapter added."""
    lines = []
    k = metrics.knowledge
    if k:
        sources = " and ".join(f"`{p}`" for p in (data_args.glossary, data_args.triples) if p)
        lines += [
            f"Knowledge from {sources} ({k['terms_defined']:,} terms) was appended to the training examples: "
            f"{k['terms_expanded']:,} terms ({k['distinct_terms']:,} distinct) in {k['examples_with_terms']:,} of "
            f"{k['examples']:,} examples ({100 * k['share_with_terms']:.1f}%), {k['appended_tokens']:,} tokens, "
            f"attention {data_args.knowledge_attention.replace('_', ' ')}. The model itself takes plain text.",
            "",
        ]
    n = metrics.ngram_adapter
    if n:
        lines += [
            f"An n-gram adapter (T-DNA: {n['ngrams']:,} n-grams, {n['layers']} encoder layers, {n['parameters']:,} "
            f"parameters{', the model frozen' if n['frozen_model'] else ''}) is saved beside the weights "
            "(`ngram_adapter.safetensors`, `ngram_adapter.json`): `dontstop finetune` loads it with the model, and "
            "`dontstop.knowledge.ngram_adapter.load_ngram_adapter(model, DIR)` attaches it to a model loaded "
            "otherwise; plain `from_pretrained` loads the model without it.",
            "",
        ]
    return lines


def carried_lines(metrics: PretrainMetrics) -> list[str]:
    if not metrics.carried_weights:
        return []
    names = ", ".join(f"`{name}`" for name in metrics.carried_weights)
    return [
        f"Carried over unchanged from the starting checkpoint, which the language-model head does not use: {names}. "
        "A model fine-tuned from here starts from them as one fine-tuned from the starting checkpoint does.",
        "",
    ]


def head_warmup_lines(metrics: PretrainMetrics) -> list[str]:
    warm = metrics.head_warmup
    if not warm:
        return []
    return [
        f"The checkpoint had no weights for {len(warm['new_parameters'])} head tensors; they were trained alone for "
        f"{warm['steps']} steps before the whole model trained. The 'before' loss is that of a random head; the "
        "loss after the head warm-up is what the unchanged encoder already knew.",
        "",
    ]
