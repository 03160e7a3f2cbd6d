"""Helpers shared by the benchmark scripts (run as `python benchmarks/<name>.py`, so this
folder is on `sys.path`)."""

import os
import sys


def refuse_to_overwrite(output, overwrite):
    """Exits with a message when ``output``.md or .json exists and ``overwrite`` is False."""
    for suffix in (".md", ".json"):
        if os.path.exists(output + suffix) and not overwrite:
            sys.exit(f"{output + suffix} exists; pass --overwrite to replace it.")


def camvid_missing(path, flag, needs=("train.txt",)):
    """The "CamVid not found" message when the folder ``path`` lacks one of the list files
    ``needs``, else None (see :func:`camvid_found`, which prints it)."""
    missing = [name for name in needs if not os.path.isfile(os.path.join(path, name))]
    if not missing:
        return None
    return (f"CamVid not found in {os.path.abspath(path)!r} (no {' or '.join(missing)}; "
            f"pass {flag}): skipped.")


def camvid_found(path, flag, needs=("train.txt",)):
    """True when the CamVid folder ``path`` has the list files ``needs``; otherwise prints one
    message naming the folder, the missing files and the benchmark's ``flag``, and returns
    False: the caller then returns, a clean skip (exit status 0).

    Example:
        >>> camvid_found("/nope", "--data_dir", needs=("train.txt", "val.txt"))
        CamVid not found in '/nope' (no train.txt or val.txt; pass --data_dir): skipped.
        False

    In a benchmark's ``main()``::

        if not _outputs.camvid_found(args.data_dir, "--data_dir", needs=("val.txt",)):
            return
    """
    message = camvid_missing(path, flag, needs)
    if message:
        print(message, flush=True)
    return message is None


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
