"""LoRA adapters (peft) for both training stages: low-rank updates of the attention projections train while the
pretrained weights stay frozen, and what is saved is a small adapter that plain peft loads.

    dontstop pretrain --model_name_or_path roberta-base --train_file domain.jsonl --adapter lora --merge_adapter \\
        --output_dir runs/dapt-lora
    dontstop finetune --model_name_or_path runs/dapt-lora --adapter lora ... --output_dir runs/dapt-lora-ft

What trains besides the LoRA matrices (on `--lora_target_modules`, by default the attention's query and value
projections of each architecture, `default_target_modules`):
- The head's own weights (BERT's `cls.predictions.transform`, RoBERTa's `lm_head.dense` and `lm_head.layer_norm`,
  a classifier), whole, as peft `modules_to_save`; and any weight the checkpoint lacked (a sentence encoder's fresh
  MLM head, a fresh classifier or pooler), so that the adapter alone rebuilds them on loading.
- The MLM head's output bias, one entry per token (the unigram prior, which a domain shifts). It sits in the module
  that also holds the tied vocabulary matrix, so it cannot be a module of its own; peft saves and loads a bare base
  tensor only through `bias="all"`, so the adapter is configured that way and every other bias is frozen again. The
  file then holds every bias, the others equal to the base model's, and the output bias is the one base tensor
  trained in place.
- The rows of the tokens `dontstop vocab extend` added (peft `trainable_token_indices`): a small tensor holding the
  new rows alone, used in place of those rows of the input embeddings and, when tied, of the output layer; an untied
  output layer gets its own.

Weight tying: the vocabulary projection of BERT, RoBERTa, DistilBERT and GPT-2 *is* the input embedding matrix. It
stays frozen and tied. Training it through `modules_to_save` would copy it into every adapter (half of MiniLM's
parameters) and untie the copy from the input side: the merged model would hold two vocabulary matrices under a
config that says they are one (transformers 5 warns on every load and keeps them apart). So the head adapts through
its transform and bias, the projection through the new rows only, and a merged model keeps its tie. GPT-2's head is
nothing but that matrix: only LoRA and new rows train. An untied output matrix stays frozen likewise (but for its new
rows), being as large. LoRA on a tied layer is refused: merged, its update would reach both sides, while the adapter
model applies it to one.

Stacking (`dontstop finetune` on an adapter directory): the domain adapter is merged into this run's in-memory copy of
its base model, which is then frozen under a fresh task adapter (or trained whole, without `--adapter`). The domain
adapter's files are only read, its merged weights stay bit-identical through task training (a test checks both), and
the saved task adapter holds the task's weights alone: to load it, merge the domain adapter into the base first.
Merging (exact up to float rounding) keeps one adapter active at a time, which every peft feature supports, unlike
several active adapters with their own modules to save.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch

from .errors import UsageError
from .models import keep_output_bias

logger = logging.getLogger(__name__)

# What peft's own TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING lacks among the masked LMs `heads.py` serves.
ADDED_TARGET_MODULES = {
    "distilbert": ["q_lin", "v_lin"],
    "albert": ["query", "value"],
    "camembert": ["query", "value"],
    "megatron-bert": ["query", "value"],
    "roberta-prelayernorm": ["query", "value"],
    "xlm-roberta-xl": ["query", "value"],
    "mpnet": ["q", "v"],
    "modernbert": ["Wqkv"],
}


@dataclass
class AdapterArguments:
    """The adapter options of both training stages, mixed into their `TrainingArguments`."""

    adapter: str = field(
        default="none",
        metadata={
            "help": "Train a LoRA adapter (peft) instead of the whole model: the pretrained weights stay frozen, the "
            "head (and any fresh weights and new token rows) trains whole, and the adapter is saved, which "
            "`PeftModel.from_pretrained(base, DIR)` loads. LoRA usually wants a higher --learning_rate.",
            "choices": ["none", "lora"],
        },
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling: the update is multiplied by alpha / r."})
    lora_dropout: float = field(default=0.1, metadata={"help": "Dropout on the LoRA branch's input."})
    lora_target_modules: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated module names (or name endings) that get LoRA, or all-linear. Default: the "
            "attention's query and value projections of the architecture (bert/roberta: query,value; gpt2: c_attn; "
            "distilbert: q_lin,v_lin; ...)."
        },
    )
    merge_adapter: bool = field(
        default=False,
        metadata={
            "help": "Also save the adapter merged into its base as a plain model: OUTPUT_DIR/merged in pretrain, "
            "seed-S/model/merged in finetune (with --keep_models).",
            "fingerprint": "run",
        },
    )

    @property
    def uses_adapter(self) -> bool:
        return self.adapter != "none"

    def check_adapter(self) -> None:
        """One-line UsageErrors for bad adapter options, before anything is loaded or written."""
        if not self.uses_adapter:
            for option in ("merge_adapter", "lora_target_modules"):
                if getattr(self, option):
                    raise UsageError(f"--{option} needs --adapter lora")
            return
        if self.lora_r < 1:
            raise UsageError(f"--lora_r {self.lora_r}: the rank must be at least 1")
        if not self.lora_alpha > 0:
            raise UsageError(f"--lora_alpha {self.lora_alpha}: must be positive")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise UsageError(f"--lora_dropout {self.lora_dropout}: must be in [0, 1)")
        if self.lora_target_modules is not None and not requested_modules(self.lora_target_modules):
            raise UsageError("--lora_target_modules: empty; name the layers that get LoRA, e.g. query,value")


def requested_modules(value) -> list[str]:
    """`query,value` (or a YAML list) as a list of names."""
    names = value if isinstance(value, list | tuple) else str(value).split(",")
    return [name.strip() for name in names if str(name).strip()]


def default_target_modules(model_type: str) -> list[str] | None:
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    return ADDED_TARGET_MODULES.get(model_type) or TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type)


def _matches(name: str, target: str) -> bool:
    """peft's rule for a list of target names: the whole module name, or its ending after a dot."""
    return name == target or name.endswith(f".{target}")


def _is_linear(module) -> bool:
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, torch.nn.Linear | Conv1D)


def target_modules(model, requested) -> list[str] | str:
    """The LoRA targets: `requested` (names, or all-linear), else the architecture's default; a UsageError when there
    is no default, when a name matches no layer, or when it matches the vocabulary matrix shared by the input and
    output layers (a LoRA update there would leak into both sides on merging)."""
    model_type = model.config.model_type
    names = requested_modules(requested) if requested is not None else default_target_modules(model_type)
    if names is None:
        candidates = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if _is_linear(m)})
        raise UsageError(
            f"--lora_target_modules: no default for model type {model_type!r}; name the layers that get LoRA "
            f"(its linear layers: {', '.join(candidates)})"
        )
    if names == ["all-linear"]:
        return "all-linear"
    modules = dict(model.named_modules())
    tied = _tied_embedding_weight(model)
    for target in names:
        matched = [m for name, m in modules.items() if _matches(name, target)]
        if not matched:
            raise UsageError(f"--lora_target_modules: no module named {target!r} in this {model_type} model")
        if tied is not None and any(getattr(m, "weight", None) is tied for m in matched):
            raise UsageError(
                f"--lora_target_modules {target}: that layer shares its weights with the input embeddings "
                "(tied); a LoRA update there cannot be merged"
            )
    return names


def _tied_embedding_weight(model):
    """The input embedding matrix when the output layer shares it, else None."""
    output = model.get_output_embeddings()
    weight = model.get_input_embeddings().weight
    return weight if output is not None and output.weight is weight else None


def _vocabulary_matrices(model) -> set[int]:
    """ids of the input and output embedding matrices (one tensor when tied): never trained whole by an adapter."""
    output = model.get_output_embeddings()
    return {id(model.get_input_embeddings().weight), *([id(output.weight)] if output is not None else [])}


def trainable_modules(model, names: set[str]) -> tuple[list[str], list[str]]:
    """(modules, loose): the largest whole modules that hold only parameters in `names` and no vocabulary matrix
    (for peft's `modules_to_save`), and the parameters in `names` left over: those sitting directly in a module that
    also holds other weights, such as an MLM head's output bias beside its decoder."""
    params = dict(model.named_parameters())  # a tied tensor appears once
    modules = dict(model.named_modules())
    vocabulary = _vocabulary_matrices(model)
    base = getattr(model, "base_model_prefix", "")

    def own(module_name: str) -> bool:
        if module_name in ("", base):
            return False
        module = modules[module_name]
        inside = [f"{module_name}.{n}" for n, _ in module.named_parameters()]
        return all(n in names or n not in params for n in inside) and all(
            id(p) not in vocabulary for p in module.parameters()
        )

    chosen: set[str] = set()
    loose = []
    for name in sorted(names):
        parent = name.rsplit(".", 1)[0] if "." in name else ""
        if not own(parent):
            loose.append(name)
            continue
        while "." in parent and own(parent.rsplit(".", 1)[0]):
            parent = parent.rsplit(".", 1)[0]
        chosen.add(parent)
    top = sorted(m for m in chosen if not any(m.startswith(f"{other}.") for other in chosen))
    return top, loose


def head_parameters(model) -> set[str]:
    """Names of the parameters outside the base model (the MLM/LM head's), its vocabulary matrix excepted."""
    base = f"{model.base_model_prefix}."
    vocabulary = _vocabulary_matrices(model)
    return {name for name, p in model.named_parameters() if not name.startswith(base) and id(p) not in vocabulary}


def base_name(peft_name: str) -> str:
    """The name a parameter of a peft model has in the wrapped transformers model."""
    name = peft_name.removeprefix("base_model.model.")
    for wrapper in (".modules_to_save.default", ".original_module", ".token_adapter.base_layer", ".base_layer"):
        name = name.replace(wrapper, "")
    return name


@dataclass
class AdapterPlan:
    """What an adapter trains besides LoRA, as `plan_adapter` decided it: the parts of its LoraConfig."""

    target_modules: list[str] | str
    modules_to_save: list[str]
    output_bias: list[str]
    new_token_ids: list[int]
    untied_output: str | None  # an output layer not tied to the input embeddings, which gets the new rows too


def plan_adapter(model, args: AdapterArguments, train_whole: set[str], new_token_ids: list[int]) -> AdapterPlan:
    """Decide what trains (see the module docstring); `train_whole` names the parameters that must train whole."""
    modules, loose = trainable_modules(model, train_whole)
    rows = model.get_input_embeddings().weight.shape[0]
    bias = [n for n in loose if n.endswith("bias") and model.get_parameter(n).shape == (rows,)]
    others = sorted(set(loose) - set(bias))
    if others:
        raise UsageError(f"--adapter lora cannot train {', '.join(others)} (not a module of its own)")
    untied = None
    output = model.get_output_embeddings()
    if new_token_ids and output is not None and _tied_embedding_weight(model) is None:
        untied = next(name for name, m in model.named_modules() if m is output)
    return AdapterPlan(target_modules(model, args.lora_target_modules), modules, bias, new_token_ids, untied)


def lora_config(model, args: AdapterArguments, plan: AdapterPlan, task_type: str | None = None):
    from peft import LoraConfig

    tokens = plan.new_token_ids or None
    if tokens and plan.untied_output:
        embeddings = next(name for name, m in model.named_modules() if m is model.get_input_embeddings())
        tokens = {embeddings: plan.new_token_ids, plan.untied_output: plan.new_token_ids}
    targets = plan.target_modules
    modules = dict(model.named_modules())
    if isinstance(targets, str):
        chosen = [n for n, m in modules.items() if _is_linear(m)]
    else:
        chosen = [n for n in modules if any(_matches(n, t) for t in targets)]
    # A layer inside a module trained whole is trained whole, not through LoRA.
    exclude = [n for n in chosen if any(n.startswith(f"{m}.") or n == m for m in plan.modules_to_save)]
    return LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=targets,
        exclude_modules=exclude or None,
        fan_in_fan_out=any(type(modules[n]).__name__ == "Conv1D" for n in chosen),  # GPT-2's transposed layers
        modules_to_save=plan.modules_to_save or None,
        bias="all" if plan.output_bias else "none",
        trainable_token_indices=tokens,
        task_type=task_type,
    )


def add_adapter(model, args: AdapterArguments, plan: AdapterPlan, task_type: str | None = None):
    """`model` wrapped by peft with a fresh LoRA adapter that trains what `plan` says, and nothing else."""
    from peft import get_peft_model

    keep_output_bias()
    source = getattr(model, "name_or_path", None)
    config = lora_config(model, args, plan, task_type)
    try:
        peft_model = get_peft_model(model, config)
    except (ValueError, TypeError) as e:
        raise UsageError(f"--adapter lora: {str(e).strip().splitlines()[0]}") from None
    for name, param in peft_model.named_parameters():
        if param.requires_grad and base_name(name) not in plan.output_bias and not _adapter_parameter(name):
            param.requires_grad = False  # bias="all" marked every bias trainable; only the output bias trains
    if source and os.path.isdir(source):  # a local base is recorded absolute, so the adapter loads from anywhere
        peft_model.peft_config["default"].base_model_name_or_path = os.path.abspath(source)
    return peft_model


def _adapter_parameter(name: str) -> bool:
    return "lora_" in name or ".modules_to_save." in name or "trainable_tokens_delta" in name


def adapter_report(peft_model) -> dict:
    """What the adapter of `peft_model` trains, and how many parameters, against the base model's (tied tensors
    once); logged once, recorded in metrics.json or results.json."""
    config = peft_model.peft_config["default"]
    kinds = {"lora": 0, "head": 0, "new_token_rows": 0}
    base_parameters = 0
    for name, param in peft_model.named_parameters():
        if not _adapter_parameter(name):
            base_parameters += param.numel()
        if param.requires_grad:
            kind = "lora" if "lora_" in name else "new_token_rows" if "trainable_tokens_delta" in name else "head"
            kinds[kind] += param.numel()
    trainable = sum(kinds.values())
    targets = config.target_modules
    tokens = config.trainable_token_indices
    report = {
        "method": "lora",
        "r": config.r,
        "alpha": config.lora_alpha,
        "dropout": config.lora_dropout,
        "target_modules": sorted(targets) if isinstance(targets, set | list) else targets,
        "modules_to_save": sorted(  # peft adds its classifier names ("classifier", "score") whether they exist or not
            m for m in set(config.modules_to_save or []) if any(_matches(n, m) for n, _ in peft_model.named_modules())
        ),
        "output_bias": sorted(
            base_name(n) for n, p in peft_model.named_parameters() if p.requires_grad and not _adapter_parameter(n)
        ),
        "new_token_rows": len(next(iter(tokens.values())) if isinstance(tokens, dict) else tokens or []),
        "base_model": config.base_model_name_or_path,
        "trainable_parameters": trainable,
        "base_parameters": base_parameters,
        "trainable_share": trainable / base_parameters,
        **{f"trainable_{kind}": count for kind, count in kinds.items()},
    }
    also = [*report["modules_to_save"], *report["output_bias"]]
    also += [f"{report['new_token_rows']} new token rows"] if report["new_token_rows"] else []
    logger.info(
        "LoRA adapter (r %d, alpha %d, dropout %g) on %s; also trained: %s; %s of %s parameters train (%.2f%%)",
        config.r,
        config.lora_alpha,
        config.lora_dropout,
        ", ".join(report["target_modules"]) if isinstance(targets, set | list) else targets,
        ", ".join(also) or "nothing else",
        f"{trainable:,}",
        f"{base_parameters:,}",
        100 * report["trainable_share"],
    )
    return report


@dataclass
class PretrainingAdapter:
    """A masked or causal LM wrapped for `dontstop pretrain --adapter lora`, with what its callbacks need."""

    model: object  # the peft model
    new_params: set[str]  # the trainable counterparts of the newly initialised weights, for the head warm-up
    token_rows: dict  # {name: tensor} holding new-token rows: peft's deltas (new rows alone) and the output bias
    whole_rows: set[str]  # the names in token_rows that hold new rows alone
    report: dict


def add_pretraining_adapter(model, args: AdapterArguments, objective: str, new_params: set[str], new_token_ids):
    """Wrap a freshly loaded LM in a LoRA adapter whose head (and fresh weights, and new token rows) train too."""
    plan = plan_adapter(model, args, head_parameters(model) | new_params, list(new_token_ids))
    peft_model = add_adapter(model, args, plan, "CAUSAL_LM" if objective == "clm" else None)
    trainable = {name: p for name, p in peft_model.named_parameters() if p.requires_grad}
    deltas = {name for name in trainable if "trainable_tokens_delta" in name}
    bias = {name for name in trainable if base_name(name) in plan.output_bias}
    return PretrainingAdapter(
        model=peft_model,
        new_params={name for name in trainable if base_name(name) in new_params},
        token_rows={name: trainable[name] for name in deltas | bias},
        whole_rows=deltas,
        report=adapter_report(peft_model),
    )


def add_task_adapter(model, args: AdapterArguments, task_type: str, fresh: set[str]):
    """Wrap a classifier in a fresh LoRA adapter; its head, and any weight the checkpoint lacked (a fresh pooler),
    train whole."""
    plan = plan_adapter(model, args, head_parameters(model) | fresh, [])
    return add_adapter(model, args, plan, "TOKEN_CLS" if task_type == "token" else "SEQ_CLS")


def underlying_model(model):
    """The transformers model inside a peft model (or `model` itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def is_adapter_model(model) -> bool:
    return hasattr(model, "peft_config")


def merged_copy(peft_model):
    """A plain transformers model: a copy of `peft_model` with its adapter merged in (the original stays as it is)."""
    import copy

    return copy.deepcopy(peft_model).merge_and_unload()


def save_merged(peft_model, tokenizer, directory: str) -> None:
    merged = merged_copy(peft_model)
    merged.save_pretrained(directory)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    del merged
