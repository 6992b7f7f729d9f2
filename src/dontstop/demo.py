"""The embedded demo: a short DAPT of MiniLM on the committed software-documentation sample.

    dontstop demo            (or: make demo)

It runs `dontstop pretrain --config examples/demo_pretrain.yaml` and prints the held-out masked-LM loss on the
software domain and on general English (Austen) for the checkpoint as shipped, after the head warm-up (what the
frozen encoder already knows) and after continued pretraining. Extra options are passed on to `dontstop pretrain`.
"""

from __future__ import annotations

import argparse
import os

from .errors import UsageError

CONFIG = os.path.join("examples", "demo_pretrain.yaml")


def find_repository_root() -> str:
    """The directory holding examples/: the current one, or the source checkout this package was installed from."""
    candidates = [os.getcwd(), os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))]
    for root in candidates:
        if os.path.exists(os.path.join(root, CONFIG)):
            return root
    raise UsageError(f"cannot find {CONFIG}: run the demo from the dontstop repository (make demo)")


def results_table(metrics: dict) -> str:
    before, after = metrics.get("before", {}), metrics["after"]
    warm = (metrics.get("head_warmup") or {}).get("eval_after_warmup") or {}
    rows = [("held-out set", "as shipped", "after head warm-up", "after DAPT", "change")]
    for name, label in (("validation", "software (domain)"), ("general", "books (general)")):
        key = f"eval_{name}_loss"
        reference = warm.get(key, before.get(key))
        rows.append(
            (
                label,
                f"{before.get(key, float('nan')):.3f}",
                f"{warm.get(key, float('nan')):.3f}",
                f"{after[key]:.3f}",
                f"{after[key] - reference:+.3f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="dontstop demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  dontstop demo --max_steps 40   # a shorter run",
    )
    _, passthrough = parser.parse_known_args(argv)
    from .cli import parse_with_config
    from .pretrain import make_parser, run_pretrain

    root = find_repository_root()
    os.chdir(root)
    model_args, data_args, masking_args, training_args = parse_with_config(
        make_parser(), ["--config", CONFIG, *passthrough]
    )
    # The demo owns its output directory: a previous demo run there is replaced, anything else is left alone.
    output_dir = training_args.output_dir
    if os.path.exists(os.path.join(output_dir, "dontstop_config.json")):
        training_args.overwrite_output_dir = True
    metrics = run_pretrain(model_args, data_args, masking_args, training_args)
    print("\nHeld-out masked-LM loss (lower is better), MiniLM on software documentation:\n")
    print(results_table(metrics))
    print(f"\n'change' is after DAPT against after head warm-up. Model, model card and metrics: {output_dir}/")
    return 0
