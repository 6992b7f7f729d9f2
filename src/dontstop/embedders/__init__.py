"""Text embedders for `dontstop select`: one file per embedder, registered here by name.

An embedder maps texts to L2-normalised float32 rows, so that inner product is cosine similarity. Those that learn
from the data (`bow`: its IDF weights and SVD basis) are fitted first on the task texts plus a uniform sample of the
pool; the others ignore `fit`. Adding an embedder adds a file with a `build(args)` function and a line below.
"""

from __future__ import annotations

import importlib

import numpy as np

from ..errors import UsageError

# name -> module; each module's build(args) returns an Embedder. Imported on use, so a missing optional package
# (sentence-transformers) only matters to whoever asks for that embedder.
EMBEDDERS = {
    "bow": "dontstop.embedders.bow",
    "model": "dontstop.embedders.model",
    "sentence-transformers": "dontstop.embedders.sbert",
}


class Embedder:
    """Texts to unit-length float32 vectors of `dim` dimensions."""

    name: str = ""
    dim: int = 0
    needs_fit: bool = False

    def fit(self, texts: list[str]) -> None:
        """Learn from the task texts plus a sample of the pool (only when `needs_fit`)."""

    def embed(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> dict:
        """Settings worth recording next to a selection."""
        return {"embedder": self.name, "dim": self.dim}


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Unit-length rows in float32; an all-zero row (a text with no known word) stays zero: its similarity to
    anything is 0, so it is chosen only when fewer than k documents score above 0."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def build_embedder(args) -> Embedder:
    if args.embedder not in EMBEDDERS:
        raise UsageError(f"--embedder {args.embedder}: unknown (embedders: {', '.join(EMBEDDERS)})")
    return importlib.import_module(EMBEDDERS[args.embedder]).build(args)
