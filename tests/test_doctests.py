"""The `>>>` examples of the library's docstrings run and show their real outputs.

Each module's examples run in a fresh folder with ``np``, ``keras``, ``keras_fcn`` and the
module's own names. Examples that download, need a data set or take more than a second carry
``# doctest: +SKIP``; an example that cannot run as written is a plain code block (no ``>>>``).
"""

import doctest
import importlib
import pkgutil

import keras
import numpy as np
import pytest

import keras_fcn

# Not collected yet, each with why (removing a line adds its modules to the suite).
NOT_YET = {}  # {module prefix: why its examples are not run yet}; every module runs now
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _modules():
    names = ["keras_fcn"] + [m.name for m in pkgutil.walk_packages(keras_fcn.__path__,
                                                                   "keras_fcn.")]
    return [name for name in names
            if not any(name == prefix or name.startswith(prefix + ".") for prefix in NOT_YET)]


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    try:
        module = importlib.import_module(name)
    except ImportError as error:  # an optional dependency (OpenCV, TFDS) is not installed
        pytest.skip(f"{name}: {error}")
    monkeypatch.chdir(tmp_path)  # an example that writes files writes them here
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    policy = keras.config.dtype_policy()
    report = []
    for test in doctest.DocTestFinder(exclude_empty=True).find(module):
        if test.examples and test.filename == module.__file__:  # not re-exported names'
            test.globs = {"np": np, "keras": keras, "keras_fcn": keras_fcn, **vars(module)}
            runner.run(test, out=report.append)
    keras.config.set_dtype_policy(policy)  # what the examples set stays in them
    if runner.tries:  # layer names restart for the next module; no gc.collect (0.6 s a module
        keras.backend.clear_session(free_memory=False)  # in the suite's large processes)
    assert runner.failures == 0, "".join(report)
