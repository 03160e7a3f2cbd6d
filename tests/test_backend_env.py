"""A KERAS_BACKEND that Keras cannot load is named before Keras fails on it
(keras_fcn._backend_env): the scripts print one line and exit 2, the library raises an
ImportError naming the value. Keras' own import traceback ended in "Unable to import backend"."""

import os
import subprocess
import sys

import pytest

from keras_fcn import _backend_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("name", ["tensorflow", "jax", "torch", "", None])
def test_loadable_backends_and_keras_default_pass(name):
    environ = {} if name is None else {"KERAS_BACKEND": name}
    assert _backend_env.problem(environ) is None


def test_an_unknown_backend_and_a_missing_package_are_named(monkeypatch):
    message = _backend_env.problem({"KERAS_BACKEND": "Jax"})
    assert message.startswith("KERAS_BACKEND='Jax' is not a Keras backend: expected 'tensorflow',")
    monkeypatch.setitem(_backend_env.BACKEND_PACKAGES, "jax", "keras_fcn_no_such_package")
    monkeypatch.delitem(sys.modules, "keras_fcn_no_such_package", raising=False)
    message = _backend_env.problem({"KERAS_BACKEND": "jax"})
    assert "KERAS_BACKEND='jax' needs the keras_fcn_no_such_package package" in message


def _run(args):
    environ = dict(os.environ, KERAS_BACKEND="jx",
                   PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=environ, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("script", ["tools/predict.py", "examples/own_trunk.py"])
def test_scripts_print_the_backend_error_and_exit_2(script):
    result = _run([script, "--help"])
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: KERAS_BACKEND='jx' is not a Keras backend: expected 'tensorflow', 'jax' or "
        "'torch' (keras_fcn trains on these three), or unset for Keras' default")


def test_the_library_raises_an_import_error_naming_the_value():
    result = _run(["-c", "import keras_fcn"])
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        "ImportError: KERAS_BACKEND='jx' is not a Keras backend")
    assert "Unable to import backend" not in result.stderr  # Keras never got to read it
