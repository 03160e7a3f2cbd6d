"""A resumed run reads the batches an uninterrupted run reads: the order and the random
augmentation of the epochs after the backup, not the first epochs' again
(`keras_fcn.training.data_order.ResumeDataOrder`). The PyDataset case is in backend_cases.py (run on
TensorFlow, JAX and PyTorch); here the tf.data ones."""

import numpy as np
import pytest
import tensorflow as tf

from resume_order import AUGMENT, check_resume_reads_the_uninterrupted_batches, py_data
from keras_fcn.datasets import shapes
from keras_fcn.training.data_order import advance_data, fit_iterators_per_epoch


def _tf_data():
    return shapes.shapes_tf_dataset(6, size=32, **AUGMENT)


def test_a_resumed_tf_data_run_trains_on_the_batches_of_an_uninterrupted_run(tmp_path):
    check_resume_reads_the_uninterrupted_batches(_tf_data, tmp_path)


def _first_batch(data):
    batch = next(iter(data)) if isinstance(data, tf.data.Dataset) else data[0]
    return np.asarray(batch[1])


def test_advance_data_moves_a_dataset_on_as_reading_does(tmp_path):
    read = _tf_data()
    epochs = [_first_batch(read) for _ in range(3)]  # each iterator: the next epoch's draws
    moved = _tf_data()
    assert advance_data(moved, 2) and np.array_equal(_first_batch(moved), epochs[2])
    assert not np.array_equal(epochs[0], epochs[2])
    twice = _tf_data()
    assert advance_data(twice, 1, iterators_per_epoch=2)
    assert np.array_equal(_first_batch(twice), epochs[2])
    assert fit_iterators_per_epoch() == 2  # Keras' TF epoch iterator (see its docstring)
    py = py_data(tmp_path / "shapes")
    first = _first_batch(py)
    assert advance_data(py, 2) and py.epoch == 2
    assert not np.array_equal(_first_batch(py), first)
    assert advance_data(py, 1, extra=1) and py.epoch == 4
    # an endless stream cannot be moved on; nothing to move is no failure
    assert not advance_data(_tf_data().repeat(), 1)
    assert advance_data(_tf_data().repeat(), 0)


@pytest.mark.slow
def test_a_resumed_tf_data_run_on_jax_reads_the_uninterrupted_batches():
    """On JAX, Keras makes one tf.data iterator per epoch (fit_iterators_per_epoch)."""
    from test_backends import _run
    result = _run(["-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", __file__, "-k",
                   "tf_data_run_trains"], "jax", block_tf=False)
    assert result.returncode == 0 and " passed" in result.stdout, result.stdout[-3000:]


def test_a_resumed_staged_run_moves_the_data_on_by_the_stages_it_skips(tmp_path, monkeypatch):
    """FCN-32s finished (3 epochs) before the kill: the FCN-16s stage trained in this process
    starts on the data after those epochs, as in an uninterrupted staged run."""
    import sys

    from keras_fcn.training import TrainConfig
    recipe = sys.modules["keras_fcn.training.recipe"]
    finished = {"32s": {"status": "completed", "history": [{}, {}, {}]}}
    monkeypatch.setattr(recipe, "finished_run",
                        lambda stage_dir, epochs: finished.get(stage_dir[-3:]))
    monkeypatch.setattr(recipe, "_load_finished", lambda stage_dir: "model32")
    calls = []

    def train_one(config, stage, **kwargs):
        calls.append((stage, kwargs["skipped_fits"], kwargs["weights"]))
        return f"model{stage}", {"status": "completed"}

    monkeypatch.setattr(recipe, "train_one", train_one)
    recipe.train_staged(TrainConfig(), run_dir=str(tmp_path), data=None, strategy=None,
                        class_weights=None, pixels=100)
    assert calls == [("16s", (3,), "model32"), ("8s", (3,), "model16s")]
