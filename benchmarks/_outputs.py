"""Helpers shared by the benchmark scripts (run as `python benchmarks/<name>.py`, so this
folder is on `sys.path`)."""

import os
import sys


def refuse_to_overwrite(output, overwrite):
    """Exits with a message when ``output``.md or .json exists and ``overwrite`` is False."""
    for suffix in (".md", ".json"):
        if os.path.exists(output + suffix) and not overwrite:
            sys.exit(f"{output + suffix} exists; pass --overwrite to replace it.")
