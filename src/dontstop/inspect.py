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
# A domain corpus is relevant to the task when its probe lowers the task's loss by at least this share of the drop
# on its own held-out text: DAPT that teaches the domain but not the task's text teaches the wrong thing.
RELEVANT_SHARE = 0.25


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
    task: str | None = field(
        default=None,
        metadata={
            "help": "The corpus holding the task's own text: every other corpus is also judged by how close it is "
            "to it (default: the corpus named task, if there is one)."
        },
    )
    probe_steps: int = field(
        default=0,
        metadata={
            "help": "With a model and a task corpus: continue pretraining on each other corpus (not the reference) "
            "for this many steps, and measure how much the task's loss falls beside the corpus's own: a short DAPT "
            "probe of relevance (0: none)."
        },
    )
    probe_learning_rate: float = field(default=1e-4, metadata={"help": "The probe's learning rate."})
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


def against_reference(name: str, reference: str, overlap: float) -> str:
    if overlap < FAR:
        return f"far from {reference} ({overlap:.1f}% overlap): DAPT likely pays"
    if overlap < NEAR:
        return f"moderately close to {reference} ({overlap:.1f}%): DAPT may pay; TAPT is the cheap first try"
    return f"close to {reference} ({overlap:.1f}%): DAPT is unlikely to pay much; TAPT alone may do"


def against_task(name: str, task: str, overlap: float, probe: dict | None) -> tuple[bool, str]:
    """(whether `name` is far from the task, the words that say why)."""
    why = f"{overlap:.1f}% top-K overlap with {task}"
    far = overlap < FAR
    if probe is not None:
        gain, task_gain = probe["domain_before"] - probe["domain_after"], probe["task_before"] - probe["task_after"]
        why += (
            f"; {probe['steps']} probe steps on it lowered its own held-out loss by {gain:.2f} nats and {task}'s by "
            f"{task_gain:.2f}"
        )
        far = far or gain <= 0 or task_gain < RELEVANT_SHARE * gain
    return far, why


def model_notes(name: str, reference: str, models: dict) -> list[str]:
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
    return notes


def recommend(names, reference: str, matrix: np.ndarray, models: dict, task=None, probes=None) -> list[str]:
    """One line per non-reference corpus, from the rule stated in the README the stage writes: how far it is from the
    reference (what the model knows) and, for a domain corpus when the task's text is there, from the task."""
    r = names.index(reference)
    lines = []
    for i, name in enumerate(names):
        if i == r:
            continue
        verdict = against_reference(name, reference, matrix[r, i])
        if task is not None and name != task:
            far, why = against_task(name, task, matrix[names.index(task), i], (probes or {}).get(name))
            if far:
                verdict = (
                    f"the domain corpus is far from your task ({why}): select from it (kNN-TAPT) or find a closer one"
                )
            else:
                verdict += f", and close enough to your task ({why})"
        notes = model_notes(name, reference, models)
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
    if report.get("probes"):
        task = report["task"]
        lines += [
            "",
            f"Relevance probes: continued pretraining on a corpus; the loss on its held-out text and on {task}'s:",
            "",
            f"| corpus | steps | its loss before | after | {task} loss before | after |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, p in report["probes"].items():
            losses = " | ".join(f"{p[k]:.3f}" for k in ("domain_before", "domain_after", "task_before", "task_after"))
            lines.append(f"| {name} | {p['steps']} | {losses} |")
    lines += ["", "## Recommendation", "", *report["recommendation"], "", f"Rule: {report['rule']}", ""]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


RULE = (
    f"against the reference corpus, a top-K overlap below {FAR:.0f}% reads as far (DAPT likely pays), "
    f"{FAR:.0f}-{NEAR:.0f}% as moderately close, above {NEAR:.0f}% as close (the paper's news domain, 54.1%, gained "
    f"least from DAPT; computer science, 19.2%, the most). With a model, a masked-LM loss more than {LOSS_GAP} nats "
    f"above the reference's, or {FRAGMENTATION_RATIO}x as many sub-tokens per word, is called out. With the task's "
    f"own text as a corpus, a domain corpus is far from the task when its top-K overlap with it is below {FAR:.0f}%, "
    f"or when a probe (a short continued pretraining on it) lowers the task's loss by less than "
    f"{RELEVANT_SHARE:.0%} of what it lowers its own held-out loss: DAPT on it would teach the domain, not the task, "
    "so select task-like text from it (kNN-TAPT) or find a closer corpus. TAPT (pretraining on the task's own "
    "unlabeled text) is cheap and helped in every domain of the paper, so it is worth adding whatever the overlap."
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
    if args.head_warmup_steps < 0 or args.probe_steps < 0:
        raise UsageError("--head_warmup_steps and --probe_steps must be 0 or more")
    if args.task is not None and args.task not in names:
        raise UsageError(f"--task {args.task}: no corpus of that name (corpora: {', '.join(names)})")
    if args.probe_steps and not (args.model_name_or_path and task_corpus(args, names)):
        raise UsageError("--probe_steps needs --model_name_or_path and the task's text as a corpus (--task)")
    for c in corpora:
        if not os.path.exists(c.path):
            raise UsageError(f"--corpus {c.name}={c.path}: no such file or directory")
    check_output_dir(args.output_dir, args.overwrite_output_dir)
    return corpora


def task_corpus(args: InspectArguments, names: list[str]) -> str | None:
    return args.task or ("task" if "task" in names else None)


def split_samples(args: InspectArguments, samples: dict[str, list[str]]):
    """(documents each corpus's loss is measured on, documents for a head warm-up, the rest): by characters, from
    the front of each (random) sample, so no document serves twice."""
    eval_chars, warm_chars = character_budgets(args, len(samples))
    evaluated = {n: take_characters(texts, eval_chars) for n, texts in samples.items()}
    warmup = {n: take_characters(texts[len(evaluated[n]) :], warm_chars) for n, texts in samples.items()}
    rest = {n: texts[len(evaluated[n]) + len(warmup[n]) :] for n, texts in samples.items()}
    return evaluated, (warmup if warm_chars else {}), rest


def model_measures(args: InspectArguments, vocabularies, samples: dict[str, list[str]]) -> dict[str, dict]:
    """{corpus: tokenizer fragmentation and LM loss}."""
    from .models import load_tokenizer, resolve_model_path, tokenizer_source
    from .similarity import fragmentation

    source = resolve_model_path(args.model_name_or_path)
    tokenizer = load_tokenizer(tokenizer_source(source))
    evaluated, warmup, _ = split_samples(args, samples)
    losses = masked_lm_losses(source, evaluated, warmup, args)
    return {v.name: {**fragmentation(tokenizer, v), **losses[v.name].to_dict()} for v in vocabularies}


def probe(args: InspectArguments, samples: dict[str, list[str]], corpus: str, task: str) -> dict:
    """Continue pretraining on `corpus` for --probe_steps (on documents measured nowhere) and measure the loss on its
    held-out documents and on the task's, before and after."""
    from .lm_eval import Meter

    evaluated, warmup, rest = split_samples(args, samples)
    meter = Meter(args.model_name_or_path, args)
    meter.warm_up(warmup)
    measured = {corpus: evaluated[corpus], task: evaluated[task]}
    before = meter.losses(measured)
    logger.info("Probe: %d steps of continued pretraining on %s", args.probe_steps, corpus)
    meter.train([rest[corpus] or samples[corpus]], args.probe_steps, args.probe_learning_rate, head_only=False)
    after = meter.losses(measured)
    return {
        "steps": args.probe_steps,
        "learning_rate": args.probe_learning_rate,
        "domain_before": before[corpus].lm_loss,
        "domain_after": after[corpus].lm_loss,
        "task_before": before[task].lm_loss,
        "task_after": after[task].lm_loss,
    }


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
    task = task_corpus(args, names)
    probes = (
        {n: probe(args, samples, n, task) for n in names if n not in (reference, task)} if args.probe_steps else {}
    )
    record = Similarity(
        reference=reference,
        overlap={"method": args.overlap, "description": descriptions[args.overlap], "names": names,
                 "matrix": overlaps[args.overlap]["matrix"]},
        overlaps=overlaps,
        corpora=[corpus_entry(c, v, models.get(c.name)) for c, v in zip(corpora, vocabularies, strict=True)],
        model=args.model_name_or_path,
        settings=asdict(args),
        recommendation=recommend(names, reference, matrices["topk"], models, task, probes) if len(names) > 1 else [],
        rule=RULE,
        task=task,
        probes=probes or None,
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
