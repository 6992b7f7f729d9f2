"""`sentence-transformers`: a model trained for sentence embeddings (its own pooling and normalisation), when the
sentence-transformers package is installed."""

from __future__ import annotations

import numpy as np

from ..errors import UsageError
from . import Embedder, normalize_rows


class SentenceTransformerEmbedder(Embedder):
    name = "sentence-transformers"

    def __init__(self, model_name: str, batch_size: int = 64, max_length: int = 256):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise UsageError(
                "--embedder sentence-transformers needs the sentence-transformers package "
                "(pip install sentence-transformers), or use --embedder model"
            ) from None
        import torch

        from ..models import resolve_model_path

        device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            self.model = SentenceTransformer(resolve_model_path(model_name), device=device)
        except (OSError, ValueError) as e:
            raise UsageError(f"--embedding_model {model_name}: {str(e).strip().splitlines()[0]}") from None
        self.model.max_seq_length = min(max_length, self.model.max_seq_length or max_length)
        self.model_name, self.batch_size = model_name, batch_size
        # renamed in sentence-transformers 5; the old name still works there, with a warning
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = dimension()

    def embed(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return normalize_rows(vectors)

    def describe(self) -> dict:
        return {"embedder": self.name, "dim": self.dim, "model": self.model_name}


def build(args) -> SentenceTransformerEmbedder:
    if not args.embedding_model:
        raise UsageError("--embedder sentence-transformers needs --embedding_model (e.g. all-MiniLM-L6-v2)")
    return SentenceTransformerEmbedder(args.embedding_model, args.embed_batch_size, args.max_seq_length)
