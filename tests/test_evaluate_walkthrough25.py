"""tools/evaluate.py fed raw RGB 0..255 to a model without its own preprocess layer (every
tools/convert_weights.py output, the README's build_fcn8s): a wrong mean IU and no warning,
while tools/predict.py applied the trunk's preprocessing. The trunk walkthrough of
2026-12-07 (session 25) found it; the test fails before the fix."""

import json

import keras
import numpy as np

from keras_fcn import preprocess_input
from tiny import tiny_fcn
from tool_flags import run_in_process

SHAPES = ("--dataset=shapes", "--num_val=6", "--shapes_size=40", "--seed=1")


def _twins():
    """The same tiny FCN-8s without and with its preprocess layer (equal weights)."""
    keras.utils.set_random_seed(3)
    bare = tiny_fcn(num_classes=4, seed=2, scale=1.0)
    keras.utils.set_random_seed(3)
    inside = tiny_fcn(num_classes=4, seed=2, scale=1.0, include_preprocessing=True)
    x = np.random.default_rng(0).uniform(0, 255, (1, 40, 40, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(bare(preprocess_input(x))), np.asarray(inside(x)),
                               atol=1e-5)
    return bare, inside


def test_a_model_without_its_preprocessing_scores_as_the_one_with_it(tmp_path):
    scores = {}
    for name, model in zip(("bare", "inside"), _twins()):
        path = tmp_path / f"{name}.keras"
        model.save(path)
        done = run_in_process("tools/evaluate.py", f"--model={path}", *SHAPES,
                              f"--output={tmp_path / name}.json")
        assert done.returncode == 0, done.stderr[-2000:]
        assert ("the trunk preprocessing applied" in done.stdout) == (name == "bare")
        scores[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert scores["bare"]["confusion_matrix"] == scores["inside"]["confusion_matrix"]
    assert 0 < scores["bare"]["mean_iu"] < 1
