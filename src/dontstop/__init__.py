"""dontstop: adapt a pretrained language model to a domain and a task by continued pretraining, and prove it helped.

The Python API is the command line's: each stage is a function taking its argument dataclasses, or the same
options as keywords, and returning its record (`records/`).

    import dontstop

    words = dontstop.run_mine(corpus=["domain=docs.jsonl"], output_dir="runs/mine")
    metrics = dontstop.run_pretrain(model_name_or_path="roberta-base", train_file=["docs.jsonl"],
                                    max_steps=1000, output_dir="runs/dapt")
    results = dontstop.run_finetune(model_name_or_path="runs/dapt", train_file="train.jsonl",
                                    validation_file="dev.jsonl", seeds="5", output_dir="runs/dapt-ft")
    summary = dontstop.run_experiment("experiment.yaml")

Everything is imported on first use, so `import dontstop` is instant.
"""

from __future__ import annotations

__version__ = "0.1.0"

# function name -> the stage it runs (config.STAGES)
API = {
    "run_inspect": "inspect",
    "run_mine": "mine",
    "run_select": "select",
    "run_prepare": "prepare",
    "run_pretrain": "pretrain",
    "run_lm_eval": "lm-eval",
    "run_finetune": "finetune",
}

__all__ = [*API, "run_experiment", "load_experiment"]


def _stage_function(name: str, stage: str):
    def run(*arguments, **options):
        from .config import build_arguments, run_stage, stage_module

        module = stage_module(stage)
        if arguments and options:
            raise TypeError(f"{name}: give the argument dataclasses or keyword options, not both")
        if not arguments:
            arguments = build_arguments(module.ARGUMENTS, options, f"dontstop.{name}")
        return run_stage(module, arguments)

    run.__name__ = run.__qualname__ = name
    run.__doc__ = f"`dontstop {stage}`: its argument dataclasses in order, or its options as keywords; its record."
    return run


def __getattr__(name: str):
    if name in API:
        return _stage_function(name, API[name])
    if name in ("run_experiment", "load_experiment"):
        from . import experiment

        return getattr(experiment, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
