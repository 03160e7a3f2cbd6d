"""The scripts of tools/ and examples/ loaded in-process as modules, their absl flags parsed
from a list: a CLI check without a new Python process (about 10 s of TensorFlow import each)."""

import contextlib
import importlib.util
import os

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
def script(path, name, *argv):
    """The script at ``path`` loaded as module ``name`` with its flags parsed from ``argv``;
    its flags are removed afterwards."""
    before, was_parsed = set(FLAGS), FLAGS.is_parsed()
    try:
        module = load_script(path, name)
        FLAGS([os.path.basename(path), *argv])
        yield module
    finally:
        for flag in set(FLAGS) - before:
            delattr(FLAGS, flag)
        if not was_parsed:
            FLAGS.unparse_flags()


def tool(name, *argv):
    """tools/<name>.py as :func:`script` (every tool defines --model: one tool at a time)."""
    return script(os.path.join("tools", f"{name}.py"), f"cli_tools_{name}", *argv)
