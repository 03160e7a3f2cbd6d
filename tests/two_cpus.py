"""Runs a test script on two logical CPU devices, for tf.distribute tests.

Logical devices must be configured before TensorFlow initialises, so each script runs in a
fresh Python process. The script prints one line ``RESULT <json>``.
"""

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
