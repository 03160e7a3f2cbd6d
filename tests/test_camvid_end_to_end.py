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

import numpy as np
import pytest
from PIL import Image

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
NUM_CLASSES = 11


def _run(script, *args):
    """Runs a repository script like a user; returns its stdout, failing on a non-zero exit."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    out = subprocess.run([sys.executable, os.path.join(REPO, script), *args], cwd=REPO,
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, f"{script} exited {out.returncode}:\n{out.stderr[-4000:]}"
    return out.stdout


def _write_list(camvid_dir, tmp_path, split, count):
    """`{split}.txt` in tmp_path naming the first `count` real pairs by absolute path."""
    with open(os.path.join(camvid_dir, f"{split}.txt"), encoding="utf-8") as file:
        lines = [line.split() for line in file if line.strip()][:count]
    (tmp_path / f"{split}.txt").write_text(
        "".join(" ".join(os.path.join(camvid_dir, p) for p in pair) + "\n" for pair in lines))
    return [os.path.join(camvid_dir, pair[0]) for pair in lines]


@pytest.mark.slow
def test_readme_camvid_path_train_evaluate_export_predict(camvid_dir, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _write_list(camvid_dir, data_dir, "train", 8)
    val_images = _write_list(camvid_dir, data_dir, "val", 4)
    run_dir = tmp_path / "runs" / "camvid"

    stdout = _run("examples/train.py", "--dataset=camvid", f"--data_dir={data_dir}",
                  "--model=staged", "--widths=4,4,8,8,8", "--fc_units=8", "--image_size=48,64",
                  "--crop_size=48,64", "--scale_range=0.8,1.25", "--flip", "--optimizer=adam",
                  "--learning_rate=5e-4", "--class_weights=median", "--batch_size=4",
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
    assert results["num_images"] == 4 and len(results["per_class_iu"]) == NUM_CLASSES
    assert 0.0 <= results["mean_iu"] <= 1.0

    export_dir = tmp_path / "export"
    _run("tools/export.py", f"--model={best}", f"--output_dir={export_dir}",
         "--input_size=48x64", "--quantizations=float16", "--saved_model=false")
    tflite = sorted(p for p in os.listdir(export_dir) if p.endswith(".tflite"))
    assert tflite == ["fcn8s_float16.tflite"], os.listdir(export_dir)
    assert (export_dir / tflite[0]).stat().st_size > 0
    sidecar = json.loads((export_dir / "fcn8s_float16.json").read_text())
    assert len(sidecar["class_names"]) == NUM_CLASSES and len(sidecar["palette"]) == NUM_CLASSES

    predict_dir = tmp_path / "predict"
    _run("tools/predict.py", f"--model={best}", f"--output_dir={predict_dir}",
         "--progress=false", *val_images[:2])
    for image in val_images[:2]:
        stem = os.path.splitext(os.path.basename(image))[0]
        with Image.open(predict_dir / f"{stem}_labels.png") as label_png:
            assert label_png.mode == "P" and label_png.size == (480, 360)
            assert label_png.getpalette()[9:12] == [128, 64, 128]  # Road's colour
            assert int(np.asarray(label_png).max()) < NUM_CLASSES
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
    assert "Training FCN-8s (2,315,393 parameters)" in stdout  # MobileNetV2, 11 classes
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history) == 1 and np.isfinite(history[0]["loss"]) and history[0]["cpu_seconds"] > 0
    assert (run_dir / "best.keras").is_file()
