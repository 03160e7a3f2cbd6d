"""Helpers of the resume-order tests (tests/test_resume_data_order.py, backend_cases.py): a
short run of a tiny FCN with dropout into a run folder, killed or not, from data made afresh as
a new process would make it. No TensorFlow needed.

The dropout makes the same checks cover the random state: the backup keeps dropout's
SeedGenerator states (variables, no weights), so a resumed run draws the masks an uninterrupted
one draws (a walkthrough of 2026-12-06: a resumed CamVid run's epoch 3 loss was 1.5975
against 1.5966)."""

import os

import h5py
import keras
import numpy as np

from kill_callbacks import Epochs, Killed
from tiny import tiny_fcn
from keras_fcn import training as train
from keras_fcn.data.arrays import make_pydataset
from keras_fcn.datasets import shapes
from keras_fcn.training.backup import RANDOM_STATES_GROUP

AUGMENT = dict(batch_size=2, crop_size=24, flip=True, scale_range=(0.7, 1.3), shuffle=True,
               seed=5)
EPOCHS = 3


def py_data(folder):
    """The shapes data as a `keras_fcn.data.arrays` PyDataset, augmented and shuffled."""
    if not (folder / "train.txt").exists():
        shapes.make_shapes_dataset(folder, num_train=6, num_val=2, size=32)
    pairs, _ = shapes.shapes_pairs(folder)
    return make_pydataset(pairs, num_classes=4, ignore_label=255, **AUGMENT)


def losses(make_data, run_dir, kill_at=None):
    """Per-epoch training losses of an EPOCHS-epoch run in `run_dir` (a fresh "process"), or
    None when it is killed at the start of epoch `kill_at`."""
    keras.utils.set_random_seed(0)
    model = tiny_fcn("32s", 4, include_preprocessing=True, dropout=0.5)
    train.compile_model(model, num_classes=4, ignore_label=255,
                        optimizer=train.make_optimizer("adam", 1e-2),
                        jit_compile=keras.backend.backend() == "jax")
    try:
        report = train.fit(model, make_data(), None, run_dir=run_dir, epochs=EPOCHS,
                           info=shapes.SHAPES_INFO, verbose=0, callbacks=[Epochs(kill_at)])
    except Killed:
        return None
    return [epoch["loss"] for epoch in report["history"]]


def check_resume_reads_the_uninterrupted_batches(make_data, folder):
    """A run killed after epoch 1 and resumed trains epochs 2-3 on the batches of an
    uninterrupted run (before ResumeDataOrder: epochs 1-2's again, other losses)."""
    whole = losses(make_data, str(folder / "whole"))
    assert losses(make_data, str(folder / "killed"), kill_at=2) is None
    with h5py.File(os.path.join(folder, "killed", "backup", "latest.weights.h5"), "r") as f:
        assert len(f[RANDOM_STATES_GROUP]) == 2  # drop6 and drop7's generators
    resumed = losses(make_data, str(folder / "killed"))
    np.testing.assert_allclose(resumed, whole, rtol=1e-5)
