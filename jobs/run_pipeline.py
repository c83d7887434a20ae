"""Cluster entry point: ``ray job submit --working-dir . -- python jobs/run_pipeline.py CONFIG --output DIR``.

Under ``ray job submit`` Ray sets RAY_ADDRESS, so the runner joins the cluster instead of starting one; the run
directory must be on storage every node sees (a shared filesystem). Same options as ``swallow run``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the working dir Ray uploaded

from pipeline.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
