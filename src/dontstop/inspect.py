"""Should I adapt? How far each corpus is from the others (and from what the model knows), before any training.

    dontstop inspect --corpus general=books.jsonl --corpus domain=docs.jsonl --model_name_or_path roberta-base \\
        --output_dir runs/inspect

Per corpus (a seeded sample of up to --max_docs documents): its words (stopwords out; Chinese segmented with jieba),
the vocabulary-overlap matrix of Gururangan et al. (2020) (see `similarity.py`), and with a model, how its tokenizer
fragments the words and the model's masked-LM loss on a sample (the engine's own evaluation). Writes
`similarity.json`, `README.md` (the summary and a recommendation, with its rule), and `overlap.png` (a heatmap).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import UsageError
from .lm_eval import character_budgets, masked_lm_losses, take_characters
from .outputs import check_output_dir, staged, write_json
from .records import Similarity

logger = logging.getLogger(__name__)

# The recommendation's thresholds on the top-10K overlap with the reference corpus, read off the paper's Figure 2
# and Table 3: its news domain (54.1% overlap) gained least from DAPT, computer science (19.2%) the most.
FAR, NEAR = 40.0, 60.0
# A domain whose masked-LM loss exceeds the reference's by this many nats is one the model predicts clearly worse.
LOSS_GAP = 0.5
# A tokenizer that needs this many times more pieces per word than on the reference splits the domain's words apart.
FRAGMENTATION_RATIO = 1.3


@dataclass
class InspectArguments:
    corpus: list[str] | None = field(
        default=None,
        metadata={
            "help": "A corpus NAME=PATH (any format pretrain reads); repeat for each corpus.",
            "action": "extend",
            "path": "named",
        },
    )
    output_dir: str | None = field(default=None, metadata={"help": "Where the report goes.", "fingerprint": False})
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Also measure this model's tokenizer fragmentation and masked-LM loss.", "path": "model"},
    )
    reference: str | None = field(
        default=None,
        metadata={"help": "The corpus standing for what the model already knows (default: the first one)."},
    )
    text_column: str = field(default="text", metadata={"help": "Column holding the text in jsonl/csv/parquet files."})
    max_docs: int = field(default=50_000, metadata={"help": "Documents sampled per corpus (seeded)."})
    seed: int = field(default=42, metadata={"help": "Seed of the document samples and of the masks."})
    top_k: int = field(default=10_000, metadata={"help": "K of the top-K vocabulary overlap."})
    overlap: str = field(
        default="topk",
        metadata={
            "help": "topk: the paper's |top-K(A) ∩ top-K(B)| / K; jaccard: the paper repository's Jaccard index "
            "of the words in at least --min_df documents.",
            "choices": ["topk", "jaccard"],
        },
    )
    min_df: int = field(default=3, metadata={"help": "jaccard: minimum document frequency of a word."})
    segmenter: str = field(
        default="auto",
        metadata={
            "help": "Words: whitespace (runs of letters), jieba (Chinese), or auto (per corpus: jieba when at least "
            "30%% of the letters are Han characters).",
            "choices": ["auto", "whitespace", "jieba"],
        },
    )
    eval_blocks: int = field(
        default=200, metadata={"help": "Blocks of --max_seq_length tokens per corpus for the masked-LM loss."}
    )
    max_seq_length: int = field(default=128, metadata={"help": "Tokens per block for the masked-LM loss."})
    batch_size: int = field(default=32, metadata={"help": "Batch size for the masked-LM loss."})
    head_warmup_steps: int = field(
        default=100,
        metadata={
            "help": "A checkpoint without MLM-head weights (a sentence encoder) gets its new head trained alone "
            "for this many steps, on other documents of all corpora in equal shares, before the loss is measured "
            "(0: report no loss for it)."
        },
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Write into a non-empty --output_dir (never done without this flag).", "fingerprint": False},
    )


def sample_documents(path: str, text_column: str, n: int, seed: int) -> list[str]:
    """Up to n documents drawn without replacement, in random order."""
    from .corpus import load_corpus

    dataset = load_corpus(path, text_column)
    # A random order even when the corpus is small, so any prefix of the sample (the loss's documents) is random too.
    order = np.random.default_rng(seed).permutation(len(dataset))[:n]
    return list(dataset.select(order)["text"])


def recommend(names: list[str], reference: str, matrix: np.ndarray, models: dict) -> list[str]:
    """One line per non-reference corpus, from the rule stated in the README the stage writes."""
    r = names.index(reference)
    lines = []
    for i, name in enumerate(names):
        if i == r:
            continue
        overlap = matrix[r, i]
        if overlap < FAR:
            verdict = f"far from {reference} ({overlap:.1f}% overlap): DAPT likely pays"
        elif overlap < NEAR:
            verdict = f"moderately close to {reference} ({overlap:.1f}%): DAPT may pay; TAPT is the cheap first try"
        else:
            verdict = f"close to {reference} ({overlap:.1f}%): DAPT is unlikely to pay much; TAPT alone may do"
        notes = []
        loss, ref_loss = models.get(name, {}).get("lm_loss"), models.get(reference, {}).get("lm_loss")
        if loss is not None and ref_loss is not None and loss - ref_loss > LOSS_GAP:
            notes.append(f"the model predicts it {loss - ref_loss:.2f} nats worse than {reference}")
        pieces = models.get(name, {}).get("subtokens_per_word")
        ref_pieces = models.get(reference, {}).get("subtokens_per_word")
        if pieces and ref_pieces and pieces > FRAGMENTATION_RATIO * ref_pieces:
            notes.append(
                f"its words split into {pieces:.2f} pieces on average ({ref_pieces:.2f} on {reference}): "
                "mined domain words or a vocabulary extension may help"
            )
        lines.append(f"- **{name}**: {verdict}" + ("; " + "; ".join(notes) if notes else "") + ".")
    return lines


def heatmap(path: str, names: list[str], matrix: np.ndarray, title: str):
    """The overlap matrix as a PNG, values written in the cells; the labels also go into the PNG's metadata."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = 1.2 + 0.75 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=100)
    ax.set_xticks(range(len(names)), labels=names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), labels=names)
    for i in range(len(names)):
        for j in range(len(names)):
            color = "black" if matrix[i, j] > 60 else "white"
            ax.text(j, i, f"{matrix[i, j]:.1f}", ha="center", va="center", color=color, fontsize=9)
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label="%")
    fig.tight_layout()
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp, dpi=120, metadata={"Title": title, "Description": json.dumps({"labels": names})})
    os.replace(tmp, path)
    return fig


def matrix_table(names: list[str], matrix: np.ndarray) -> list[str]:
    rows = ["| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    rows += [f"| **{n}** | " + " | ".join(f"{v:.1f}" for v in matrix[i]) + " |" for i, n in enumerate(names)]
    return rows


def write_readme(path: str, report: dict) -> None:
    names = [c["name"] for c in report["corpora"]]
    method = report["overlap"]
    lines = [
        "# Domain similarity (`dontstop inspect`)",
        "",
        f"Vocabulary overlap, {method['description']}:",
        "",
        *matrix_table(names, np.array(method["matrix"])),
        "",
        "![overlap heatmap](overlap.png)",
        "",
        "| corpus | documents sampled | words | distinct words (no stopwords) | segmenter | most frequent words |",
        "|---|---:|---:|---:|---|---|",
    ]
    for c in report["corpora"]:
        lines.append(
            f"| {c['name']} | {c['documents']:,} | {c['words']:,} | {c['distinct_words']:,} | {c['segmenter']} "
            f"| {', '.join(c['top_words'][:8])} |"
        )
    if report.get("model"):
        lines += [
            "",
            f"Model `{report['model']}` ({report['corpora'][0]['model']['objective'].upper()} loss; head: "
            f"{report['corpora'][0]['model']['lm_head']}):",
            "",
            "| corpus | sub-tokens per word | words in 3+ pieces | unknown-token rate | LM loss | perplexity |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for c in report["corpora"]:
            m = c["model"]
            loss = "n/a" if m["lm_loss"] is None else f"{m['lm_loss']:.3f}"
            ppl = "n/a" if m["lm_perplexity"] is None else f"{m['lm_perplexity']:.1f}"
            lines.append(
                f"| {c['name']} | {m['subtokens_per_word']:.2f} | {100 * m['split_3plus']:.1f}% "
                f"| {100 * m['unknown_rate']:.2f}% | {loss} | {ppl} |"
            )
    lines += ["", "## Recommendation", "", *report["recommendation"], "", f"Rule: {report['rule']}", ""]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


RULE = (
    f"against the reference corpus, a top-K overlap below {FAR:.0f}% reads as far (DAPT likely pays), "
    f"{FAR:.0f}-{NEAR:.0f}% as moderately close, above {NEAR:.0f}% as close (the paper's news domain, 54.1%, gained "
    f"least from DAPT; computer science, 19.2%, the most). With a model, a masked-LM loss more than {LOSS_GAP} nats "
    f"above the reference's, or {FRAGMENTATION_RATIO}x as many sub-tokens per word, is called out. TAPT (pretraining "
    "on the task's own unlabeled text) is cheap and helped in every domain of the paper, so it is worth adding "
    "whatever the overlap."
)


def validate(args: InspectArguments):
    from .corpus import parse_named_path

    if not args.corpus:
        raise UsageError("--corpus NAME=PATH is required (repeat it for each corpus)")
    if not args.output_dir:
        raise UsageError("--output_dir is required")
    corpora = [parse_named_path(spec, "--corpus") for spec in args.corpus]
    names = [c.name for c in corpora]
    if len(set(names)) != len(names):
        raise UsageError(f"--corpus names must be distinct (got {', '.join(names)})")
    if args.reference is not None and args.reference not in names:
        raise UsageError(f"--reference {args.reference}: no corpus of that name (corpora: {', '.join(names)})")
    for option in ("max_docs", "top_k", "min_df", "eval_blocks", "max_seq_length", "batch_size"):
        if getattr(args, option) < 1:
            raise UsageError(f"--{option} must be at least 1")
    if args.head_warmup_steps < 0:
        raise UsageError("--head_warmup_steps must be 0 or more")
    for c in corpora:
        if not os.path.exists(c.path):
            raise UsageError(f"--corpus {c.name}={c.path}: no such file or directory")
    check_output_dir(args.output_dir, args.overwrite_output_dir)
    return corpora


def model_measures(args: InspectArguments, vocabularies, samples: dict[str, list[str]]) -> dict[str, dict]:
    """{corpus: tokenizer fragmentation and LM loss}. Documents for the loss come first in each sample, those for a
    head warm-up after them, both by characters, then cut to exact block counts."""
    from .models import load_tokenizer, resolve_model_path, tokenizer_source
    from .similarity import fragmentation

    source = resolve_model_path(args.model_name_or_path)
    tokenizer = load_tokenizer(tokenizer_source(source))
    names = list(samples)
    eval_chars, warm_chars = character_budgets(args, len(names))
    evaluated = {n: take_characters(samples[n], eval_chars) for n in names}
    warmup = {n: take_characters(samples[n][len(evaluated[n]) :], warm_chars) for n in names}
    losses = masked_lm_losses(source, evaluated, warmup if warm_chars else {}, args)
    return {v.name: {**fragmentation(tokenizer, v), **losses[v.name].to_dict()} for v in vocabularies}


def corpus_entry(corpus, vocab, model: dict | None) -> dict:
    entry = {
        "name": corpus.name,
        "path": corpus.path,
        "documents": vocab.documents,
        "words": vocab.tokens,
        "distinct_words": len(vocab.counts),
        "segmenter": vocab.segmenter,
        "top_words": vocab.top(50),
    }
    return {**entry, "model": model} if model else entry


def run_inspect(args: InspectArguments) -> Similarity:
    """Measure, write `similarity.json`, `README.md` and `overlap.png`; return the record."""
    from .similarity import count_words, overlap_matrix

    corpora = validate(args)
    names = [c.name for c in corpora]
    reference = args.reference or names[0]
    samples = {c.name: sample_documents(c.path, args.text_column, args.max_docs, args.seed) for c in corpora}
    vocabularies = [count_words(n, samples[n], args.segmenter, progress=True) for n in names]
    matrices = {
        "topk": overlap_matrix(vocabularies, "topk", top_k=args.top_k),
        "jaccard": overlap_matrix(vocabularies, "jaccard", min_df=args.min_df),
    }
    descriptions = {
        "topk": f"share of the top-{args.top_k:,} words (stopwords excluded) two corpora have in common, in percent",
        "jaccard": f"Jaccard index of the words in at least {args.min_df} documents, in percent",
    }
    overlaps = {m: {"description": descriptions[m], "matrix": matrices[m].round(2).tolist()} for m in matrices}
    models = model_measures(args, vocabularies, samples) if args.model_name_or_path else {}
    record = Similarity(
        reference=reference,
        overlap={"method": args.overlap, "description": descriptions[args.overlap], "names": names,
                 "matrix": overlaps[args.overlap]["matrix"]},
        overlaps=overlaps,
        corpora=[corpus_entry(c, v, models.get(c.name)) for c, v in zip(corpora, vocabularies, strict=True)],
        model=args.model_name_or_path,
        settings=asdict(args),
        recommendation=recommend(names, reference, matrices["topk"], models) if len(names) > 1 else [],
        rule=RULE,
    )  # fmt: skip
    titles = {
        "topk": f"Overlap of the top-{args.top_k:,} words (%)",
        "jaccard": f"Jaccard, words in >= {args.min_df} docs (%)",
    }
    with staged(args.output_dir) as path:
        heatmap(path("overlap.png"), names, matrices[args.overlap], titles[args.overlap])
        write_json(path(Similarity.FILE), record.to_dict())
        write_readme(path("README.md"), record.to_dict())
    logger.info("\n%s", "\n".join(matrix_table(names, matrices[args.overlap]) + [""] + record.recommendation))
    return record


ARGUMENTS = (InspectArguments,)
run = run_inspect


EXAMPLES = """examples:
  # how far are my domain and my task from general English? (the first corpus is the reference)
  dontstop inspect --corpus general=books.jsonl --corpus domain=docs.jsonl --corpus task=train.jsonl \\
      --output_dir runs/inspect

  # with a model: tokenizer fragmentation and masked-LM loss per corpus
  dontstop inspect --corpus general=books.jsonl --corpus domain=docs.jsonl --model_name_or_path roberta-base \\
      --output_dir runs/inspect

  # the paper repository's measure instead: Jaccard of words in >= 3 documents
  dontstop inspect --corpus a=a.jsonl --corpus b=b.jsonl --overlap jaccard --output_dir runs/inspect-jaccard
"""
