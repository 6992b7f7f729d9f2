"""Write the small Chinese BERT of examples/zh-reviews.yaml: a config and a character tokenizer, no weights.

    python examples/zh-bert/make_zh_bert.py --shared ../shared/data

No Chinese checkpoint can be downloaded where the examples are built, so the Chinese example pretrains its own model
from this config (`dontstop pretrain --config_name examples/zh-bert --tokenizer_name examples/zh-bert`).

vocab.txt: [PAD] [UNK] [CLS] [SEP] [MASK], then the most frequent tokens of People's Daily 1998 (the general corpus)
and the reviews' training and unlabeled text (the task's dev and test text is left out), as the BERT tokenizer's
own normalizer and pre-tokenizer cut them: every Han character and punctuation mark is a word of its own, so Han
characters need no `##` form; a run of Latin letters or digits becomes a character and `##` continuations, as in
bert-base-chinese. Ties are broken by the token, so the same input gives the same bytes.
config.json: the shape of Google's BERT-Tiny (2 layers, hidden 128, 2 heads, feed-forward 512; Turc et al., 2019) with
512 positions and this vocabulary, 1.2M parameters: small enough that the whole zh-reviews experiment, base
pretraining and 15 fine-tuning runs included, ran in 23 minutes on one core of a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import collections
import json
import os

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SOURCES = ["zh/peoples_daily_1998.raw.txt", "zh/reviews/train.jsonl", "zh/reviews/unlabeled.jsonl"]
CONFIG = {
    "architectures": ["BertForMaskedLM"],
    "model_type": "bert",
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 512,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
}


def texts(path: str):
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)["text"] if path.endswith(".jsonl") else line


def count_tokens(shared: str) -> collections.Counter:
    """Token counts under the BERT tokenizer's own normalizer and pre-tokenizer (lower-cased, accents stripped, CJK
    characters and punctuation split off)."""
    from tokenizers.normalizers import BertNormalizer
    from tokenizers.pre_tokenizers import BertPreTokenizer

    normalizer = BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    pre_tokenizer = BertPreTokenizer()
    counts: collections.Counter = collections.Counter()
    for source in SOURCES:
        for text in texts(os.path.join(shared, source)):
            for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)):
                counts[word[0]] += 1
                counts.update("##" + c for c in word[1:])
    return counts


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--shared",
        default=os.path.join(here, "..", "..", "..", "shared", "data"),
        help="The shared datasets directory (default: ../shared/data beside the repository).",
    )
    parser.add_argument(
        "--vocab_size", type=int, default=8000, help="Most tokens in vocab.txt, special ones included."
    )
    parser.add_argument("--output_dir", default=here)
    args = parser.parse_args()

    counts = count_tokens(args.shared)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    vocab = SPECIAL + [token for token, _ in ranked[: args.vocab_size - len(SPECIAL)]]
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")
    tokenizer_config = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": True,
        "tokenize_chinese_chars": True,
        "strip_accents": None,
        "model_max_length": CONFIG["max_position_embeddings"],
        **{f"{name}_token": f"[{name.upper()}]" for name in ("pad", "unk", "cls", "sep", "mask")},
    }
    config = {**CONFIG, "vocab_size": len(vocab)}
    for name, content in (("tokenizer_config.json", tokenizer_config), ("config.json", config)):
        with open(os.path.join(args.output_dir, name), "w", encoding="utf-8") as f:
            json.dump(content, f, indent=2, ensure_ascii=False)
            f.write("\n")
    covered = sum(counts[t] for t in vocab[len(SPECIAL) :]) / sum(counts.values())
    print(f"{len(vocab)} tokens of {len(counts)} seen; they cover {covered:.4%} of the token occurrences")


if __name__ == "__main__":
    main()
