"""The scripts of tools/ and examples/ loaded in-process as modules, their absl flags parsed
from a list: a CLI check without a new Python process (about 10 s of TensorFlow import each)."""

import contextlib
import importlib.util
import io
import os
import re
import subprocess
import sys

from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS


def load_script(path, name):
    """The script at ``path`` (relative to the repository root or absolute) as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def flags_removed():
    """Removes, on exit, the absl flags defined inside (a script's), and unparses the flags if
    they were not parsed before."""
    before, was_parsed = set(FLAGS), FLAGS.is_parsed()
    try:
        yield
    finally:
        for flag in set(FLAGS) - before:
            delattr(FLAGS, flag)
        if not was_parsed:
            FLAGS.unparse_flags()


@contextlib.contextmanager
def script(path, name, *argv):
    """The script at ``path`` loaded as module ``name`` with its flags parsed from ``argv``;
    its flags are removed afterwards."""
    with flags_removed():
        module = load_script(path, name)
        FLAGS([os.path.basename(path), *argv])
        yield module


def tool(name, *argv):
    """tools/<name>.py as :func:`script` (every tool defines --model: one tool at a time)."""
    return script(os.path.join("tools", f"{name}.py"), f"cli_tools_{name}", *argv)


CPP_LOG = re.compile(r"[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\]"
                      r"|WARNING: All log messages before absl::InitializeLog"
                      r"|To enable the following instructions")


def run_script(script, *args):
    """``python <script> *args`` in a new process from the repository root (quiet TF, no GPU)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)


def run_in_process(script, *args, positional=False):
    """``python <script> *args`` run in this process, as the script's ``__main__`` block runs
    it: its ``main`` through ``keras_fcn.training.cli.run_main`` (a user error: one ``error:``
    line on stderr, status 2), stdout and stderr captured. Returns a
    ``subprocess.CompletedProcess`` like :func:`run_script`'s, without a TensorFlow start-up
    (~5 s). The script's flags are removed afterwards. For scripts whose ``__main__`` block is
    ``run_main(main)`` (``positional``: ``run_main(main, positional=True)``).

    Example:
        >>> done = run_in_process("tools/evaluate.py", "--model=none.keras", "--scales=1,0")
        >>> done.returncode, done.stderr.startswith("error: `scales`")
        (2, True)
    """
    from absl import app  # pylint: disable=import-outside-toplevel

    from keras_fcn.training.cli import run_main  # pylint: disable=import-outside-toplevel

    # absl defines --help and its kin once per process, at the first app.run: defined here,
    # they are not among the flags removed afterwards.
    app.define_help_flags()
    name = "in_process_" + re.sub(r"\W", "_", script)
    out, err, status = io.StringIO(), io.StringIO(), 0
    with flags_removed():
        module = load_script(script, name)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                run_main(module.main, argv=[os.path.basename(script), *args],
                         positional=positional)
            except SystemExit as exit_:
                status = exit_.code or 0
    return subprocess.CompletedProcess([script, *args], status, out.getvalue(), err.getvalue())


def one_error_line(done):
    """The one line a script printed on stderr for a user error (exit status 2, no traceback);
    TensorFlow's C++ start-up lines are not the script's."""
    lines = [line for line in done.stderr.splitlines() if line.strip() and not CPP_LOG.match(line)]
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(lines) == 1, done.stderr
    return lines[0]
