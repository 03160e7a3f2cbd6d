"""Helpers shared by the benchmark scripts (run as `python benchmarks/<name>.py`, so this
folder is on `sys.path`)."""

import os
import sys


def refuse_to_overwrite(output, overwrite):
    """Exits with a message when ``output``.md or .json exists and ``overwrite`` is False."""
    for suffix in (".md", ".json"):
        if os.path.exists(output + suffix) and not overwrite:
            sys.exit(f"{output + suffix} exists; pass --overwrite to replace it.")


def save_report(output_dir, name, markdown, data):
    """Writes ``output_dir/name.md`` (the Markdown report) and ``output_dir/name.json``,
    atomically (:mod:`keras_fcn.io`)."""
    from keras_fcn import io

    base = os.path.join(output_dir, name)
    io.write_bytes(base + ".md", markdown.rstrip("\n") + "\n")
    io.write_json(base + ".json", data)


def per_class_table(first_column, names, rows):
    """Markdown lines of a per-class IU (%) table: ``rows`` are (label, per-class IU in 0..1,
    None for a class absent from the labels, shown as "-")."""
    lines = [f"| {first_column} | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for label, per_class in rows:
        lines.append(f"| {label} | " + " | ".join(
            "-" if v is None else f"{100 * v:.1f}" for v in per_class) + " |")
    return lines
