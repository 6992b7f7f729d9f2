"""`--mode embed`: out-of-fold probabilities from a logistic regression on frozen sentence embeddings.

Every text is embedded once by the model (mean of its last hidden states over the real tokens, L2-normalised:
`embedders/model.py`, the sentence vector of Reimers & Gurevych 2019); then for each fold a multinomial logistic
regression (scikit-learn's, L2-regularised with `--logistic_c`) is fitted on the other folds and predicts the fold.
The vectors go in as they are: standardising them first made the regression overfit (on the Debian task, out-of-fold
log-loss 2.64 against 1.62, and more confident mistakes). The embedding is the cost (one forward pass per text, no
backward); the regressions take seconds to a minute. A text pair is embedded as one text.
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

CHUNK = 512  # texts embedded between two updates of the progress bar


def embed_texts(split, model: str, batch_size: int, max_length: int) -> np.ndarray:
    from tqdm.auto import tqdm

    from ..embedders.model import ModelEmbedder

    embedder = ModelEmbedder(model, batch_size, max_length)
    texts = split.texts if split.pairs is None else [f"{a} {b}" for a, b in zip(split.texts, split.pairs, strict=True)]
    # Longest first over the whole file, so every batch holds texts of about one length: little padding.
    order = np.argsort([-len(t) for t in texts], kind="stable")
    vectors = np.zeros((len(texts), embedder.dim), dtype=np.float32)
    for start in tqdm(range(0, len(texts), CHUNK), desc="embedding", unit="chunk", leave=False):
        chosen = order[start : start + CHUNK]
        vectors[chosen] = embedder.embed([texts[i] for i in chosen])
    return vectors


def out_of_fold(split, label_ids: np.ndarray, folds: np.ndarray, labels: list[str], args, train_args) -> np.ndarray:
    """(examples, classes) probabilities, each row from the regression that never saw the example."""
    from sklearn.linear_model import LogisticRegression

    features = embed_texts(split, args.model_name_or_path, train_args.per_device_eval_batch_size,
                           args.max_seq_length or 256)  # fmt: skip
    probabilities = np.zeros((len(label_ids), len(labels)))
    for k in range(folds.max() + 1):
        held = folds == k
        model = LogisticRegression(C=args.logistic_c, max_iter=1000)
        model.fit(features[~held], label_ids[~held])
        probabilities[np.ix_(held, model.classes_)] = model.predict_proba(features[held])
        logger.info("fold %d of %d: %d held out", k + 1, folds.max() + 1, held.sum())
    return probabilities
