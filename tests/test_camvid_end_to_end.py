"""The README's CamVid path, end to end, as a user runs it (issue 16, part 5): train (staged
32s -> 16s -> 8s), evaluate the best checkpoint, export it to TFLite and predict on images, each
a subprocess of the repository's scripts, on 8 train and 4 val CamVid frames at 48x64.
About 55 s on 2 shared CPUs (35 CPU-seconds, most of it four TensorFlow start-ups), so it is
marked slow: `python -m pytest -m slow tests/test_camvid_end_to_end.py`.

Export used to stop on CamVid models, because training wrote a 12-colour palette (11 classes and
the void colour) into labels.json; this test proves the whole path works."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from keras_fcn import models
from keras_fcn.export import TFLiteRunner
from keras_fcn.metrics import segmentation_metrics
from known_values import assert_same_metrics, confusion_counts

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
NUM_CLASSES = 11
# Pixels of a few 360x480 label maps whose argmax may differ between two ways of running the
# same model (near-ties of class scores resized from 48x64: one was seen)
TIES = 10


def _run(script, *args):
    """Runs a repository script like a user; returns its stdout, failing on a non-zero exit."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    out = subprocess.run([sys.executable, os.path.join(REPO, script), *args], cwd=REPO,
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, f"{script} exited {out.returncode}:\n{out.stderr[-4000:]}"
    return out.stdout


def _read_pair(image_path, mask_path):
    """An RGB image (H, W, 3) uint8 and its label map (H, W) (11 is void)."""
    with Image.open(image_path) as image, Image.open(mask_path) as mask:
        return np.asarray(image.convert("RGB")), np.asarray(mask)


def _logits_at(model, image, size, flip=False):
    """The model's class scores for `image` fed at `size` (bilinear, antialiased, as the
    recipes resize), resized bilinearly to the image's own size: the softmax averaged with the
    mirrored image's when `flip`, else the logits."""
    import tensorflow as tf

    batch = tf.image.resize(image[None].astype("float32"), size, antialias=True)
    if flip:
        scores = tf.nn.softmax(model(batch, training=False))
        mirrored = tf.nn.softmax(model(batch[:, :, ::-1], training=False))[:, :, ::-1]
        scores = (scores + mirrored) / 2
    else:
        scores = model(batch, training=False)
    return tf.image.resize(scores, image.shape[:2], method="bilinear")[0].numpy()


def _full_size_metrics(model, pairs, size, flip=False):
    """The paper's metrics of the model's argmax at label resolution on the (image, mask)
    files `pairs`, counted here (`known_values`)."""
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    for image_path, mask_path in pairs:
        image, mask = _read_pair(image_path, mask_path)
        preds = np.argmax(_logits_at(model, image, size, flip), axis=-1)
        confusion += confusion_counts(mask, preds, NUM_CLASSES, ignore_label=11)
    results = segmentation_metrics(confusion)
    results.update(confusion_matrix=confusion, num_images=len(pairs))
    return results


def _write_list(camvid_dir, tmp_path, split, count):
    """`{split}.txt` in tmp_path naming the first `count` real pairs by absolute path."""
    with open(os.path.join(camvid_dir, f"{split}.txt"), encoding="utf-8") as file:
        lines = [line.split() for line in file if line.strip()][:count]
    (tmp_path / f"{split}.txt").write_text(
        "".join(" ".join(os.path.join(camvid_dir, p) for p in pair) + "\n" for pair in lines))
    return [tuple(os.path.join(camvid_dir, p) for p in pair) for pair in lines]


@pytest.mark.slow
def test_readme_camvid_path_train_evaluate_export_predict(camvid_dir, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _write_list(camvid_dir, data_dir, "train", 8)
    val_pairs = _write_list(camvid_dir, data_dir, "val", 4)
    val_images = [image for image, _ in val_pairs]
    run_dir = tmp_path / "runs" / "camvid"

    # lr 1e-2: after its 2 steps per stage the model predicts two classes, not one everywhere,
    # so comparing the evaluation with the model's own predictions below checks something
    stdout = _run("examples/train.py", "--dataset=camvid", f"--data_dir={data_dir}",
                  "--model=staged", "--widths=4,4,8,8,8", "--fc_units=8", "--image_size=48,64",
                  "--crop_size=48,64", "--scale_range=0.8,1.25", "--flip", "--optimizer=adam",
                  "--learning_rate=1e-2", "--class_weights=median", "--batch_size=4",
                  "--epochs=1", "--export=false", f"--output_dir={run_dir}")
    assert "8 train / 4 val images, 11 classes" in stdout
    best = run_dir / "fcn8s" / "best.keras"
    assert best.is_file()
    labels = json.loads((run_dir / "fcn8s" / "labels.json").read_text())
    assert labels["num_classes"] == NUM_CLASSES and labels["ignore_label"] == 11
    assert len(labels["class_names"]) == NUM_CLASSES and labels["class_names"][3] == "Road"
    assert len(labels["palette"]) == NUM_CLASSES  # the void colour is not a class colour

    evaluation = tmp_path / "eval.json"
    stdout = _run("tools/evaluate.py", f"--model={best}", "--dataset=camvid",
                  f"--data_dir={data_dir}", "--flip", f"--output={evaluation}")
    assert "mean IU" in stdout and "Bicyclist" in stdout
    results = json.loads(evaluation.read_text())
    assert results["num_images"] == 4 and results["image_size"] == [48, 64]
    # the figures are best.keras's at the training size, flip-averaged, at label resolution
    model = keras.models.load_model(best, compile=False)
    assert_same_metrics(results, _full_size_metrics(model, val_pairs, (48, 64), flip=True),
                        moved_pixels=TIES)

    export_dir = tmp_path / "export"
    _run("tools/export.py", f"--model={best}", f"--output_dir={export_dir}",
         "--input_size=48x64", "--quantizations=float16", "--saved_model=false")
    tflite = sorted(p for p in os.listdir(export_dir) if p.endswith(".tflite"))
    assert tflite == ["fcn8s_float16.tflite"], os.listdir(export_dir)
    # the exported model is best.keras: the same logits (float16 weights) on a val image
    image = np.asarray(Image.open(val_images[0]).convert("RGB").resize((64, 48)))
    got = TFLiteRunner(str(export_dir / tflite[0])).outputs(image)
    expected = np.asarray(model(image[None].astype("float32"), training=False))[0]
    np.testing.assert_allclose(got, expected, atol=1e-2 * np.abs(expected).max())
    sidecar = json.loads((export_dir / "fcn8s_float16.json").read_text())
    assert len(sidecar["class_names"]) == NUM_CLASSES and len(sidecar["palette"]) == NUM_CLASSES

    predict_dir = tmp_path / "predict"
    # native: the full-size image as it is (the default, auto, feeds the training size 48x64;
    # tests/test_predict_image_size.py checks that path)
    _run("tools/predict.py", f"--model={best}", f"--output_dir={predict_dir}",
         "--progress=false", "--image_size=native", *val_images[:2])
    for image_path in val_images[:2]:
        stem = os.path.splitext(os.path.basename(image_path))[0]
        with Image.open(predict_dir / f"{stem}_labels.png") as label_png:
            assert label_png.mode == "P" and label_png.size == (480, 360)
            assert label_png.getpalette()[9:12] == [128, 64, 128]  # Road's colour
            labels = np.asarray(label_png)
        # the label map is best.keras's argmax on the full-size image (where two classes tie
        # to float rounding, either)
        image, _ = _read_pair(image_path, image_path)
        logits = np.asarray(model(image[None].astype("float32"), training=False))[0]
        chosen = np.take_along_axis(logits, labels[..., None].astype("int64"), -1)[..., 0]
        np.testing.assert_allclose(chosen, logits.max(-1), atol=1e-5 * np.abs(logits).max())
        assert np.mean(labels == logits.argmax(-1)) > 0.999
        assert (predict_dir / f"{stem}_overlay.png").is_file()


@pytest.mark.slow
def test_camvid_recipe_holds_out_drive_0006R0_by_default(camvid_dir, tmp_path):
    """examples/train_camvid.py: its defaults validate on drive 0006R0 (never trained on) with
    the MobileNetV2 FCN-8s, on 6 + 3 real frames at 48x64, one epoch."""
    with open(os.path.join(camvid_dir, "train.txt"), encoding="utf-8") as file:
        pairs = [line.split() for line in file if line.strip()]
    chosen = ([p for p in pairs if "0001TP_" in p[0]][:3] + [p for p in pairs if "0016E5_" in p[0]][:3]
              + [p for p in pairs if "0006R0_" in p[0]][:3])
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "train.txt").write_text(
        "".join(" ".join(os.path.join(camvid_dir, p) for p in pair) + "\n" for pair in chosen))
    (data_dir / "val.txt").write_text("")
    run_dir = tmp_path / "run"
    stdout = _run("examples/train_camvid.py", f"--data_dir={data_dir}", "--image_size=48,64",
                  "--crop_size=48,64", "--epochs=1", "--export=false",
                  f"--output_dir={run_dir}")
    assert "6 train / 3 val images, 11 classes" in stdout, stdout
    # the default model: a MobileNetV2 FCN-8s for the 11 classes
    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    assert models.backbone_of(model) == "mobilenet_v2" and models.num_classes_of(model) == 11
    assert "score_pool3" in [layer.name for layer in model.layers]
    assert f"Training FCN-8s ({model.count_params():,} parameters)" in stdout
    # validated on the three 0006R0 frames: the final figures are the model's there
    held_out = [tuple(os.path.join(camvid_dir, p) for p in pair) for pair in chosen[6:]]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert_same_metrics(metrics["final_val"], _full_size_metrics(model, held_out, (48, 64)),
                        moved_pixels=TIES)
    history = json.loads((run_dir / "history.json").read_text())
    assert [e["epoch"] for e in history] == [1] and history[0]["cpu_seconds"] > 0
    assert metrics["best"]["epoch"] == 1 and (run_dir / "best.keras").is_file()
