"""`model`: mean-pooled last hidden states of any Hugging Face encoder (or decoder), batched.

The mean over the non-padding tokens is the standard sentence vector of an encoder that was not trained for one
(Reimers & Gurevych 2019 found it the best of the simple poolings). Texts are sorted by length within each call so
batches carry little padding; results come back in the caller's order.
"""

from __future__ import annotations

import numpy as np

from ..errors import UsageError
from . import Embedder, normalize_rows


class ModelEmbedder(Embedder):
    name = "model"

    def __init__(self, model_name: str, batch_size: int = 64, max_length: int = 256):
        import torch
        from transformers import AutoModel

        from ..models import load_pretrained, load_tokenizer, resolve_model_path, tokenizer_source

        source = resolve_model_path(model_name)
        self.tokenizer = load_tokenizer(tokenizer_source(source), shown=source)  # padding with eos for decoders
        self.model, _ = load_pretrained(AutoModel, source)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()
        self.model_name, self.batch_size = model_name, batch_size
        self.max_length = min(max_length, self.tokenizer.model_max_length)
        self.dim = self.model.config.hidden_size

    def embed(self, texts: list[str]) -> np.ndarray:
        import torch

        order = np.argsort([-len(t) for t in texts], kind="stable")
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                chosen = order[start : start + self.batch_size]
                inputs = self.tokenizer(
                    [texts[i] for i in chosen],
                    truncation=True,
                    max_length=self.max_length,
                    padding=True,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])[0]
                mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
                vectors[chosen] = pooled.float().cpu().numpy()
        return normalize_rows(vectors)

    def describe(self) -> dict:
        return {"embedder": self.name, "dim": self.dim, "model": self.model_name, "max_length": self.max_length}


def build(args) -> ModelEmbedder:
    if not args.embedding_model:
        raise UsageError("--embedder model needs --embedding_model (a hub id, a local checkpoint or pkg:NAME)")
    return ModelEmbedder(args.embedding_model, args.embed_batch_size, args.max_seq_length)
