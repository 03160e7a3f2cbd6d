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
# The default of the benchmarks' CamVid flag: $KERAS_FCN_CAMVID (as the tests), else the shared
# copy beside the repository.
CAMVID_DIR = os.environ.get("KERAS_FCN_CAMVID", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "camvid"))
USER_ERROR_STATUS = 2  # as keras_fcn's scripts (keras_fcn.training.cli.run_main)
OUTPUT_DIR_HELP = "Folder of the report files (.md, .json); default benchmarks/results."
RUNS_DIR_HELP = "Folder of the training runs this benchmark starts (outside the repo)."
# {canonical flag: its older spelling}, accepted and hidden.
OLD_SPELLINGS = {"output_dir": "results_dir", "runs_dir": "out_dir"}


def fail(message):
    """Prints ``error: <message>`` on stderr, one line, and exits with status 2: a user error
    (a bad flag value, a file that exists), the way keras_fcn's scripts report one."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(USER_ERROR_STATUS)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, except that a bad flag prints one line (``error: <message>``, no
    usage block) on stderr; the exit status is argparse's 2.

    Example:
        >>> parser = ArgumentParser()
        >>> _ = parser.add_argument("--size", type=size_type, default=(180, 240))
        >>> parser.parse_args(["--size", "360x480"]).size
        (360, 480)
    """

    def error(self, message):
        fail(message)


def size_type(text):
    """argparse ``type`` of a ``HEIGHTxWIDTH`` flag: ``"360x480"`` -> ``(360, 480)``; anything
    else (one number, a size below 1, words) is a flag error naming the value."""
    parts = text.lower().split("x")
    if len(parts) == 2 and all(part.strip().isdigit() and int(part) > 0 for part in parts):
        return int(parts[0]), int(parts[1])
    raise argparse.ArgumentTypeError(
        f"expected HEIGHTxWIDTH with positive sizes (e.g. 180x240). Received: {text!r}")


def sizes_type(text):
    """argparse ``type`` of a comma-separated list of ``HEIGHTxWIDTH`` sizes."""
    return [size_type(part) for part in text.split(",")]


def widths_type(text):
    """argparse ``type`` of VGG16's five block widths: ``"8,8,16,16,16"`` -> a tuple of ints.

    Example:
        >>> widths_type("8,8,16,16,16")
        (8, 8, 16, 16, 16)
    """
    parts = text.split(",")
    if len(parts) == 5 and all(part.strip().isdigit() and int(part) > 0 for part in parts):
        return tuple(int(part) for part in parts)
    raise argparse.ArgumentTypeError(
        f"expected 5 comma-separated positive widths (e.g. 8,8,16,16,16). Received: {text!r}")


def positive_int(text):
    """argparse ``type`` of a count that must be at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1. Received: {text!r}")
    return value


def choices_type(allowed):
    """argparse ``type`` of a comma-separated list of names from ``allowed`` (a list back)."""
    def parse(text):
        names = [name for name in text.split(",") if name]
        unknown = [name for name in names if name not in allowed]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {', '.join(allowed)}. Received: {text!r}")
        return names
    return parse


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


def add_report_flags(parser, name, default=RESULTS):
    """Adds the report flags of a benchmark: ``--name`` (of the .md/.json files, default
    ``name``), ``--output_dir`` (:func:`add_output_dir`) and ``--overwrite``.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_report_flags(parser, "speed", "r")
        >>> args = parser.parse_args(["--overwrite"])
        >>> args.name, args.output_dir, args.overwrite
        ('speed', 'r', True)
    """
    parser.add_argument("--name", default=name, help="Name of the report files (.md/.json).")
    add_output_dir(parser, default)
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing report.")


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


def validate_absl_flags(flags, sizes=(), choices=None, files=(), counts=()):
    """Registers absl validators, so that a bad value stops the script while its flags are
    parsed (with ``keras_fcn.training.run_main``: one line, exit status 2), before anything
    runs: ``sizes`` are HEIGHTxWIDTH flags, ``choices`` maps a list flag to its allowed names,
    ``files`` are paths that must exist when given, ``counts`` integers that must be >= 1."""
    def check(parse):
        def valid(value):
            try:
                parse(value)
            except argparse.ArgumentTypeError as error:
                raise flags.ValidationError(str(error)) from None
            return True
        return valid

    for name in sizes:
        flags.register_validator(name, check(size_type))
    for name, allowed in (choices or {}).items():
        flags.register_validator(name, check(lambda value, allowed=allowed: choices_type(
            allowed)(",".join(value))))
    for name in files:
        flags.register_validator(name, lambda path: path is None or os.path.isfile(path),
                                 message="expected an existing file")
    for name in counts:
        flags.register_validator(name, lambda value: value >= 1, message="expected >= 1")


def absl_report_base(flag_values):
    """``<output_dir>/<name>``, or the older ``--output`` prefix when it was given."""
    if flag_values.output:
        return flag_values.output
    return os.path.join(flag_values.output_dir, flag_values.name)


def refuse_to_overwrite(output, overwrite, suffixes=(".md", ".json")):
    """Exits (status 2, one line, see :func:`fail`) when ``output`` + one of ``suffixes``
    exists and ``overwrite`` is False: a saved result is never replaced by accident."""
    for suffix in suffixes:
        if os.path.exists(output + suffix) and not overwrite:
            fail(f"{output + suffix} exists; pass --overwrite to replace it.")


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


def median_seconds(fn, repeats):
    """Median wall-clock seconds of ``fn()`` over ``repeats`` calls, after one warm-up call
    (imports, kernel selection, compilation)."""
    import statistics
    import time

    fn()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


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
