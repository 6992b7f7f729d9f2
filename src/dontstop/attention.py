"""Attention confined to segments of a row: the examples of a padding-free batch, the documents of a packed block.

    dontstop pretrain ... --line_by_line --padding_free     (short texts: whole examples packed into rows)
    dontstop pretrain ... --packing documents               (packed blocks; no document attends to another)

A batch marks its segments with `segment_ids` (rows x length): the tokens of one segment share an id that no other
segment of the batch has; padding is -1. `SegmentAttention` turns them, on the device, into what the model's
attention implementation takes:

- flash attention (transformers' `flash_attention_2` / `flash_attention_3`): the rows flattened into one, padding
  dropped, with `cu_seq_lens_*` and `max_length_*`, the varlen kernel's own arguments, which transformers passes to
  every attention layer: nothing is computed for padding and no token attends across segments;
- anything else (SDPA, eager): a 4-D additive mask (rows x 1 x length x length), 0 where a query may see a key and the
  dtype's minimum elsewhere; transformers hands a 4-D mask to the attention unchanged (`masking_utils`).

Both give every segment position ids that restart at its first token, so an example packed behind another is encoded
as if it were alone (tests check loss and gradients against padded batches, within 1e-5).

The masks are the general mechanism: `visibility_mask` makes the additive mask of any query x key visibility (e.g.
appended definitions visible only to their term), `segment_visibility` is the block-diagonal case. A model called
with such a mask and position ids passes them on through the masked-only MLM head (`heads.py`) unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .errors import UsageError

logger = logging.getLogger(__name__)

# model_type -> the position id of a sequence's first token, from the config. Only architectures whose attention takes
# a 4-D mask unchanged and whose embeddings take position ids: ModernBERT's local attention and DeBERTa's relative
# positions build their own masks and are left out.
POSITION_START: dict[str, Callable[[object], int]] = {}


def register_positions(*model_types: str, start: Callable[[object], int] = lambda config: 0):
    for model_type in model_types:
        POSITION_START[model_type] = start


register_positions("bert", "megatron-bert", "distilbert", "albert", "electra")
# RoBERTa counts positions from padding_idx + 1 (`create_position_ids_from_input_ids`).
register_positions(
    "roberta", "xlm-roberta", "camembert", "roberta-prelayernorm", "xlm-roberta-xl",
    start=lambda config: config.pad_token_id + 1,
)  # fmt: skip


def uses_varlen(implementation: str) -> bool:
    """Whether an attention implementation is flash attention, which takes packed rows as varlen arguments."""
    return implementation.startswith("flash_attention")


def segment_positions(segment_ids: torch.Tensor) -> torch.Tensor:
    """Position of every token inside its segment (0 at a segment's first token); padding counts on from 0 too."""
    index = torch.arange(segment_ids.shape[-1], device=segment_ids.device).expand_as(segment_ids)
    starts = torch.ones_like(segment_ids, dtype=torch.bool)
    starts[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]
    return index - torch.where(starts, index, 0).cummax(dim=-1).values


def segment_visibility(segment_ids: torch.Tensor) -> torch.Tensor:
    """(rows, length, length) bool: query i sees key j when both are in one segment (padding sees only padding, so
    no row of the mask is empty)."""
    return segment_ids[:, :, None] == segment_ids[:, None, :]


def visibility_mask(visible: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The 4-D additive attention mask (rows, 1, queries, keys) of a boolean visibility (rows, queries, keys), in the
    dtype attention computes in: 0 where visible, the dtype's minimum elsewhere (as transformers' eager masks)."""
    mask = torch.zeros(visible.shape, dtype=dtype, device=visible.device)
    return mask.masked_fill_(~visible, torch.finfo(dtype).min)[:, None]


def varlen_arguments(segment_ids: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """(which tokens are kept, flash attention's varlen arguments) for the rows flattened into one without padding."""
    flat = segment_ids.reshape(-1)
    keep = flat >= 0
    kept = flat[keep]
    boundaries = torch.nonzero(kept[1:] != kept[:-1]).squeeze(-1) + 1
    total = torch.tensor([kept.numel()], device=kept.device)
    cu = torch.cat([boundaries.new_zeros(1), boundaries, total]).to(torch.int32)
    longest = int(cu.diff().max()) if kept.numel() else 0
    return keep, {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": longest, "max_length_k": longest}


@dataclass(frozen=True)
class SegmentAttention:
    """Replaces a batch's `segment_ids` (and its 2-D attention mask) by the model inputs that confine attention to
    each segment: see the module docstring. `mask_dtype` is the dtype of the model's weights: under autocast (--bf16)
    SDPA casts the mask with its other inputs (the minimum becoming -inf, harmless: every query sees itself)."""

    varlen: bool
    position_start: int = 0
    mask_dtype: torch.dtype = torch.float32

    @classmethod
    def for_model(cls, model) -> SegmentAttention:
        config = model.config
        return cls(uses_varlen(config._attn_implementation), POSITION_START[config.model_type](config), model.dtype)

    def __call__(self, inputs: dict) -> dict:
        inputs = dict(inputs)
        segment_ids = inputs.pop("segment_ids")
        inputs.pop("attention_mask", None)
        positions = segment_positions(segment_ids) + self.position_start
        if not self.varlen:
            mask = visibility_mask(segment_visibility(segment_ids), self.mask_dtype)
            return {**inputs, "attention_mask": mask, "position_ids": positions}
        keep, arguments = varlen_arguments(segment_ids)
        shape = segment_ids.shape
        flat = {
            name: value.reshape(-1)[keep][None] if torch.is_tensor(value) and value.shape == shape else value
            for name, value in inputs.items()
        }
        return {**flat, "position_ids": positions.reshape(-1)[keep][None], **arguments}


def check_segment_support(model, options: str) -> None:
    """A one-line UsageError unless attention confined to segments works for this model."""
    model_type = model.config.model_type
    if model_type not in POSITION_START:
        raise UsageError(
            f"{options}: not for model type {model_type!r} (its attention builds its own masks); supported: "
            f"{', '.join(sorted(POSITION_START))}"
        )


def flash_attention_available() -> bool:
    from transformers.utils import is_flash_attn_2_available

    return torch.cuda.is_available() and is_flash_attn_2_available()


def check_implementation(requested: str) -> None:
    """Flash attention asked for where it cannot run is a one-line error, before anything is loaded."""
    if uses_varlen(requested) and not torch.cuda.is_available():
        raise UsageError(f"--attn_implementation {requested} needs a CUDA GPU (use sdpa, the default, on CPU)")
    if requested == "flash_attention_2" and not flash_attention_available():
        raise UsageError("--attn_implementation flash_attention_2 needs flash-attn (pip install flash-attn)")


def set_implementation(model, requested: str, segmented: bool, half_precision: bool) -> str:
    """Set the model's attention implementation and return it: `requested` if given; with `auto`, transformers'
    default (SDPA where the architecture has it), except that segmented batches take flash attention's varlen kernel
    where it can run (CUDA, flash-attn installed, bf16/fp16 compute), logged either way."""
    implementation = requested
    if requested == "auto":
        implementation = model.config._attn_implementation
        if segmented and half_precision and flash_attention_available() and model._supports_flash_attn:
            implementation = "flash_attention_2"
    if implementation != model.config._attn_implementation:
        try:
            model.set_attn_implementation(implementation)
        except (ImportError, ValueError) as e:
            raise UsageError(f"--attn_implementation {implementation}: {str(e).strip().splitlines()[0]}") from None
    if segmented:
        how = "flash attention's varlen kernel" if uses_varlen(implementation) else f"{implementation} with a 4-D mask"
        logger.info("Attention confined to each segment through %s", how)
    else:  # the model's own: news only when debugging
        logger.debug("Attention implementation: %s", implementation)
    return implementation
