"""`dontstop <stage> [options]`: one entry point, one module per stage (registered in `config.STAGES`).

A stage module's dataclasses become its options (`config.make_parser`) and its `run` is called with them; a stage with
a command line of its own has `main(argv)`. Heavy imports happen inside the stages, so `dontstop --help` is instant.
Bad input anywhere becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import sys

from .config import STAGES, make_parser, parse_with_config, stage_module
from .config import run_stage as run
from .errors import UsageError

__all__ = ["STAGES", "main"]


def top_level_help() -> str:
    width = max(map(len, STAGES))
    lines = [
        "usage: dontstop <stage> [options]    (dontstop <stage> --help for a stage's options and examples)",
        "",
        "Continued pretraining (DAPT/TAPT) of language models, measured.",
        "",
        "stages:",
    ]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in STAGES.items()]
    return "\n".join(lines)


def dispatch(stage: str, argv: list[str]) -> int:
    module = stage_module(stage)
    if hasattr(module, "main"):
        code = module.main(argv) or 0
    else:
        run(module, parse_with_config(make_parser(stage), argv))
        code = 0
    leave_process_group()
    return code


def leave_process_group() -> None:
    """Under torchrun, every rank waits for the others and leaves the process group before it exits. A rank that exits
    while rank 0 still writes (the carried weights, the model card) tears down gloo's threads in use: "terminate called
    without an active exception", SIGABRT, and torchrun fails the whole launch."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(top_level_help())
        return 0
    stage, rest = argv[0], [a for a in argv[1:] if a != "--verbose"]
    if stage not in STAGES:
        print(f"dontstop: error: unknown stage {stage!r} (stages: {', '.join(STAGES)})", file=sys.stderr)
        return 2
    from . import logs

    logs.setup(verbose_="--verbose" in argv[1:])
    try:
        from . import preflight

        preflight.check(stage, rest)  # --help and typing mistakes, answered before torch loads
        return dispatch(stage, rest)
    except UsageError as e:
        print(f"dontstop {stage}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
