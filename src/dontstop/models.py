"""Loading models and tokenizers, for every stage: one resolver of names, one treatment of adapter directories, one
load error.

A model is named by a hub id, a local directory, or `pkg:NAME` (the model shipped inside an installed Python
package). A LoRA adapter directory (`dontstop pretrain --adapter lora`) stands for its base model with the adapter
merged in: every stage that loads a model takes one. Decoders without a pad token pad with their end-of-text token
(padding is never a label). Whatever goes wrong while loading is one `UsageError`: "cannot load model NAME: why".
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

from .config import first_line
from .errors import UsageError

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
MERGED_DIR = "merged"  # where a run that trained an adapter also saves it merged into its base: a plain model
# What `dontstop vocab extend` writes beside the model; `dontstop pretrain --train_new_embeddings_only_steps` reads it.
VOCAB_FILE = "dontstop_vocab.json"


def resolve_model_path(name: str) -> str:
    """`pkg:NAME` is the model directory shipped inside the installed Python package NAME (its `model/` folder,
    or the package folder itself); anything else is returned as is (a hub id or a local directory)."""
    import importlib.util

    if not name.startswith("pkg:"):
        return name
    package = name[len("pkg:") :]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(f"{name}: no installed Python package {package!r} (pip install {package.replace('_', '-')})")
    root = list(spec.submodule_search_locations)[0]
    for candidate in (os.path.join(root, "model"), root):
        if os.path.exists(os.path.join(candidate, "config.json")):
            return candidate
    raise UsageError(f"{name}: package {package!r} holds no model (no config.json in it or in its model/ folder)")


def hub_base_model(name: str | None) -> str | None:
    """The `base_model:` of a model card for a model continued from `name`: a hub id as is; a local directory's
    own card's `base_model:` (so a chain of local stages names the hub model it started from); else None (a model
    card's base_model must be a hub id)."""
    import re

    if not name:
        return None
    try:
        path = resolve_model_path(name)
    except UsageError:
        return None
    if os.path.isdir(path):
        card = os.path.join(path, "README.md")
        if not os.path.exists(card):
            return None
        with open(card, encoding="utf-8", errors="replace") as f:
            head = f.read(4096)
        front = re.match(r"---\n(.*?)\n---", head, re.S)
        found = re.search(r"^base_model:\s*(\S+)\s*$", front.group(1), re.M) if front else None
        return found.group(1) if found else None
    return name if re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", name) else None


def load_failure(source: str, error: BaseException) -> UsageError:
    return UsageError(f"cannot load model {source!r}: {first_line(error)}")


def infer_objective(config) -> str:
    """'mlm' for encoders, 'clm' for decoders, from the config's architectures and model type."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    for arch in config.architectures or []:
        if arch.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")):
            return "clm"
        if arch.endswith(("ForMaskedLM", "ForPreTraining")):
            return "mlm"
    if config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(config, "is_decoder", False):
        return "mlm"
    if config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "clm"
    raise ValueError(f"model type {config.model_type!r} has neither a masked-LM nor a causal-LM head in transformers")


# --- adapter directories --------------------------------------------------------------------------------------------


@dataclass
class DomainAdapter:
    """An adapter directory given as a model: where it is and the base model it adapts."""

    path: str
    base: str


def read_adapter(path: str) -> DomainAdapter | None:
    """The adapter in directory `path`, or None when `path` is not an adapter directory."""
    if not os.path.isfile(os.path.join(path, ADAPTER_CONFIG)):
        return None
    with open(os.path.join(path, ADAPTER_CONFIG), encoding="utf-8") as f:
        config = json.load(f)
    if config.get("peft_type") != "LORA":
        raise UsageError(f"{path}: a {config.get('peft_type')} adapter; only LoRA adapters can be merged here")
    base = config.get("base_model_name_or_path")
    # `dontstop pretrain` records a pkg:NAME base resolved; if that install moved, the name still finds it.
    recorded = os.path.join(path, "dontstop_config.json")
    if base and not os.path.exists(base) and os.path.isfile(recorded):
        with open(recorded, encoding="utf-8") as f:
            spec = json.load(f).get("model", {}).get("model_name_or_path") or ""
        if spec.startswith("pkg:"):
            base = resolve_model_path(spec)
    if not base:
        raise UsageError(f"{path}/{ADAPTER_CONFIG} names no base model (base_model_name_or_path)")
    return DomainAdapter(path, resolve_model_path(base))


def merge_domain_adapter(model, domain: DomainAdapter, keep_head: bool = False):
    """`model` (loaded from the domain adapter's base) with the domain adapter merged into its weights. Into a model
    with another head (a classifier), only the parts that exist there apply: the adapter's own head modules are left
    out (`keep_head` False). Into the language model it was trained with, they come too (`keep_head` True)."""
    from peft import PeftConfig, PeftModel

    keep_output_bias()
    config = PeftConfig.from_pretrained(domain.path)
    config.task_type = None  # merged at once: no task wrapper
    if not keep_head:
        config.modules_to_save = None
    try:
        wrapped = PeftModel.from_pretrained(model, domain.path, config=config)
    except (OSError, ValueError, RuntimeError) as e:
        raise UsageError(f"cannot apply the adapter {domain.path!r} to {domain.base!r}: {first_line(e)}") from None
    return wrapped.merge_and_unload().requires_grad_(True)  # peft froze the base; what comes next decides


def keep_output_bias() -> None:
    """Make peft's trainable-token layer keep an output layer's bias (huggingface/peft#3649, open in peft 0.21).

    For a tied output layer with a bias (the MLM heads of BERT, RoBERTa, DistilBERT) peft computes the new rows' logits
    as `F.linear(x, W)`, dropping the bias, until the adapter is merged. The fix adds the bias back in that one path.
    It is applied only when a probe shows the installed peft has the bug, so a fixed peft is left alone. A process
    that loads such an adapter (new token rows on a head with an output bias) without importing dontstop needs a
    fixed peft, or the merged model.
    """
    import torch
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

    if getattr(TrainableTokensLayer, "_dontstop_keeps_bias", None) is not None:
        return
    with torch.random.fork_rng(devices=[]):  # the probe's initialisation must not shift the run's random numbers
        probe = TrainableTokensLayer(torch.nn.Linear(2, 3), "probe")
    probe.update_layer("probe", token_indices=[0])
    with torch.no_grad():
        torch.nn.init.ones_(probe.base_layer.bias)
        inputs = torch.ones(1, 2)
        fixed = torch.equal(probe(inputs), probe.base_layer(inputs))
    TrainableTokensLayer._dontstop_keeps_bias = fixed
    if fixed:
        return
    unpatched = TrainableTokensLayer.forward_adapters

    def forward_adapters(self, x, active_adapters, *args, **kwargs):
        result = unpatched(self, x, active_adapters, *args, **kwargs)
        layer = self.base_layer
        dropped = (
            isinstance(layer, torch.nn.Linear)
            and layer.bias is not None
            and active_adapters
            and not self.disable_adapters
            and not self.merged
        )
        return result + layer.bias if dropped else result

    TrainableTokensLayer.forward_adapters = forward_adapters
    logger.debug("peft drops an output layer's bias beside trainable tokens (huggingface/peft#3649): fixed here")


# --- loading ----------------------------------------------------------------------------------------------------


def weights_source(source: str) -> tuple[str, DomainAdapter | None]:
    """(the directory or hub id holding the weights and config, the adapter to merge into them if any)."""
    domain = read_adapter(source) if os.path.isdir(source) else None
    return (domain.base if domain else source), domain


def tokenizer_source(source: str, tokenizer_name: str | None = None) -> str:
    """Where the tokenizer of `source` lives: `tokenizer_name` if given; an adapter directory's own tokenizer, else
    its base model's."""
    if tokenizer_name:
        return resolve_model_path(tokenizer_name)
    base, domain = weights_source(source)
    if domain and not os.path.isfile(os.path.join(source, "tokenizer_config.json")):
        return base
    return source


def load_tokenizer(source: str, shown: str | None = None, **kwargs):
    """The tokenizer at `source` (resolved), padding with its end-of-text token when it has no pad token."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(source), **kwargs)
    except (OSError, ValueError) as e:
        raise load_failure(shown or source, e) from None
    if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token  # decoders such as GPT-2 ship no pad token; padding is never a label
    return tokenizer


def load_config(source: str, **kwargs):
    """The config of `source` (an adapter directory: its base model's), with `kwargs` set."""
    from transformers import AutoConfig

    source = resolve_model_path(source)
    try:
        return AutoConfig.from_pretrained(weights_source(source)[0], **kwargs)
    except (OSError, ValueError) as e:
        raise load_failure(source, e) from None


def load_pretrained(auto, source: str, keep_head: bool = False, **kwargs):
    """(model, loading info) of `auto` (an Auto class) from `source`; an adapter directory's base with the adapter
    merged in (its head modules too with `keep_head`). The info's missing keys name the weights the checkpoint
    lacked, freshly initialised."""
    source = resolve_model_path(source)
    base, domain = weights_source(source)
    try:
        model, info = auto.from_pretrained(base, output_loading_info=True, **kwargs)
    except (OSError, ValueError) as e:
        raise load_failure(source, e) from None
    if domain is not None:
        model = merge_domain_adapter(model, domain, keep_head)
    if os.path.isdir(base):  # an n-gram adapter saved beside the weights (`dontstop pretrain --ngram_adapter`)
        from .knowledge.ngram_adapter import load_ngram_adapter

        load_ngram_adapter(model, base)
    return model, info


@dataclass
class LanguageModel:
    """A masked or causal LM ready to train or evaluate."""

    model: object
    tokenizer: object
    objective: str  # mlm or clm
    new_params: set[str]  # parameters absent from the checkpoint (a sentence encoder's MLM head), freshly initialised
    source: str


def load_language_model(
    model_name_or_path: str | None,
    config_name: str | None = None,
    tokenizer_name: str | None = None,
    objective: str = "auto",
) -> LanguageModel:
    """A model with its LM head: from a checkpoint (an adapter directory merged), or freshly initialised from
    `config_name`. Seed the random generators first: the seed fixes any new weights."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    source = config_name or model_name_or_path
    if source is None:
        raise UsageError("--model_name_or_path (or --config_name) is required")
    source = resolve_model_path(source)
    config = load_config(source)
    tokenizer_at = tokenizer_source(resolve_model_path(model_name_or_path or source), tokenizer_name)
    tokenizer = load_tokenizer(tokenizer_at)
    try:
        objective = infer_objective(config) if objective == "auto" else objective
    except ValueError as e:
        raise UsageError(f"{source}: {e}") from None
    if objective == "mlm" and tokenizer.mask_token_id is None:
        raise UsageError(
            f"{tokenizer_at}: the tokenizer has no mask token, so it cannot train a masked LM "
            "(use --objective clm for a decoder)"
        )
    auto = AutoModelForMaskedLM if objective == "mlm" else AutoModelForCausalLM
    if config_name:
        return LanguageModel(auto.from_config(config), tokenizer, objective, set(), source)  # all new: no warm-up
    model, info = load_pretrained(auto, source, keep_head=True)
    missing = set(info["missing_keys"])
    new_params = {name for name, _ in model.named_parameters() if name in missing}
    if new_params:
        # The stage says what it does about them (a head warm-up) in its own words; the names are for debugging.
        logger.debug("Newly initialised weights (absent from the checkpoint): %s", ", ".join(sorted(new_params)))
    return LanguageModel(model, tokenizer, objective, new_params, source)


def read_vocab_extension(model_name_or_path: str | None) -> tuple[list[int], list[str]]:
    """(ids of the tokens `dontstop vocab extend` added, head tensors it initialised fresh) from the model's
    directory; ([], []) for any other model."""
    if not model_name_or_path:
        return [], []
    path = os.path.join(resolve_model_path(model_name_or_path), VOCAB_FILE)
    if not os.path.isfile(path):
        return [], []
    with open(path, encoding="utf-8") as f:
        extension = json.load(f)
    return extension["new_token_ids"], extension.get("untrained_parameters", [])


# --- weights the training does not touch --------------------------------------------------------------------------

WEIGHT_FILES = ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin")
CARRIED_FILE = "model-carried.safetensors"


def checkpoint_file(source: str, name: str) -> str | None:
    """A file of the checkpoint at `source` (a directory, or a hub id resolved through the local hub cache)."""
    if os.path.isdir(source):
        path = os.path.join(source, name)
        return path if os.path.isfile(path) else None
    from transformers.utils import cached_file

    try:
        return cached_file(source, name, _raise_exceptions_for_missing_entries=False)
    except OSError:
        return None


def checkpoint_tensors(source: str) -> dict:
    """Every tensor of a checkpoint, by the name it has in the file (an adapter directory: its base model's)."""
    import torch
    from safetensors.torch import load_file

    base, _ = weights_source(resolve_model_path(source))
    for name in WEIGHT_FILES:
        path = checkpoint_file(base, name)
        if path is None:
            continue
        if name.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
            tensors = {}
            for shard in shards:
                tensors.update(load_file(checkpoint_file(base, shard)))
            return tensors
        return load_file(path) if name.endswith(".safetensors") else torch.load(path, weights_only=True)
    return {}


def carry_unused_weights(source: str, directory: str, objective: str) -> list[str]:
    """Copy into the model saved in `directory` every weight of the checkpoint `source` that its LM architecture does
    not hold (BERT's pooler, a next-sentence head): `BertForMaskedLM` has no pooler, so without this a model adapted
    by continued pretraining would be fine-tuned with a random pooler where the original is fine-tuned with its
    trained one, and the comparison would measure that. Returns the names copied (unchanged)."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

    config = AutoConfig.from_pretrained(directory)
    auto = AutoModelForMaskedLM if objective == "mlm" else AutoModelForCausalLM
    with torch.device("meta"):  # the architecture's names, no memory
        model = auto.from_config(config)
    defined, prefix = set(model.state_dict()), model.base_model_prefix
    tensors = checkpoint_tensors(source)
    if prefix and not any(key.startswith(f"{prefix}.") for key in tensors):
        tensors = {f"{prefix}.{key}": value for key, value in tensors.items()}  # a base model's file (BertModel)
    carried = {key: value.contiguous() for key, value in tensors.items() if key not in defined}
    if not carried:
        return []
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.isfile(index):  # sharded: one more shard, named in the index
        save_file(carried, os.path.join(directory, CARRIED_FILE), metadata={"format": "pt"})
        with open(index, encoding="utf-8") as f:
            mapping = json.load(f)
        mapping["weight_map"].update(dict.fromkeys(carried, CARRIED_FILE))
        with open(index, "w", encoding="utf-8") as f:
            json.dump(mapping, f, indent=2)
    else:
        path = os.path.join(directory, "model.safetensors")
        save_file({**load_file(path), **carried}, f"{path}.tmp", metadata={"format": "pt"})
        os.replace(f"{path}.tmp", path)
    logger.info("Carried unchanged from %s (no use in the %s head): %s", source, objective.upper(), ", ".join(carried))
    return sorted(carried)
