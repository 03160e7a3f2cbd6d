"""Review of the eighth session's resume data order (keras_fcn.training.data_order.ResumeDataOrder):
cases where a resumed run did not read the batches of an uninterrupted run, and said nothing
(mended in keras_fcn/training/data_order.py); each takes ~10 s."""

import contextlib
import io

import keras
import numpy as np

from kill_callbacks import Epochs, Killed
from resume_order import AUGMENT, py_data
from tiny import tiny_fcn
from keras_fcn import training as train
from keras_fcn.datasets import shapes


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
        tmp_path):
    data = py_data(tmp_path / "shapes")
    _fit(data, str(tmp_path / "a"), 1, seed=1)  # the first stage, in the same process
    whole = FirstBatchEpoch(data)
    _fit(data, str(tmp_path / "b"), 1, callbacks=[whole])
    fresh = py_data(tmp_path / "shapes")  # a resumed process: the first stage is finished
    resumed = FirstBatchEpoch(fresh)
    _fit(fresh, str(tmp_path / "c"), 1, callbacks=[resumed], skipped_fits=(1,))
    assert resumed.epochs == whole.epochs  # now [2] against [3]


def test_a_stage_after_a_skipped_stage_reads_the_tf_data_of_an_uninterrupted_run_in_a_scope(
        tmp_path):
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


def test_a_pydataset_resume_with_steps_per_epoch_matches_or_says_so(tmp_path):
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
