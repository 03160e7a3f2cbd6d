"""Test settings: quiet TensorFlow, CPU only, deterministic seeds."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# Tests run the graph path (no XLA compile per input size: the suite stays fast); the tests of
# keras_fcn.runtime and the equivalence tests run the XLA and bfloat16 paths explicitly.
os.environ.setdefault("KERAS_FCN_JIT", "0")
# XLA's CPU backend compiles with LLVM's -O0 here (its HLO passes all run): the tests compile
# hundreds of tiny programs (each JAX initializer shape is one: ~0.6 s at -O2 against ~0.07 s)
# and run each for milliseconds. Subprocesses inherit it. The JAX backend's cases ran in
# 165 s against 225 s (2 busy cores); benchmarks never set it.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_backend_optimization_level=0").strip()

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


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    """Module-, class- and session-scoped fixtures start from seed 0 too: they are set up
    before the function-scoped seed above, where the tests run earlier in the same xdist
    worker left the random state. A tiny FCN built there got its trunk from whatever state
    that was (on CI one predicted a single class at every size, and a test failed)."""
    if fixturedef.scope != "function":
        import keras

        keras.utils.set_random_seed(0)
        np.random.seed(0)
    yield


@pytest.fixture
def eager_tf():
    """Runs TensorFlow's functions eagerly during the test: tracing a tiny model's train, test
    and predict steps costs more than running them (the dilated ResNet50's one-step recipe: ~25 s
    eager against ~85 s traced, 2 busy cores). For tests of the plumbing around a model whose
    graph path other tests run; tf.data functions still trace."""
    import tensorflow as tf

    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)


@pytest.fixture
def registry():
    """The trunk registry (keras_fcn.models.trunk.TRUNKS) as it was, restored after the test:
    for tests that register trunks of their own."""
    from keras_fcn.models.trunk import TRUNKS

    saved = dict(TRUNKS)
    yield
    TRUNKS.clear()
    TRUNKS.update(saved)


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


@pytest.fixture
def opens(monkeypatch):
    """The paths builtins.open and PIL.Image.open are called with (PIL opens with builtins)."""
    import builtins

    from PIL import Image

    calls = []
    real_open, real_image_open = builtins.open, Image.open

    def counting_open(file, *args, **kwargs):
        calls.append(("open", os.fspath(file) if isinstance(file, (str, os.PathLike)) else file))
        return real_open(file, *args, **kwargs)

    def counting_image_open(fp, *args, **kwargs):
        calls.append(("Image.open", fp))
        return real_image_open(fp, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(Image, "open", counting_image_open)
    return calls


@pytest.fixture
def downloads(monkeypatch):
    """The URLs keras.utils.get_file is asked for (it fails: nothing may be downloaded)."""
    import keras

    calls = []

    def get_file(fname, origin, **kwargs):
        calls.append(origin)
        raise AssertionError(f"downloaded {origin}")

    monkeypatch.setattr(keras.utils, "get_file", get_file)
    return calls


@pytest.fixture
def labeled_mat(tmp_path):
    """A fake NYUDv2 labeled.mat (4 images, 16x20) and its class mapping: their paths."""
    from keras_fcn.datasets import nyud

    mat, mapping = str(tmp_path / "labeled.mat"), str(tmp_path / "mapping.mat")
    nyud.write_fake_labeled_mat(mat, num_images=4, height=16, width=20)
    nyud.write_fake_class_mapping(mapping)
    return mat, mapping
