"""Runs a test script on two logical CPU devices, for tf.distribute tests.

Logical devices must be configured before TensorFlow initialises, so each script runs in a
fresh Python process. The script prints one line ``RESULT <json>``. The scripts of
tests/two_cpu_cases.py share one process (:func:`shared_result`): one TensorFlow start-up.
"""

import fcntl
import json
import os
import subprocess
import sys
import textwrap

PREAMBLE = """
import json, os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ["CUDA_VISIBLE_DEVICES"] = ""
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
"""


def run_on_two_cpus(body, timeout=300):
    """Runs ``PREAMBLE + body`` in a new process and returns the JSON of its RESULT line."""
    repo = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", PREAMBLE + textwrap.dedent(body)],
                          capture_output=True, text=True, timeout=timeout, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT"):])


# Runs each script of BODIES in a namespace of its own, its output captured; an error is
# recorded under its name (the other scripts still run and their tests still pass).
_SEVERAL = """
import contextlib, io, traceback
results = {}
# One strategy for all: with a MirroredStrategy of its own per script, TRAIN_STEP's first
# all-reduce after the other two scripts failed with "Shape mismatch in the collective
# instance" (the strategies' collective instance keys met).
MIRRORED = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
for name, body in BODIES.items():
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            exec(body, {"__name__": "__main__", "json": json, "os": os, "np": np, "tf": tf,
                        "keras": keras, "MIRRORED": MIRRORED})
        lines = [line for line in printed.getvalue().splitlines() if line.startswith("RESULT")]
        results[name] = (json.loads(lines[-1][len("RESULT"):]) if lines else
                         {"error": "no RESULT line: " + printed.getvalue()[-3000:]})
    except Exception:
        results[name] = {"error": traceback.format_exc()[-3000:]}
print("RESULT" + json.dumps(results))
"""

_RESULTS = {}


def run_several_on_two_cpus(bodies, timeout=300):
    """Runs the scripts ``{name: body}`` one after another in ONE new process of two logical
    CPUs and returns ``{name: RESULT json}``; a script that failed gives ``{"error": ...}``.

    Example:
        >>> run_several_on_two_cpus({"a": 'print("RESULT" + json.dumps(len(tf.config.'
        ...                                '  list_logical_devices("CPU"))))'})
        {'a': 2}
    """
    return run_on_two_cpus(f"BODIES = {bodies!r}\n" + _SEVERAL, timeout=timeout)


def shared_result(tmp_path_factory, name):
    """The RESULT of script ``name`` of tests/two_cpu_cases.py. All its scripts run once per
    test session, in one process: under pytest-xdist the first worker to ask runs them and
    leaves the results in the run's shared temporary folder for the other (a file lock).

    Example (in a test module):
        >>> @pytest.fixture(scope="module")  # doctest: +SKIP
        ... def distributed_results(tmp_path_factory):
        ...     return shared_result(tmp_path_factory, "losses")
    """
    from two_cpu_cases import SCRIPTS

    if not _RESULTS:
        if os.environ.get("PYTEST_XDIST_WORKER") is None:  # one process: nothing to share
            _RESULTS.update(run_several_on_two_cpus(SCRIPTS))
        else:  # the parent of a worker's basetemp is this run's, common to its workers
            root = tmp_path_factory.getbasetemp().parent
            path = root / "two_cpu_results.json"
            with open(root / "two_cpu_results.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not path.is_file():
                    results = run_several_on_two_cpus(SCRIPTS)
                    path.with_suffix(".tmp").write_text(json.dumps(results))
                    path.with_suffix(".tmp").rename(path)
                _RESULTS.update(json.loads(path.read_text()))
    result = _RESULTS[name]
    assert not (isinstance(result, dict) and "error" in result), result.get("error")
    return result
