"""Names a ``KERAS_BACKEND`` that Keras cannot load before Keras fails on it.

Keras read the variable as it was imported and failed with its own traceback
("ValueError: Unable to import backend : jx", or jax's ModuleNotFoundError when the backend's
package is not installed). `check` runs first in ``keras_fcn/__init__.py``: in the project's
command-line scripts (tools/, examples/, benchmarks/) it prints ``error: <message>`` and exits
with status 2, as their other user errors do; elsewhere it raises an ImportError that says
which value was wrong and what was expected.
"""

import importlib.util
import os
import sys

# Keras 3's backends and the package each needs.
BACKEND_PACKAGES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch",
                    "numpy": "numpy", "openvino": "openvino"}
_SCRIPT_FOLDERS = ("tools", "examples", "benchmarks")


def problem(environ=None):
    """What is wrong with ``KERAS_BACKEND`` in ``environ`` (default ``os.environ``), or None.

    Example:
        problem({"KERAS_BACKEND": "jx"})   # "KERAS_BACKEND='jx' is not a Keras backend: ..."
    """
    name = (os.environ if environ is None else environ).get("KERAS_BACKEND")
    if not name:  # unset or empty: Keras takes ~/.keras/keras.json's backend
        return None
    if name not in BACKEND_PACKAGES:
        return (f"KERAS_BACKEND={name!r} is not a Keras backend: expected 'tensorflow', 'jax' "
                "or 'torch' (keras_fcn trains on these three), or unset for Keras' default")
    package = BACKEND_PACKAGES[name]
    if package not in sys.modules and importlib.util.find_spec(package) is None:
        return (f"KERAS_BACKEND={name!r} needs the {package} package, which is not installed "
                f"here: pip install {package}, or set KERAS_BACKEND to an installed backend")
    return None


def _in_a_script():
    """Whether this process runs one of the project's command-line scripts."""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if not path:
        return False
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    folder = os.path.dirname(os.path.abspath(path))
    return os.path.dirname(folder) == root and os.path.basename(folder) in _SCRIPT_FOLDERS


def check():
    """Stops with a clear message when ``KERAS_BACKEND`` names no loadable Keras backend."""
    message = problem()
    if message is None:
        return
    if _in_a_script():
        print(f"error: {message}", file=sys.stderr, flush=True)
        raise SystemExit(2)
    raise ImportError(message)
