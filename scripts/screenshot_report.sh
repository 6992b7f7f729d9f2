#!/usr/bin/env bash
# Look at an experiment report the way people will: a headless Chromium screenshot, and a PDF for how it prints.
#
#   scripts/screenshot_report.sh runs/demo/report.html   # -> report.png and report.pdf beside it
#   scripts/screenshot_report.sh                                # the test suite's fake experiment, in /tmp
#
# Needs chromium (Debian: apt-get install -y chromium); not part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -ge 1 ]]; then
    page=$(realpath "$1")
else
    root=$(mktemp -d /tmp/dontstop-report.XXXXXX)
    .venv/bin/python - "$root" <<'PY'
import pathlib
import sys

sys.path.insert(0, "tests")
import numpy as np
from test_report import make_summary

from dontstop.inspect import heatmap
from dontstop.report import write_report

root = pathlib.Path(sys.argv[1])
(root / "inspect").mkdir()
names, matrix = ["general", "domain", "task"], np.array([[100, 31.5, 28.2], [31.5, 100, 61.7], [28.2, 61.7, 100]])
heatmap(str(root / "inspect" / "overlap.png"), names, matrix, "Overlap of the top-10,000 words (%)")
write_report(make_summary(root, str(root / "inspect")), str(root / "report"))
PY
    page=$root/report/report.html
fi
flags=(--headless --no-sandbox --disable-gpu --hide-scrollbars)
chromium "${flags[@]}" --window-size=1280,2400 --screenshot="${page%.html}.png" "file://$page" 2>/dev/null
chromium "${flags[@]}" --no-pdf-header-footer --print-to-pdf="${page%.html}.pdf" "file://$page" 2>/dev/null
echo "${page%.html}.png"
echo "${page%.html}.pdf"
