"""Helpers shared by the benchmark scripts (run as `python benchmarks/<name>.py`, so this
folder is on `sys.path`).

The scripts' folders have one spelling each, added here: ``--output_dir`` is where a report
goes (``<name>.md``, ``<name>.json``; default ``benchmarks/results``) and ``--runs_dir`` where
the training runs a benchmark starts go (outside the repo). The older spellings still work
and are not shown in ``--help``: ``--results_dir`` (and the absl scripts' ``--output``
prefix) for ``--output_dir``, ``--out_dir`` for ``--runs_dir``.
"""

import argparse
import os
import sys

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
OUTPUT_DIR_HELP = "Folder of the report files (.md, .json); default benchmarks/results."
RUNS_DIR_HELP = "Folder of the training runs this benchmark starts (outside the repo)."
# {canonical flag: its older spelling}, accepted and hidden.
OLD_SPELLINGS = {"output_dir": "results_dir", "runs_dir": "out_dir"}


def add_output_dir(parser, default=RESULTS):
    """Adds ``--output_dir`` (and its hidden older spelling ``--results_dir``) to an argparse
    ``parser``.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_output_dir(parser, "r")
        >>> parser.parse_args([]).output_dir, parser.parse_args(["--results_dir", "x"]).output_dir
        ('r', 'x')
    """
    _add_dir(parser, "output_dir", default, OUTPUT_DIR_HELP)


def add_runs_dir(parser, default):
    """Adds ``--runs_dir`` (and its hidden older spelling ``--out_dir``) to an argparse
    ``parser``."""
    _add_dir(parser, "runs_dir", default, RUNS_DIR_HELP)


def _add_dir(parser, name, default, help_text):
    parser.add_argument(f"--{name}", default=default, help=help_text)
    parser.add_argument(f"--{OLD_SPELLINGS[name]}", dest=name, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)


def define_absl_dirs(flags, output_dir=RESULTS, runs_dir=None, name=None):
    """Defines ``--output_dir`` (and ``--runs_dir`` when ``runs_dir`` is given; ``--name`` and
    the older prefix ``--output`` when ``name`` is) as absl flags of the calling script, with
    the older spellings as aliases that its ``--help`` leaves out (absl lists them under
    ``--helpfull``, as flags of this module). :func:`absl_report_base` reads them."""
    caller = sys._getframe(1).f_globals.get("__name__")  # pylint: disable=protected-access
    script = sys.argv[0] if caller == "__main__" else caller  # absl's name for the module
    flags.DEFINE_string("output_dir", output_dir, OUTPUT_DIR_HELP, module_name=script)
    flags.DEFINE_alias(OLD_SPELLINGS["output_dir"], "output_dir")
    if runs_dir is not None:
        flags.DEFINE_string("runs_dir", runs_dir, RUNS_DIR_HELP, module_name=script)
        flags.DEFINE_alias(OLD_SPELLINGS["runs_dir"], "runs_dir")
    if name is not None:
        flags.DEFINE_string("name", name, "Name of the report files.", module_name=script)
        flags.DEFINE_string("output", None, "Older spelling of --output_dir and --name as one "
                            "prefix (<prefix>.md, <prefix>.json).")


def absl_report_base(flag_values):
    """``<output_dir>/<name>``, or the older ``--output`` prefix when it was given."""
    if flag_values.output:
        return flag_values.output
    return os.path.join(flag_values.output_dir, flag_values.name)


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


def cpu_line():
    """The CPU model and its ISA flags that matter here (as keras_fcn.runtime describes them):
    every benchmark prints it beside its figures."""
    from keras_fcn import runtime

    return runtime.describe(runtime.cpu_info())


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
