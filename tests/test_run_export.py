"""The TFLite model a training run exports (`keras_fcn.training.run_export`): at the scale the
model trained at (--image_size, else the validation images' one native size, never a
--crop_size), skipped with the tools/export.py command when the images have several sizes,
and its sidecar says where the size comes from."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tiny import saved_raw_rgb_fcn
from keras_fcn.labels import ModelLabels
from keras_fcn.training import TrainConfig
from keras_fcn.training import run_export


def _eval_ds(*sizes):
    """Batch-1 (image, mask) pairs of the given (height, width), as a run's eval pipeline."""
    pairs = [(np.zeros((1, h, w, 3), np.float32), np.zeros((1, h, w), np.int32))
             for h, w in sizes]
    return tf.data.Dataset.from_generator(
        lambda: iter(pairs), output_signature=(
            tf.TensorSpec((1, None, None, 3), tf.float32), tf.TensorSpec((1, None, None),
                                                                         tf.int32)))


def test_export_size_is_the_training_scale_never_a_crop():
    assert run_export.export_size((40, 56), [(48, 64)]) == (
        (40, 56), "the training --image_size 40x56")
    size, source = run_export.export_size(None, [(48, 64)])
    assert size == (48, 64) and "every validation image, 48x64" in source
    size, source = run_export.export_size(None, [(40, 56), (48, 64)])
    assert size is None and "2 sizes (40x56, 48x64)" in source
    assert run_export.export_size(None, [])[0] is None
    assert run_export.image_sizes(_eval_ds((48, 64), (40, 56), (48, 64))) == [(40, 56),
                                                                              (48, 64)]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    model, _ = saved_raw_rgb_fcn(folder, 3, seed=0)
    ModelLabels(3).write(folder / "labels.json")
    return model, folder


def test_a_crop_run_exports_at_the_native_validation_size(run_folder, capsys):
    """--crop_size=24,32 of 48x64 images, no --image_size: the export took the crop (24x32)
    and the app resized whole photos to it, half the training scale."""
    model, folder = run_folder
    config = TrainConfig().replace(crop_size=(24, 32))
    path = run_export.export_run(model, str(folder), config, _eval_ds((48, 64), (48, 64)))
    meta = json.loads((folder / "model_float16.json").read_text())
    assert meta["input"]["shape"] == [1, 48, 64, 3]
    assert meta["input_size_source"].startswith("the size of every validation image, 48x64")
    assert meta["image_size"] is None  # the run's labels: trained at the images' own size
    assert "Export size 48x64: the size of every validation image" in capsys.readouterr().out
    # a kept export (a --resume that trained nothing) is kept only at the same size
    assert run_export.export_run(model, str(folder), config, _eval_ds((48, 64)), keep=True)
    assert "Kept the run's TFLite export" in capsys.readouterr().out
    run_export.export_run(model, str(folder), TrainConfig().replace(image_size=(32, 32)),
                          None, keep=True)
    assert "Kept" not in capsys.readouterr().out and path == str(folder / "model_float16.tflite")
    meta = json.loads((folder / "model_float16.json").read_text())
    assert meta["input"]["shape"] == [1, 32, 32, 3]
    assert meta["input_size_source"] == "the training --image_size 32x32"


def test_validation_images_of_several_sizes_skip_the_export_with_the_command(tmp_path,
                                                                            run_folder, capsys):
    model, _ = run_folder
    ModelLabels(3).write(tmp_path / "labels.json")
    config = TrainConfig().replace(crop_size=(24, 32))
    assert run_export.export_run(model, str(tmp_path), config,
                                 _eval_ds((48, 64), (40, 56))) is None
    out = capsys.readouterr().out
    assert ("Export skipped: the validation images have 2 sizes (40x56, 48x64) and the run "
            "trained at each image's own size (no --image_size)") in out
    assert (f"python tools/export.py --model={os.path.join(tmp_path, 'model.keras')} "
            f"--output_dir={os.path.join(tmp_path, 'export')} --input_size=40x56 "
            "--quantizations=float16 --saved_model=false") in out
    assert not os.path.exists(tmp_path / "model_float16.tflite")
