"""Walkthrough of the paper's data layouts: examples/train_nyud.py and train_siftflow.py.

Each test failed on the code before its fix. Tiny models (--synthetic) and tiny fake files.
"""

import json
import os

import keras
import numpy as np
import pytest

from keras_fcn import io, training
from keras_fcn import weights as weights_lib
from keras_fcn.datasets import nyud, siftflow
from keras_fcn.inference import predict
from keras_fcn.inference.forward import model_input
from keras_fcn.models import build_fcn, multimodal
from tool_flags import one_error_line, run_in_process, script

TINY = dict(widths=(8, 8, 8, 8, 8), fc_units=16)


def _softmax(logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (32, 48, 3)).astype("uint8")


def _bare_copy(model, bare):
    """`bare` (no preprocess layer) with `model`'s weights."""
    weights_lib.set_weights_by_name(bare, weights_lib.read_weights(model))
    return bare


def test_nyud_color_run_records_and_predict_feeds_the_nyud_mean(tmp_path):
    """labels.json said the ImageNet mean while the model was trained on BGR minus the NYUDv2
    mean, and predict fed it the ImageNet mean (2.1% of labels differed)."""
    run = tmp_path / "run"
    proc = run_in_process("examples/train_nyud.py", "--synthetic", "--modality=rgb",
                          "--epochs=1", "--steps_per_epoch=1", f"--output_dir={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Bug 4: the output of examples/train.py.
    assert "Data: nyud rgb, 6 train (trainval) / 1 val (test) images, 40 classes" in proc.stdout
    assert " parameters) in " in proc.stdout
    assert "Final validation metrics of nyud_rgb_fcn32s (1 images):" in proc.stdout
    labels = json.loads((run / "labels.json").read_text())
    np.testing.assert_allclose(labels["normalization"]["mean_bgr"], nyud.NYUD_MEAN_BGR)
    model = keras.models.load_model(str(run / "model.keras"))
    np.testing.assert_allclose(model.fcn_info["labels"]["normalization"]["mean_bgr"],
                               nyud.NYUD_MEAN_BGR)
    image = _image()
    _, probs = predict(model, image, return_probabilities=True)
    bare = _bare_copy(model, build_fcn("32s", nyud.NUM_CLASSES, weights=None, **TINY))
    expected = _softmax(np.asarray(bare(nyud.preprocess_rgb(image)[None]))[0])
    np.testing.assert_allclose(probs, expected, atol=1e-4)


@pytest.mark.parametrize("modality", ["hha", "rgbd", "fusion"])
def test_nyud_other_modalities_record_their_presets_normalization(modality):
    from keras_fcn.presets import preset_labels

    with script("examples/train_nyud.py", f"layouts_nyud_{modality}") as module:
        recorded = module.input_normalization(modality)
    assert recorded == preset_labels(module.PRESETS[modality]).normalization
    assert recorded["type"] == {"hha": "mean", "rgbd": "rgbd", "fusion": "rgb_hha"}[modality]


def test_fit_writes_a_given_normalization_and_refuses_a_conflicting_one(tmp_path):
    import tensorflow as tf

    from keras_fcn.datasets import DatasetInfo
    from keras_fcn.labels import voc_palette

    info = DatasetInfo("nyud", 3, ("a", "b", "c"), voc_palette(3), 255)
    data = tf.data.Dataset.from_tensor_slices(
        (np.zeros((2, 32, 32, 3), "float32"), np.zeros((2, 32, 32), "int32"))).batch(1)
    model = build_fcn("32s", 3, weights=None, **TINY)
    training.compile_model(model, num_classes=3, ignore_label=255,
                           optimizer=keras.optimizers.Adam(1e-4))
    hha = {"type": "mean", "mean": [1.0, 2.0, 3.0], "formula": "HHA minus mean"}
    training.fit(model, data, None, run_dir=str(tmp_path / "a"), epochs=1, info=info,
                 verbose=0, normalization=hha)
    assert json.loads((tmp_path / "a" / "labels.json").read_text())["normalization"] == hha
    own = build_fcn("32s", 3, weights=None, include_preprocessing=True, **TINY)
    with pytest.raises(ValueError, match="normalizes its inputs itself"):
        training.fit(own, data, None, run_dir=str(tmp_path / "b"), epochs=1, info=info,
                     verbose=0, normalization=hha)


def test_siftflow_run_records_and_feeds_the_siftflow_mean(tmp_path):
    run = tmp_path / "run"
    proc = run_in_process("examples/train_siftflow.py", "--synthetic", "--epochs=1",
                          "--steps_per_epoch=1", f"--output_dir={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Data: siftflow, 4 train (trainval) / 2 val (test) images" in proc.stdout
    assert " parameters) in " in proc.stdout
    assert "Final validation metrics of siftflow_fcn16s (2 images):" in proc.stdout
    labels = json.loads((run / "labels.json").read_text())
    np.testing.assert_allclose(labels["normalization"]["mean_bgr"], siftflow.SIFTFLOW_MEAN_BGR)
    model = keras.models.load_model(str(run / "model.keras"))
    image = _image(1)[None].astype("float32")
    fed = np.asarray(model(model_input(model, image))["semantic"])
    bare = _bare_copy(model, multimodal.build_two_headed_fcn("16s", weights=None, **TINY))
    expected = np.asarray(bare(siftflow.preprocess_image(image))["semantic"])
    np.testing.assert_allclose(fed, expected, atol=1e-4)


def test_nyud_missing_listed_file_is_named_before_training(tmp_path):
    """A test.txt id without files failed at the first validation, after training."""
    data = nyud.write_fake_nyud(str(tmp_path / "nyud"), num_images=4)
    with open(os.path.join(data, "test.txt"), "a") as file:
        file.write("5999\n")
    run = tmp_path / "run"
    line = one_error_line(run_in_process(
        "examples/train_nyud.py", f"--data_dir={data}", "--weights=none",
        f"--output_dir={run}"))
    image = os.path.join(data, "data", "images", "img_5999.png")
    label = os.path.join(data, "segmentation", "img_5999.mat")
    assert line == (
        f"error: NYUDv2 test split (rgb): 2 file(s) not found for the ids of "
        f"'{os.path.join(data, 'test.txt')}': '{image}' (rgb), '{label}' (label)")
    assert not run.exists()


def test_siftflow_bundled_test_list_is_named_before_training(tmp_path):
    data = tmp_path / "sift"
    siftflow.write_fake_siftflow(str(data), num_train=2, num_test=1, size=32)
    os.remove(data / "test.txt")  # the bundled 200 ids, whose files are not there
    run = tmp_path / "run"
    line = one_error_line(run_in_process(
        "examples/train_siftflow.py", f"--data_dir={data}", "--weights=none",
        f"--output_dir={run}"))
    assert line.startswith("error: SIFT Flow test split: 600 file(s) not found for the ids of "
                           "the bundled list of the paper's 200 test images ("), line
    assert f"write '{data / 'test.txt'}' (one id a line) to use your own: " in line
    assert not run.exists()


@pytest.mark.parametrize("path", ["examples/train_nyud.py", "examples/train_siftflow.py"])
def test_a_run_failing_before_its_first_epoch_leaves_no_folder(tmp_path, monkeypatch, path):
    """The stub config.json + labels.json refused the corrected command ("exists")."""
    run = tmp_path / "run"

    def failing_fit(model, *args, run_dir, **kwargs):
        (run / "labels.json").write_text("{}")
        raise FileNotFoundError("SIFT Flow image not found: 'x.jpg'")

    monkeypatch.setattr(training, "fit", failing_fit)
    name = "layouts_" + os.path.basename(path)[:-3]
    with script(path, name, "--synthetic", f"--output_dir={run}") as module:
        with pytest.raises(FileNotFoundError, match="image not found"):
            module.main([path])
    # config.json and labels.json removed
    assert [name for name in os.listdir(run) if name != io.LOCK_FILE] == []
    assert training.prepare_run_dir(str(run)) == str(run)  # the corrected run is not refused
