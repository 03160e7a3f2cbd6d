"""A resumed run reads the batches an uninterrupted run reads: the order and the random
augmentation of the epochs after the backup, not the first epochs' again
(`keras_fcn.training.data_order.ResumeDataOrder`). The PyDataset case is in backend_cases.py (run on
TensorFlow, JAX and PyTorch); here the tf.data ones. The first runs the graph path users run;
the others run TensorFlow's functions eagerly (`eager_tf`: the order of the data is the same,
their fits cost ~40% less; breaking `advance_data` fails them as it fails the graph path)."""

import contextlib
import io

import keras
import numpy as np
import pytest
import tensorflow as tf

from kill_callbacks import Epochs, Killed
from resume_order import AUGMENT, check_resume_reads_the_uninterrupted_batches, losses, py_data
from tiny import tiny_fcn
from keras_fcn import training as train
from keras_fcn.datasets import shapes
from keras_fcn.training.data_order import advance_data, fit_iterators_per_epoch


def _tf_data():
    return shapes.shapes_tf_dataset(6, size=32, **AUGMENT)


def test_a_resumed_tf_data_run_trains_on_the_batches_of_an_uninterrupted_run(tmp_path):
    check_resume_reads_the_uninterrupted_batches(_tf_data, tmp_path)


def _unknown_size_data():
    data = _tf_data().filter(lambda image, mask: True)  # filter: the size is unknown
    assert int(data.cardinality()) == int(tf.data.UNKNOWN_CARDINALITY)
    return data


def test_a_resumed_run_on_tf_data_of_unknown_size_reads_the_uninterrupted_batches(tmp_path,
                                                                                  eager_tf):
    """Keras makes one iterator per epoch of a set of unknown size (two of a known size on
    TensorFlow): before, such data started again from its first batch on a resume."""
    assert fit_iterators_per_epoch(_unknown_size_data()) == 1
    whole = losses(_unknown_size_data, str(tmp_path / "whole"))
    # Killed after epoch 2: two epochs moved on, so the count per epoch is checked, not only
    # the first move (a kill after epoch 1 as well cost the suite ~15 s and checked no more).
    run_dir = str(tmp_path / "killed")
    assert losses(_unknown_size_data, run_dir, kill_at=3) is None
    np.testing.assert_allclose(losses(_unknown_size_data, run_dir), whole, rtol=1e-5)


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
    assert fit_iterators_per_epoch() == fit_iterators_per_epoch(read) == 2  # Keras' TF epochs
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
    starts on the data after those epochs, as in an uninterrupted staged run, and FCN-8s
    where FCN-16s left it."""
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
    # FCN-8s follows a stage trained here, which moved the data past FCN-32s's epochs: the
    # walkthrough of 2026-12-06 found it moved past them again, (3,) (other 8s losses).
    assert calls == [("16s", (3,), "model32"), ("8s", (), "model16s")]


# Review of the eighth session: resumed runs that did not read the batches of an uninterrupted
# run, and said nothing (mended in keras_fcn/training/data_order.py); each takes ~10 s.


class FirstBatchEpoch(keras.callbacks.Callback):
    """Records the PyDataset's epoch (which keys its order and draws) at each epoch's first
    batch."""

    def __init__(self, data):
        super().__init__()
        self.data, self.epochs = data, []

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.epochs.append(self.data.epoch)


def _fit(data, run_dir, epochs, *, seed=0, scope=contextlib.nullcontext, **kwargs):
    keras.utils.set_random_seed(seed)
    with scope():
        model = tiny_fcn("32s", 4, include_preprocessing=True)
        train.compile_model(model, num_classes=4, ignore_label=255,
                            optimizer=train.make_optimizer("adam", 1e-2), jit_compile=False)
    return train.fit(model, data, None, run_dir=run_dir, epochs=epochs,
                     info=shapes.SHAPES_INFO, verbose=0, **kwargs)


def test_a_stage_after_a_skipped_stage_reads_the_pydataset_epoch_of_an_uninterrupted_run(
        tmp_path, eager_tf):
    data = py_data(tmp_path / "shapes")
    _fit(data, str(tmp_path / "a"), 1, seed=1)  # the first stage, in the same process
    whole = FirstBatchEpoch(data)
    _fit(data, str(tmp_path / "b"), 1, callbacks=[whole])
    fresh = py_data(tmp_path / "shapes")  # a resumed process: the first stage is finished
    resumed = FirstBatchEpoch(fresh)
    _fit(fresh, str(tmp_path / "c"), 1, callbacks=[resumed], skipped_fits=(1,))
    assert resumed.epochs == whole.epochs  # now [2] against [3]


def test_a_stage_after_a_skipped_stage_reads_the_tf_data_of_an_uninterrupted_run_in_a_scope(
        tmp_path, eager_tf):
    import tensorflow as tf

    def make_data():
        keras.utils.set_random_seed(123)
        return shapes.shapes_tf_dataset(6, size=32, **AUGMENT)

    def scope():
        return tf.distribute.OneDeviceStrategy("/cpu:0").scope()

    data = make_data()
    _fit(data, str(tmp_path / "a"), 2, seed=1, scope=scope)
    whole = _fit(data, str(tmp_path / "b"), 2, scope=scope)
    resumed = _fit(make_data(), str(tmp_path / "c"), 2, scope=scope, skipped_fits=(2,))
    np.testing.assert_allclose([e["loss"] for e in resumed["history"]],
                               [e["loss"] for e in whole["history"]], rtol=1e-5)


def test_a_pydataset_resume_with_steps_per_epoch_matches_or_says_so(tmp_path, eager_tf):
    def losses(run_dir, kill_at=None):
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                report = _fit(py_data(tmp_path / "shapes"), run_dir, 4, steps_per_epoch=2,
                              callbacks=[Epochs(kill_at)])
        except Killed:
            return None, out.getvalue()
        return [e["loss"] for e in report["history"]], out.getvalue()

    whole, _ = losses(str(tmp_path / "whole"))
    assert losses(str(tmp_path / "killed"), kill_at=2)[0] is None
    resumed, printed = losses(str(tmp_path / "killed"))
    assert np.allclose(resumed, whole, rtol=1e-5) or "starts again" in printed, (
        whole, resumed, printed)
