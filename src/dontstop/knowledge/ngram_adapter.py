"""The n-gram adapter of T-DNA (Diao et al. 2021, "Taming Pre-trained Language Models with N-gram Representations for
Low-Resource Domain Adaptation"): domain n-grams get embeddings of their own, a small Transformer encodes the n-grams
found in an example, and each encoder layer's n-gram representations are added to the hidden states that the
model's corresponding layer puts out, at every position the n-gram covers (ZEN's way of mixing them in).

    dontstop mine --corpus domain=docs.jsonl --model_name_or_path M --output_dir runs/mine
    dontstop pretrain --model_name_or_path M --train_file docs.jsonl --ngram_adapter --ngrams runs/mine/words.tsv ...
    dontstop finetune --model_name_or_path runs/tapt-ngram ...        # loads the adapter saved beside the model

The n-grams are the best `--ngram_vocab_size` entries of a `dontstop mine` words.tsv (or a word list) that the
tokenizer splits into 2 to 16 pieces, found in the model's own `input_ids` as `terms.py` finds terms (whole words
only), so the adapter works inside any forward call: the Trainer's, the masked-only head's, a pipeline's. It is a
submodule of the model (`model.ngram_adapter`: its optimizer, device, checkpoints and averaged weights come with the
model) attached by hooks: a pre-hook on the base model finds the n-grams and runs the encoder; a hook on each of the
first `--ngram_layers` layers adds its share. Each share passes through a projection that starts at zero, so a fresh
adapter leaves the model's outputs exactly as they were (and so does one whose weights are all zero: a test checks
it); the model can be frozen under it (`--ngram_freeze_model`).

Saved beside the model (`ngram_adapter.safetensors` and `ngram_adapter.json`: the n-grams as token ids and words,
the sizes), not inside it, so the model directory still loads with plain `from_pretrained`; `models.load_pretrained`
attaches it again wherever dontstop loads that directory (`dontstop finetune`, `lm-eval`, a further `pretrain`), and
`load_ngram_adapter(model, directory)` does so for any other code.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import UsageError

logger = logging.getLogger(__name__)

ATTRIBUTE = "ngram_adapter"
CONFIG_FILE = "ngram_adapter.json"
WEIGHTS_FILE = "ngram_adapter.safetensors"
HASH_MODULUS = 2_147_483_647  # a prime below 2^31: token id x power stays far inside int64, with no overflow
HASH_BASE = 1_000_003


@dataclass
class NgramAdapterArguments:
    """The n-gram adapter options of `dontstop pretrain`, mixed into its model options."""

    ngram_adapter: bool = field(
        default=False,
        metadata={"help": "Add a T-DNA n-gram adapter: embeddings of --ngrams and a small encoder whose n-gram "
                  "representations are added to the hidden states of the first --ngram_layers layers."},
    )  # fmt: skip
    ngrams: str | None = field(
        default=None,
        metadata={"help": "The adapter's n-grams: words.tsv of `dontstop mine` (best first) or one per line.",
                  "path": "file"},
    )  # fmt: skip
    ngram_vocab_size: int = field(
        default=10_000, metadata={"bounds": "[1, inf)", "help": "Most n-grams taken from --ngrams, in its order."}
    )
    ngram_layers: int = field(
        default=2,
        metadata={"bounds": "[1, inf)", "help": "Layers of the n-gram encoder; layer l feeds the model's layer l."},
    )
    ngram_freeze_model: bool = field(
        default=False,
        metadata={"help": "Train only the n-gram adapter (and weights the checkpoint lacked, such as a fresh MLM "
                  "head); the pretrained weights stay frozen."},
    )  # fmt: skip

    def check_ngram_adapter(self) -> None:
        if not self.ngram_adapter:
            if self.ngrams or self.ngram_freeze_model:
                raise UsageError("--ngrams and --ngram_freeze_model need --ngram_adapter")
            return
        if not self.ngrams:
            raise UsageError("--ngram_adapter needs --ngrams FILE (words.tsv of `dontstop mine`)")
        from .sources import lines_of

        if not any(True for _ in lines_of(self.ngrams, "--ngrams")):
            raise UsageError(f"--ngrams {self.ngrams}: no n-grams")


def read_ngrams(path: str, limit: int) -> list[str]:
    """The first column of a words.tsv (its header skipped) or of a word list, in order, at most `limit`."""
    from .sources import lines_of

    words: list[str] = []
    for lineno, line in lines_of(path, "--ngrams"):
        word = line.split("\t", 1)[0].strip()
        if lineno == 1 and word == "word" and "\t" in line:
            continue
        if word and word not in words:
            words.append(word)
        if len(words) == limit:
            break
    return words


def ngram_token_ids(tokenizer, words: list[str]) -> tuple[list[str], list[list[int]]]:
    """(words, token ids) of the words the tokenizer splits into 2 to 16 pieces (one piece has its embedding)."""
    from .terms import term_variants

    kept, ids, seen = [], [], set()
    for word in words:
        variants = term_variants(tokenizer, word)
        if variants and len(variants[0][0]) >= 2 and variants[0][0] not in seen:
            seen.add(variants[0][0])
            kept.append(word)
            ids.append(list(variants[0][0]))
    return kept, ids


def layer_list(model) -> nn.ModuleList:
    """The model's stack of Transformer layers: the ModuleList of its base model as long as it has layers."""
    config = model.config
    count = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", None) or config.n_layer
    for _, module in model.base_model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return module
    raise UsageError(f"--ngram_adapter: no stack of {count} layers found in this {config.model_type} model")


class NgramAdapter(nn.Module):
    def __init__(self, ngrams: list[list[int]], words: list[str], continues: torch.Tensor, hidden: int, heads: int,
                 layers: int, dropout: float = 0.1):  # fmt: skip
        super().__init__()
        self.words = words
        self.settings = {"hidden_size": hidden, "heads": heads, "layers": layers, "dropout": dropout}
        longest = max(len(n) for n in ngrams)
        table = torch.full((len(ngrams), longest), -1, dtype=torch.long)
        for i, ids in enumerate(ngrams):
            table[i, : len(ids)] = torch.tensor(ids)
        self.register_buffer("ngram_ids", table)  # each n-gram's token ids, -1 after its end
        self.register_buffer("continues", continues.bool())  # per token id: continues the word before it
        self.embeddings = nn.Embedding(len(ngrams), hidden)
        self.encoder = nn.ModuleList(
            nn.TransformerEncoderLayer(hidden, heads, 4 * hidden, dropout, activation="gelu", batch_first=True)
            for _ in range(layers)
        )
        self.outputs = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        for linear in self.outputs:  # a fresh adapter adds nothing: the model starts as it was
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)
        nn.init.normal_(self.embeddings.weight, std=0.02)
        self.shares: list[torch.Tensor | None] = []  # per layer: what to add to the model's layer output, this call

    @property
    def config(self) -> dict:
        ngrams = [[i for i in row if i >= 0] for row in self.ngram_ids.tolist()]
        return {**self.settings, "ngrams": ngrams, "words": self.words}

    def find(self, input_ids: torch.Tensor):
        """(row, start, length, n-gram) of every n-gram in `input_ids` (rows x length), whole words only."""
        rows, length = input_ids.shape
        lengths = (self.ngram_ids >= 0).sum(1)
        found = []
        for n in sorted(set(lengths.tolist())):
            if n > length:
                continue
            candidates = torch.nonzero(lengths == n).squeeze(1)
            windows = input_ids.unfold(1, n, 1)  # rows x starts x n
            keys, table = window_hash(windows), window_hash(self.ngram_ids[candidates, :n])
            order = torch.argsort(table)
            at = torch.searchsorted(table[order], keys).clamp(max=len(table) - 1)
            which = candidates[order[at]]
            hit = (self.ngram_ids[which, :n] == windows).all(-1)
            ends = torch.arange(n, length + 1, device=input_ids.device)
            after = torch.cat([input_ids[:, n:], input_ids.new_zeros(rows, 1)], 1)  # the token after each window
            hit &= ~(self.continues[after.clamp(min=0)] & (ends < length))
            row, start = torch.nonzero(hit, as_tuple=True)
            found.append((row, start, torch.full_like(row, n), which[row, start]))
        return [torch.cat(parts) for parts in zip(*found, strict=True)] if found else None

    def prepare(self, input_ids: torch.Tensor) -> None:
        """Find the n-grams of this forward call and encode them: `shares[l]` is added to the output of layer l."""
        self.shares = [None] * len(self.encoder)
        matches = self.find(input_ids) if input_ids is not None else None
        if matches is None or len(matches[0]) == 0:
            return
        row, start, n, which = matches
        rows, length = input_ids.shape
        # The n-grams of each row side by side, padded, so the encoder lets each see only its row's others; rows
        # without any are left out (a row of padding alone would give the attention nothing to weigh).
        order = torch.argsort(row, stable=True)
        row, start, n, which = row[order], start[order], n[order], which[order]
        present, dense = torch.unique_consecutive(row, return_inverse=True)
        per_row = torch.bincount(dense, minlength=len(present))
        column = torch.arange(len(row), device=row.device) - (torch.cumsum(per_row, 0) - per_row)[dense]
        states = self.embeddings.weight.new_zeros(len(present), int(per_row.max()), self.embeddings.embedding_dim)
        states[dense, column] = self.embeddings(which)
        padding = torch.ones(states.shape[:2], dtype=torch.bool, device=row.device)
        padding[dense, column] = False
        # Each n-gram's positions: the tokens it covers, as flat indices into rows x length.
        covered = torch.repeat_interleave(torch.arange(len(row), device=row.device), n)
        offsets = torch.arange(len(covered), device=row.device) - torch.repeat_interleave(torch.cumsum(n, 0) - n, n)
        flat = row[covered] * length + start[covered] + offsets
        for layer, (encode, output) in enumerate(zip(self.encoder, self.outputs, strict=True)):
            states = encode(states, src_key_padding_mask=padding)
            share = output(states[dense, column])[covered]
            self.shares[layer] = states.new_zeros(rows * length, share.shape[-1]).index_add(0, flat, share)

    def add(self, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        share = self.shares[layer] if layer < len(self.shares) else None
        return hidden if share is None else hidden + share.view_as(hidden).to(hidden.dtype)


def window_hash(windows: torch.Tensor) -> torch.Tensor:
    """A polynomial hash of each window of token ids (last dimension), modulo a prime: a sort key; equality of the
    ids themselves is checked after."""
    n = windows.shape[-1]
    powers = torch.tensor([pow(HASH_BASE, n - 1 - i, HASH_MODULUS) for i in range(n)], device=windows.device)
    return ((windows.clamp(min=0) % HASH_MODULUS) * powers).sum(-1) % HASH_MODULUS


def attach(model, adapter: NgramAdapter) -> NgramAdapter:
    """Make `adapter` part of `model`: a submodule, fed by a pre-hook on the base model and adding to its layers."""
    model.add_module(ATTRIBUTE, adapter)

    def prepare(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        adapter.prepare(ids if torch.is_tensor(ids) and ids.dim() == 2 else None)

    def adds(index):
        def hook(module, args, output):
            if isinstance(output, tuple):
                return (adapter.add(index, output[0]), *output[1:])
            return adapter.add(index, output)

        return hook

    model.base_model.register_forward_pre_hook(prepare, with_kwargs=True)
    for index, layer in enumerate(layer_list(model)[: len(adapter.encoder)]):
        layer.register_forward_hook(adds(index))
    return adapter


def new_ngram_adapter(model, tokenizer, args: NgramAdapterArguments) -> NgramAdapter:
    """A fresh adapter for `model`, its n-grams read from --ngrams, attached."""
    from .terms import continuation_table

    words, ids = ngram_token_ids(tokenizer, read_ngrams(args.ngrams, args.ngram_vocab_size))
    if not ids:
        raise UsageError(f"--ngrams {args.ngrams}: no entry is split by the tokenizer into 2 or more pieces")
    config = model.config
    continues = torch.as_tensor(continuation_table(tokenizer))
    adapter = NgramAdapter(ids, words, continues, config.hidden_size, config.num_attention_heads, args.ngram_layers)
    logger.info("N-gram adapter: %d n-grams, %d encoder layers, %s parameters", len(ids), args.ngram_layers,
                f"{sum(p.numel() for p in adapter.parameters()):,}")  # fmt: skip
    return attach(model, adapter.to(device=model.device, dtype=model.dtype))


def ngram_adapter_of(model) -> NgramAdapter | None:
    return getattr(model, ATTRIBUTE, None)


def save_ngram_adapter(adapter: NgramAdapter, directory: str) -> None:
    from safetensors.torch import save_file

    os.makedirs(directory, exist_ok=True)
    tensors = {name: value.detach().contiguous().cpu() for name, value in adapter.state_dict().items()}
    save_file(tensors, os.path.join(directory, WEIGHTS_FILE), metadata={"format": "pt"})
    with open(os.path.join(directory, CONFIG_FILE), "w", encoding="utf-8") as f:
        json.dump(adapter.config, f, ensure_ascii=False)


def load_ngram_adapter(model, directory: str) -> NgramAdapter | None:
    """Attach the adapter saved in `directory` to `model` (one loaded from that directory); None if it has none."""
    from safetensors.torch import load_file

    path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    tensors = load_file(os.path.join(directory, WEIGHTS_FILE))
    adapter = NgramAdapter(
        config["ngrams"], config["words"], tensors["continues"], config["hidden_size"], config["heads"],
        config["layers"], config["dropout"],
    )  # fmt: skip
    adapter.load_state_dict(tensors)
    logger.info("N-gram adapter loaded from %s (%d n-grams)", directory, len(config["words"]))
    return attach(model, adapter.to(device=model.device, dtype=model.dtype))


@contextlib.contextmanager
def detached(model):
    """`model` without its adapter for the while (to save the model's own weights), then with it again."""
    adapter = model._modules.pop(ATTRIBUTE, None)
    try:
        yield adapter
    finally:
        if adapter is not None:
            model._modules[ATTRIBUTE] = adapter


class SavesNgramAdapter:
    """A Trainer mixin: a saved model leaves its n-gram adapter out of its own weights and beside them instead.
    Checkpoints (internal saves) keep it inside, where resuming loads it back with the model."""

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        adapter = ngram_adapter_of(self.model)
        if adapter is None or _internal_call:
            return super().save_model(output_dir, _internal_call)
        with detached(self.model):
            super().save_model(output_dir, _internal_call)
        if self.is_world_process_zero():
            save_ngram_adapter(adapter, output_dir or self.args.output_dir)
