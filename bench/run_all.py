"""`make bench`: every benchmark in bench/, with its default settings."""

from __future__ import annotations

import runpy
from pathlib import Path

if __name__ == "__main__":
    runpy.run_path(str(Path(__file__).with_name("pruning.py")), run_name="__main__")
