"""Test settings: quiet TensorFlow, CPU only, deterministic seeds."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

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
