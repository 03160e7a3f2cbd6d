"""A run resumed from its backup draws the dropout masks an uninterrupted run draws: the
backup keeps the state of the model's random generators (dropout's SeedGenerator, a variable
but no weight; on PyTorch, its global generator). Found by a walkthrough (2026-12-06): with
dropout 0.1 a resumed CamVid run's epoch 3 loss was 1.5975 against 1.5966."""

import h5py
import keras
import pytest
import tensorflow as tf

from kill_callbacks import Epochs, Killed
from tiny import tiny_fcn
from keras_fcn import training as train
from keras_fcn.datasets import shapes
from keras_fcn.training import backup


def _model():
    keras.utils.set_random_seed(0)
    model = tiny_fcn("32s", 4, include_preprocessing=True, dropout=0.5)
    train.compile_model(model, num_classes=4, ignore_label=255,
                        optimizer=train.make_optimizer("adam", 1e-2))
    return model


def _fit(run_dir, callbacks=()):
    images, masks = shapes.shapes_arrays(4, size=32, seed=0)
    ds = tf.data.Dataset.from_tensor_slices((images.astype("float32"), masks.astype("int32")))
    return train.fit(_model(), ds.batch(2).repeat(), ds.batch(2), run_dir=str(run_dir),
                     epochs=2, info=shapes.SHAPES_INFO, steps_per_epoch=2, verbose=0,
                     callbacks=list(callbacks))


def test_a_resumed_run_with_dropout_trains_as_an_uninterrupted_one(tmp_path):
    whole = _fit(tmp_path / "whole")
    with pytest.raises(Killed):
        _fit(tmp_path / "killed", [Epochs(kill_at=2)])
    with h5py.File(tmp_path / "killed" / "backup" / "latest.weights.h5", "r") as f:
        assert len(f[backup.RANDOM_STATES_GROUP]) == 2  # drop6, drop7
    resumed = _fit(tmp_path / "killed")
    losses = [[epoch["loss"] for epoch in report["history"]] for report in (whole, resumed)]
    assert losses[0] == losses[1]  # differed at epoch 2 before
