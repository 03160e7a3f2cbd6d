"""Training one model object twice in one process (a notebook): Keras keeps the epoch that a
`BackupAndRestore` restored on the model (`model._initial_epoch`) and starts every later `fit`
of that model there. `keras_fcn.training.fit` resets it, so a resume starts after its backup's
epoch and a later run of the same model starts at epoch 1."""

import pytest
import tensorflow as tf

from kill_callbacks import Epochs, Killed
from tiny import tiny_fcn
from keras_fcn import training as train
from keras_fcn.datasets import shapes


def _fit(model, run_dir, epochs_run, epochs=3):
    images, masks = shapes.shapes_arrays(4, size=32, seed=0)
    ds = tf.data.Dataset.from_tensor_slices((images.astype("float32"), masks.astype("int32")))
    return train.fit(model, ds.batch(2).repeat(), ds.batch(2), run_dir=run_dir, epochs=epochs,
                     info=shapes.SHAPES_INFO, steps_per_epoch=1, verbose=0,
                     callbacks=[epochs_run])


def test_a_resume_then_a_new_run_of_the_same_model_start_at_their_own_epochs(tmp_path):
    model = tiny_fcn("32s", 4, include_preprocessing=True)
    train.compile_model(model, num_classes=4, ignore_label=255,
                        optimizer=train.make_optimizer("adam", 1e-3))
    killed = Epochs(kill_at=3)
    with pytest.raises(Killed):
        _fit(model, str(tmp_path / "a"), killed)
    assert killed.epochs == [1, 2]
    resumed = Epochs()
    report = _fit(model, str(tmp_path / "a"), resumed)  # restores epoch 2's backup
    assert resumed.epochs == [3]
    assert [e["epoch"] for e in report["history"]] == [1, 2, 3]
    fresh = Epochs()  # a new run folder: no backup, all three epochs
    report = _fit(model, str(tmp_path / "b"), fresh)
    assert fresh.epochs == [1, 2, 3]  # was [3]: Keras started at the restored epoch
    assert [e["epoch"] for e in report["history"]] == [1, 2, 3]
    assert model._initial_epoch is None
    # a run killed again resumes from its own backup, not from the last one restored
    killed = Epochs(kill_at=2)
    with pytest.raises(Killed):
        _fit(model, str(tmp_path / "c"), killed)
    resumed = Epochs()
    _fit(model, str(tmp_path / "c"), resumed)
    assert (killed.epochs, resumed.epochs) == ([1], [2, 3])
