"""The options of `dontstop finetune`: the task and the training, each a dataclass, and every check on them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..adapters import AdapterArguments
from ..averaging import AveragingArguments
from ..errors import UsageError
from ..knowledge.expand import KnowledgeArguments
from ..recipe import RobertaRecipe
from ..scoring import METRICS, PRIMARY_METRIC
from ..tasks import Task
from .losses import LOSSES, WEIGHTINGS
from .method_args import MethodArguments
from .methods import check_methods, needs_unlabeled
from .sampler import SAMPLERS

logger = logging.getLogger(__name__)

KEEP_MODELS = ("best", "all", "none")
LEARNING_RATE_DEFAULT = "2e-5"  # the paper's, for RoBERTa-base


@dataclass
class TaskArguments(KnowledgeArguments):
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "What to fine-tune: a hub id, a `dontstop pretrain` output directory, any local checkpoint, "
            "or pkg:NAME for a model shipped inside an installed Python package. A LoRA adapter directory "
            "(adapter_config.json) is merged into its base model first.",
            "path": "model",
        },
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer, when it differs from the model.", "path": "model"}
    )
    train_file: str | None = field(
        default=None, metadata={"help": "Training examples (.jsonl, .csv or .tsv).", "path": "file"}
    )
    validation_file: str | None = field(
        default=None,
        metadata={"help": "Dev examples: choose the best epoch and stop early. Without one, "
                  "--validation_split_percentage of the training examples are held out as the dev set.",
                  "path": "file"},
    )  # fmt: skip
    validation_split_percentage: float = field(
        default=10.0,
        metadata={"bounds": "(0, 100)",
                  "help": "Without --validation_file: the share of the training examples held out as the dev set "
                  "(stratified by label; the same examples for every seed), recorded in results.json."},
    )  # fmt: skip
    test_file: str | None = field(
        default=None, metadata={"help": "Test examples, scored with the best epoch.", "path": "file"}
    )
    task_type: str = field(
        default="auto",
        metadata={
            "help": "single_label, multi_label (a list of labels per example) or token (BIO tags per word); "
            "auto reads it from the first training record.",
            "choices": ["auto", "single_label", "multi_label", "token"],
        },
    )
    text_column: str = field(default="text", metadata={"help": "Column of the text (a list of words for token)."})
    text_pair_column: str | None = field(
        default=None, metadata={"help": "Column of the second text of a pair (e.g. a hypothesis), if any."}
    )
    label_column: str = field(default="label", metadata={"help": "Column of the label (or labels, or tags)."})
    label_separator: str = field(
        default=",", metadata={"help": "multi_label in csv/tsv: the separator between the labels of a cell."}
    )
    allow_unknown_tokens: bool = field(
        default=False,
        metadata={"help": "Train even when most tokens of the first batch are the tokenizer's unknown token."},
    )
    label_type: str = field(
        default="auto",
        metadata={
            "help": 'auto: labels must be all numbers or all strings (1 and "1" mixed is an error); str: read '
            'every label as a string, so 1 and "1" are one class.',
            "choices": ["auto", "str"],
        },
    )
    max_seq_length: int | None = field(
        default=None,
        metadata={
            "bounds": "[1, inf)",
            "help": "Tokens per example; longer ones are truncated (and counted). Default: min(512, model max).",
        },
    )
    seeds: str = field(
        default="5",
        metadata={
            "help": "How many runs (N: seeds --seed, --seed+1, ...) or a list of seeds, e.g. 1,2,3.",
            "fingerprint": "run",
        },
    )
    train_limit: int | None = field(
        default=None,
        metadata={
            "help": "Few-shot: train on this many examples, drawn stratified by label (uniformly for multi_label "
            "and token tasks)."
        },
    )
    train_limit_per_class: int | None = field(
        default=None,
        metadata={
            "help": "Few-shot: train on this many examples of each label (all of a label that has fewer); "
            "single_label tasks."
        },
    )
    sample_seed: int | None = field(
        default=None,
        metadata={
            "help": "Seed of the --train_limit draw. Default: each run's seed, so the spread over seeds includes "
            "the choice of examples (and every run on the task draws the same examples for the same seed)."
        },
    )
    validation_limit: int | None = field(
        default=None,
        metadata={
            "help": "Evaluate on this many dev examples (stratified; the same ones for every seed and run): "
            "dev evaluation after every epoch can cost more than the training itself."
        },
    )
    resume: bool = field(
        default=False,
        metadata={
            "help": "Reuse the seeds already finished in --output_dir (its settings must match these).",
            "fingerprint": False,
        },
    )
    keep_models: str = field(
        default="best",
        metadata={
            "help": "Which seeds' models to keep in OUTPUT_DIR/seed-S/model, each at its best epoch: best (the seed "
            "best on dev, named in results.json: something to deploy), all (--keep_models alone), or none.",
            "fingerprint": "run",
            "nargs": "?",
            "const": "all",
        },
    )
    unlabeled_file: list[str] | None = field(
        default=None,
        metadata={
            "help": "Unlabeled text for UDA and self-training, in any format pretrain reads; repeat for several. "
            "Texts equal to a dev or test text are left out (and counted).",
            "action": "extend",
            "path": "file",
        },
    )
    unlabeled_text_column: str = field(default="text", metadata={"help": "Column of the text of --unlabeled_file."})
    unlabeled_from_train: bool = field(
        default=False,
        metadata={
            "help": "Add the training texts not drawn into each seed's few-shot sample to the unlabeled text (their "
            "labels unused, except to score pseudo-labels)."
        },
    )
    unlabeled_limit: int | None = field(
        default=None,
        metadata={
            "bounds": "[1, inf)",
            "help": "Use at most this many unlabeled texts per seed (a draw seeded by the seed; default: all).",
        },
    )
    # The classifier reads the text: with one_way attention no appended knowledge could reach it.
    knowledge_attention: str = field(
        default="both_ways",
        metadata={
            "help": "With --glossary/--triples: both_ways, a term also sees its appended text, through which the "
            "knowledge reaches the classifier (K-BERT); one_way, it does not (the text's hidden states, and so the "
            "predictions, are those without the knowledge).",
            "choices": ["one_way", "both_ways"],
        },
    )
    save_probabilities: bool = field(
        default=False,
        metadata={
            "help": "Also write each seed's class probabilities, seed-S/probabilities_{dev,test}.npy (one row per "
            "example, one column per label in results.json's order); classification tasks.",
            "fingerprint": "run",
        },
    )

    prompt: str | None = field(
        default=None,
        metadata={"help": "Prompt-based fine-tuning (PET, LM-BFF): a template naming the text columns and the mask "
                  "slot, e.g. \"{text} This package is about {mask}.\"; the model's own MLM head scores each "
                  "label's words (--verbalizer) at the slot. Single- and multi-label tasks."},
    )  # fmt: skip
    verbalizer: str | None = field(
        default=None,
        metadata={"help": "With --prompt: JSON (inline or a .json file) mapping every label to a word or a list of "
                  "words, e.g. '{\"net\": \"network\", \"games\": [\"game\", \"play\"]}'; or auto: the MLM "
                  "head picks one word per label from the training examples (LM-BFF), written to "
                  "OUTPUT_DIR/verbalizer.json.",
                  "path": "model"},  # a file relative to an experiment's YAML when there is one, else inline JSON
    )  # fmt: skip
    auto_verbalizer_candidates: int = field(
        default=10,
        metadata={"bounds": "[1, inf)",
                  "help": "--verbalizer auto: the best-scored whole words kept per label before the words are given "
                  "out one to one (by margin over the other labels)."},
    )  # fmt: skip
    tasks: str | None = field(
        default=None,
        metadata={"help": "Multi-task fine-tuning: a YAML list of tasks, each with name, train, dev, test (paths "
                  "relative to the file) and optional column options (task_type, text_column, label_column, ...); one "
                  "encoder, one head per task (see finetune/multitask/spec.py).", "path": "file"},
    )  # fmt: skip
    task: list[str] | None = field(
        default=None,
        metadata={"help": "Multi-task fine-tuning without a YAML file: NAME=TRAIN[,DEV[,TEST]], repeated for each "
                  "task (the run's column options apply to all).", "action": "extend"},
    )  # fmt: skip
    task_sampling: str = field(
        default="proportional",
        metadata={"help": "Multi-task: which task each batch comes from: proportional (each task's examples once an "
                  "epoch), sqrt or uniform (tasks' shares of the batches in proportion to the square root of their "
                  "size, or equal).", "choices": ["proportional", "sqrt", "uniform"]},
    )  # fmt: skip
    allow_multi_token: bool = field(
        default=False,
        metadata={"help": "With --prompt: let a label word be several tokens (the slot gets as many mask tokens; "
                  "a label then scores the mean log-probability of its tokens). Without it such a word is an error."},
    )  # fmt: skip

    def __post_init__(self):
        # A YAML `keep_models: true` (the option was a flag) means all, `false` none.
        spelled = {"true": "all", "false": "none"}.get(str(self.keep_models).lower(), self.keep_models)
        self.keep_models = str(spelled)


@dataclass
class FinetuningArguments(MethodArguments, AdapterArguments, AveragingArguments, RobertaRecipe):
    """`TrainingArguments` with the fine-tuning defaults of Gururangan et al. (2020), each with its reason; weight
    averaging (--ema, --swa_start) from `averaging.py`, a task adapter (--adapter lora) from `adapters.py`, the
    training methods (UDA, R-Drop, PGD, self-training, ...) from `method_args.py`."""

    # The paper's fine-tuning learning rate and batch size (it follows RoBERTa's GLUE recipe). Its rate was set for
    # RoBERTa-base; a small encoder (MiniLM: 28% accuracy at 2e-5 where 2e-4 reached 64%) wants another: auto.
    learning_rate: str = field(
        default=LEARNING_RATE_DEFAULT,
        metadata={"bounds": "[0, inf)", "number_or": ["auto"],
                  "help": "Peak learning rate, or auto: fine-tune the first seed at each of "
                  "--learning_rate_candidates, keep the rate best on dev (recorded in results.json) for every seed. "
                  "2e-5 is the paper's rate for RoBERTa-base; smaller models usually want more."},
    )  # fmt: skip
    learning_rate_candidates: str = field(
        default="1e-5,3e-5,1e-4,3e-4",
        metadata={"help": "The rates --learning_rate auto tries, comma-separated."},
    )
    learning_rate_sweep: str | None = field(
        default=None,
        metadata={"help": "The learning_rate_sweep.json of an earlier sweep (dontstop lr-sweep, or a finetune run "
                  "with --learning_rate auto) to take the rate from (implies --learning_rate auto).", "path": "file"},
    )  # fmt: skip
    per_device_train_batch_size: int = field(
        default=16, metadata={"bounds": "[1, inf)", "help": "Training batch size per device."}
    )
    # Evaluation keeps no activations for a backward pass, so larger batches cost little memory and run faster.
    per_device_eval_batch_size: int = field(
        default=64, metadata={"bounds": "[1, inf)", "help": "Evaluation batch size per device."}
    )
    # The paper trains up to 10 epochs (3 for its large tasks) and keeps the best on dev, patience 3.
    num_train_epochs: float = field(
        default=10.0, metadata={"bounds": "(0, inf)", "help": "Most epochs per seed (early stopping may end sooner)."}
    )
    early_stopping_patience: int = field(
        default=3,
        metadata={
            "bounds": "[0, inf)",
            "help": "Stop after this many evaluations without a better dev metric (0: never).",
        },
    )
    # RoBERTa's fine-tuning weight decay (its pretraining used 0.01); warm-up and Adam settings come from the recipe.
    weight_decay: float = field(default=0.1, metadata={"bounds": "[0, inf)", "help": "AdamW weight decay."})
    # The best epoch is chosen on dev after every epoch; the best weights are kept in memory, so no checkpoints.
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate on dev: epoch or steps."})
    save_strategy: str = field(default="no", metadata={"help": "Trainer checkpoints (not needed to keep the best)."})
    logging_strategy: str = field(default="epoch", metadata={"help": "When to log the training loss."})
    # Imbalanced classes: off by default, so a plain run is the paper's protocol.
    class_weights: str = field(
        default="none",
        metadata={
            "help": "Weigh each class's loss by its training count: inverse (1/n), sqrt_inverse (1/sqrt n) or "
            "effective (the effective number of samples, Cui et al. 2019; see --class_weights_beta).",
            "choices": list(WEIGHTINGS),
        },
    )
    class_weights_beta: float = field(
        default=0.999,
        metadata={"bounds": "[0, 1)", "help": "--class_weights effective: beta (0: no reweighting; 1 - 1/n: 1/n)."},
    )
    loss: str = field(
        default="cross_entropy",
        metadata={"help": "The supervised loss: cross_entropy or focal (Lin et al. 2017).", "choices": list(LOSSES)},
    )
    focal_gamma: float = field(
        default=2.0, metadata={"bounds": "[0, inf)", "help": "--loss focal: gamma (0 is cross-entropy)."}
    )
    sampler: str = field(
        default="random",
        metadata={
            "help": "How an epoch draws training examples: random (each once), balanced (every class equally "
            "often) or sqrt (classes in proportion to the square root of their size); single_label tasks.",
            "choices": ["random", *SAMPLERS],
        },
    )

    def imbalance(self) -> dict:
        """The imbalance settings, for results.json."""
        record = {"class_weights": self.class_weights, "loss": self.loss, "sampler": self.sampler}
        if self.class_weights == "effective":
            record["class_weights_beta"] = self.class_weights_beta
        if self.loss == "focal":
            record["focal_gamma"] = self.focal_gamma
        return record

    def __post_init__(self):
        # --learning_rate auto: the default rate stands in until the sweep (sweep.py) sets the chosen one. A sweep file
        # given alone means auto: its rate is what the user asked for.
        self.learning_rate_auto = str(self.learning_rate).strip().lower() == "auto"
        if self.learning_rate_sweep and not self.learning_rate_auto:
            if str(self.learning_rate) != LEARNING_RATE_DEFAULT:
                raise ValueError(f"--learning_rate {self.learning_rate} and --learning_rate_sweep: give one of them")
            self.learning_rate_auto = True
        try:
            self.learning_rate = 2e-5 if self.learning_rate_auto else float(self.learning_rate)
        except ValueError:
            raise ValueError(f"--learning_rate {self.learning_rate}: expected a number or auto") from None
        super().__post_init__()

    def candidate_rates(self) -> list[float]:
        try:
            rates = [float(r) for r in self.learning_rate_candidates.split(",") if r.strip()]
        except ValueError:
            rates = []
        if not rates or any(r <= 0 for r in rates):
            raise UsageError(f"--learning_rate_candidates {self.learning_rate_candidates}: expected positive rates, "
                             "e.g. 1e-5,3e-5,1e-4")  # fmt: skip
        return rates


def parse_seeds(spec, base: int) -> list[int]:
    """`5` means five seeds from --seed on; `1,2,3` means exactly those (a YAML config may give a number or list)."""
    spec = ",".join(map(str, spec)) + "," if isinstance(spec, list) else str(spec)
    try:
        if "," not in spec:
            count = int(spec)
            if count < 1:
                raise ValueError
            return [base + i for i in range(count)]
        seeds = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--seeds expects a count (5) or a list (1,2,3), got {spec!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds {spec}: seeds must be distinct")
    return seeds


def validate(task_args: TaskArguments, args: FinetuningArguments) -> list[int]:
    if not task_args.model_name_or_path:
        raise UsageError("--model_name_or_path is required")
    if not args.output_dir_given:
        raise UsageError("--output_dir is required")
    from ..trackers import check_trackers

    check_trackers(args.report_to)
    if args.adversarial != "none" and args.deepspeed:
        raise UsageError("--adversarial with --deepspeed: DeepSpeed steps the optimizer inside each backward pass")
    if not task_args.train_file:
        raise UsageError("--train_file is required (or --tasks/--task for multi-task fine-tuning)")
    if task_args.task_sampling != "proportional" and not (task_args.tasks or task_args.task):
        raise UsageError(f"--task_sampling {task_args.task_sampling}: for multi-task runs (--tasks or --task)")
    if task_args.keep_models not in KEEP_MODELS:
        raise UsageError(f"--keep_models {task_args.keep_models}: expected one of {', '.join(KEEP_MODELS)}")
    args.check_averaging()
    args.check_adapter()
    check_methods(args)
    check_unlabeled(task_args, args)
    if args.tsa != "none" and not args.uda_weight:
        raise UsageError("--tsa is UDA's training-signal annealing: add --uda_weight")
    if args.tsa != "none" and args.rdrop_alpha:
        raise UsageError("--tsa with --rdrop_alpha: both rewrite the supervised loss; choose one")
    if args.tsa != "none" and (args.loss != "cross_entropy" or args.class_weights != "none"):
        with_loss = f"--loss {args.loss} --class_weights {args.class_weights}"
        raise UsageError(f"--tsa {args.tsa} with {with_loss}: TSA masks the plain cross-entropy; choose one")
    if args.merge_adapter and task_args.keep_models == "none":
        raise UsageError("--merge_adapter merges the kept models: --keep_models best or all")
    if args.sampler != "random" and args.class_weights != "none":
        logger.warning(
            "--sampler %s with --class_weights %s: the rare classes are favoured twice, by the draw and by the loss",
            args.sampler, args.class_weights,
        )  # fmt: skip
    for option in ("train_limit", "train_limit_per_class"):
        value = getattr(task_args, option)
        if value is not None and value < 1:
            raise UsageError(f"--{option} {value}: must be at least 1")
    if task_args.train_limit and task_args.train_limit_per_class:
        raise UsageError("--train_limit and --train_limit_per_class: choose one")
    if str(getattr(args.eval_strategy, "value", args.eval_strategy)) == "no":
        raise UsageError("--eval_strategy no: the best epoch is chosen on the dev set, so evaluation must run")
    task_args.check_knowledge(task_args.max_seq_length)
    if bool(task_args.prompt) != bool(task_args.verbalizer):
        raise UsageError("--prompt and --verbalizer go together: the template's slot, and the words scored there")
    if task_args.prompt and args.uses_adapter:
        raise UsageError(
            "--prompt with --adapter lora: a task adapter trains a classifier head, and --prompt has none"
        )
    if args.mlm_weight and task_args.uses_knowledge:
        raise UsageError("--mlm_weight with --glossary/--triples: the appended knowledge would be masked as text")
    if task_args.prompt and task_args.uses_knowledge:
        raise UsageError("--prompt with --glossary/--triples: appended knowledge is not placed in a template yet")
    if task_args.validation_limit is not None and task_args.validation_limit < 1:
        raise UsageError(f"--validation_limit {task_args.validation_limit}: must be at least 1")
    return parse_seeds(task_args.seeds, args.seed)


def check_unlabeled(task_args: TaskArguments, args: FinetuningArguments) -> None:
    """Unlabeled text comes with a method that reads it, and such a method has some."""
    given = bool(task_args.unlabeled_file or task_args.unlabeled_from_train)
    if needs_unlabeled(args) and not given:
        on = "--uda_weight" if args.uda_weight else "--self_training_rounds"
        raise UsageError(f"{on} reads unlabeled text: give --unlabeled_file or --unlabeled_from_train")
    if given and not needs_unlabeled(args):
        option = "--unlabeled_file" if task_args.unlabeled_file else "--unlabeled_from_train"
        raise UsageError(f"{option}: no method reads unlabeled text (--uda_weight, --self_training_rounds)")


def check_task_options(task: Task, args: FinetuningArguments) -> None:
    """What the task's type rules out: class-aware sampling needs one class per example."""
    if args.sampler != "random" and task.task_type != "single_label":
        what = f"--sampler {args.sampler}"
        raise UsageError(f"{what}: class-aware sampling needs a single_label task, not {task.task_type}")
    selection_metric(task, args)  # an unknown metric fails now, not after the first epoch


def selection_metric(task: Task, args: FinetuningArguments) -> str:
    """The dev metric that picks the best epoch: --metric_for_best_model, or the task's headline metric."""
    metric = (args.metric_for_best_model or PRIMARY_METRIC[task.task_type]).removeprefix("eval_")
    allowed = (*METRICS[task.task_type], "loss")
    if metric not in allowed:
        raise UsageError(f"--metric_for_best_model {metric}: a {task.task_type} task offers {', '.join(allowed)}")
    return metric
