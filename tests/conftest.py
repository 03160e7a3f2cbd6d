"""Test settings: quiet TensorFlow, CPU only, deterministic seeds."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# Tests run the graph path (no XLA compile per input size: the suite stays fast); the tests of
# keras_fcn.runtime and the equivalence tests run the XLA and bfloat16 paths explicitly.
os.environ.setdefault("KERAS_FCN_JIT", "0")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

CAMVID_DIR = os.environ.get(
    "KERAS_FCN_CAMVID",
    os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "camvid"),
)


@pytest.fixture(autouse=True)
def _seed():
    import keras

    keras.utils.set_random_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture
def camvid_dir():
    """Path of the real CamVid folder; the test is skipped when it is absent."""
    path = os.path.abspath(CAMVID_DIR)
    if not os.path.isfile(os.path.join(path, "train.txt")):
        pytest.skip(f"CamVid not found at {path} (set KERAS_FCN_CAMVID)")
    return path


def pytest_terminal_summary(terminalreporter):
    """Prints the fuzz cases tried per target after the run (when tests/test_fuzz.py ran), and
    saves them as JSON to $KERAS_FCN_FUZZ_COUNTS if set."""
    import json
    import sys

    fuzz_cases = sys.modules.get("fuzz_cases")
    counts = getattr(fuzz_cases, "COUNTS", None)
    if not counts:
        return
    total = sum(counts.values())
    terminalreporter.section(f"fuzz cases tried (seed {fuzz_cases.SEED}): {total}")
    for target, count in sorted(counts.items()):
        terminalreporter.write_line(f"  {count:5d}  {target}")
    if os.environ.get("KERAS_FCN_FUZZ_COUNTS"):
        with open(os.environ["KERAS_FCN_FUZZ_COUNTS"], "w", encoding="utf-8") as f:
            json.dump(dict(sorted(counts.items()), total=total, seed=fuzz_cases.SEED), f,
                      indent=2)
