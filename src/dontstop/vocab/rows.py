"""The model side of a vocabulary extension: the tensors with one row per token, the words added to the tokenizer,
and each new row set to the mean of the old pieces' rows."""

from __future__ import annotations

from dataclasses import dataclass

from .words import Addition, _encode


def token_row_parameters(model) -> dict:
    """{name: parameter} of every tensor with one row per token: the input embeddings, the output embeddings when
    they are not tied to them, and the output biases (1-D `bias` tensors of the head, outside the base model).
    Tied tensors appear once."""
    rows = model.get_input_embeddings().weight.shape[0]
    wanted = {id(model.get_input_embeddings().weight)}
    output = model.get_output_embeddings()
    if output is not None:
        wanted.add(id(output.weight))
    base = f"{model.base_model_prefix}."
    return {
        name: param
        for name, param in model.named_parameters()  # named_parameters lists a tied tensor once
        if id(param) in wanted
        or (param.dim() == 1 and len(param) == rows and name.endswith("bias") and not name.startswith(base))
    }


def add_to_tokenizer(tokenizer, additions: list[Addition]) -> None:
    """Add the words as tokens, set each `Addition.id`, and check each word now encodes as its one new token."""
    from transformers import AddedToken

    old_size = len(tokenizer)
    tokenizer.add_tokens(
        [AddedToken(a.token, single_word=a.single_word, lstrip=a.lstrip, normalized=a.normalized) for a in additions]
    )
    for a in additions:
        a.id = tokenizer.convert_tokens_to_ids(a.token)
    ids = [a.id for a in additions]
    if len(set(ids)) != len(ids) or min(ids) < old_size:
        raise RuntimeError("the tokenizer reused existing ids for added words")
    # At the start of a text and after a space: the places `single_word`, `lstrip` and `normalized` decide.
    wrong = [
        a.word
        for a in additions
        if _encode(tokenizer, a.word) != [a.id]
        or (a.single_word and _encode(tokenizer, f"a {a.word}") != _encode(tokenizer, "a") + [a.id])
    ]
    if wrong:
        raise RuntimeError(f"added words that do not encode as their new token: {', '.join(wrong[:10])}")


@dataclass
class Extension:
    """What `extend_vocabulary` did, as written to dontstop_vocab.json."""

    old_vocab_size: int
    new_vocab_size: int
    old_embedding_rows: int
    new_embedding_rows: int
    row_parameters: list[str]


def extend_vocabulary(model, tokenizer, additions: list[Addition], pad_to_multiple_of: int | None = None) -> Extension:
    """Add the words to the tokenizer and resize the model; each new row of every token-row tensor (input embeddings,
    untied output embeddings, output biases) becomes the mean of the old pieces' rows."""
    import torch

    old_vocab_size = len(tokenizer)
    old_rows = model.get_input_embeddings().weight.shape[0]
    biases = [name for name, p in token_row_parameters(model).items() if p.dim() == 1]
    add_to_tokenizer(tokenizer, additions)
    # Never shrink: a checkpoint may carry more rows than its tokenizer has tokens. The new rows are set below, so
    # the library's own initialisation of them (mean_resizing) would be wasted work.
    model.resize_token_embeddings(
        max(len(tokenizer), old_rows), pad_to_multiple_of=pad_to_multiple_of, mean_resizing=False
    )
    rows = model.get_input_embeddings().weight.shape[0]
    stale = [name for name in biases if model.get_parameter(name).shape[0] != rows]
    if stale:  # logits would not match the vocabulary
        raise RuntimeError(f"resize_token_embeddings left {', '.join(stale)} at {old_rows} rows")
    params = token_row_parameters(model)
    ids = torch.tensor([a.id for a in additions])
    with torch.no_grad():
        for param in params.values():
            means = torch.stack([param[a.piece_ids].float().mean(0) for a in additions])
            param[ids.to(param.device)] = means.to(param.dtype)
    return Extension(old_vocab_size, len(tokenizer), old_rows, rows, sorted(params))
