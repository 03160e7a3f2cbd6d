"""A user's journey on a JAX machine without TensorFlow (README: "Training on a GPU, on any
Keras backend"): the tools and examples either run there or say in one line what they need.

Each script runs in a subprocess under ``KERAS_BACKEND=jax`` with TensorFlow made unimportable
(``sys.modules["tensorflow"] = None``, as tests/backend_cases.py does), as a user runs it.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tiny import saved_raw_rgb_fcn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# Runs the script argv[1] with the arguments after it, TensorFlow (and, with BLOCK_LITERT=1,
# ai_edge_litert) unimportable.
_NO_TF = ("import os, runpy, sys; sys.modules['tensorflow'] = None; "
          "os.environ.get('BLOCK_LITERT') and sys.modules.update(ai_edge_litert=None); "
          "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


def _run_without_tf(script, *args, backend="jax", cwd=ROOT, **env):
    environ = dict(os.environ, KERAS_BACKEND=backend,
                   PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **env)
    environ.pop("KERAS_FCN_JIT", None)
    return subprocess.run([sys.executable, "-c", _NO_TF, os.path.join(ROOT, script), *args],
                          cwd=cwd, env=environ, capture_output=True, text=True, timeout=600)


def _one_error_line(result):
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    return lines[0]


def test_export_tool_says_it_needs_tensorflow(tmp_path):
    pytest.importorskip("jax")
    result = _run_without_tf("tools/export.py", f"--model={tmp_path / 'm.keras'}",
                             f"--output_dir={tmp_path / 'out'}")
    assert result.returncode == 2
    line = _one_error_line(result)
    assert "tools/export.py" in line and "needs TensorFlow" in line
    assert "pip install tensorflow" in line
    assert not (tmp_path / "out").exists()


def test_litert_example_says_which_interpreter_to_install(tmp_path):
    """Neither ai-edge-litert nor TensorFlow: one line naming the package, exit 2 (it was a
    ModuleNotFoundError traceback about tensorflow)."""
    model = tmp_path / "m.tflite"
    model.write_bytes(b"\0\0\0\0TFL3 (identifier only: never read by an interpreter)")
    (tmp_path / "m.json").write_text(json.dumps({
        "input": {"shape": [1, 8, 8, 3], "dtype": "float32",
                  "quantization": {"scale": 0.0, "zero_point": 0}},
        "class_names": ["a", "b"], "palette": [[0, 0, 0], [255, 0, 0]]}))
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "in.png")
    result = _run_without_tf("examples/litert_segment.py", str(model),
                             str(tmp_path / "in.png"), str(tmp_path / "out.png"),
                             BLOCK_LITERT="1")
    assert result.returncode == 2
    line = _one_error_line(result)
    assert "pip install ai-edge-litert" in line and "neither is installed" in line
    assert not (tmp_path / "out.png").exists()


@pytest.mark.slow
def test_evaluate_tool_without_tensorflow_gives_the_tensorflow_figures(tmp_path):
    """tools/evaluate.py read its data with tf.data only (an ImportError traceback without
    TensorFlow); now the same files through keras_fcn.data.arrays, with the same confusion
    matrix as on TensorFlow."""
    pytest.importorskip("jax")
    _, model = saved_raw_rgb_fcn(tmp_path, num_classes=4, seed=0)
    flags = [f"--model={model}", "--dataset=shapes", "--num_val=4",
             "--image_size=native"]
    result = _run_without_tf("tools/evaluate.py", *flags, f"--output={tmp_path / 'jax.json'}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "(4 images, native size)" in result.stdout
    environ = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3",
                   PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    reference = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "evaluate.py"), *flags,
         f"--output={tmp_path / 'tf.json'}"], cwd=ROOT, env=environ, capture_output=True,
        text=True, timeout=600)
    assert reference.returncode == 0, reference.stderr[-3000:]
    without, with_tf = (json.loads((tmp_path / name).read_text())
                        for name in ("jax.json", "tf.json"))
    assert np.sum(without["confusion_matrix"]) > 0
    np.testing.assert_array_equal(without["confusion_matrix"], with_tf["confusion_matrix"])
    assert without["mean_iu"] == pytest.approx(with_tf["mean_iu"], abs=1e-9)


def test_shapes_files_written_for_a_run_are_removed_at_exit(tmp_path):
    """The shapes data set written to files for the PyDataset input (and the folder of the
    class weights of a run without one) were left in /tmp by every run."""
    pytest.importorskip("jax")
    code = ("import sys; sys.modules['tensorflow'] = None\n"
            "from keras_fcn.training import TrainConfig, array_inputs\n"
            "config = TrainConfig().replace(num_train=2, num_val=1, shapes_size=16, "
            "batch_size=1, class_weights='median')\n"
            "train_ds, *_ = array_inputs.load_pipelines(config)\n"
            "print(sorted({__import__('os').path.dirname(p) for pair in train_ds.pairs "
            "for p in pair}))\n")
    environ = dict(os.environ, KERAS_BACKEND="jax", TMPDIR=str(tmp_path),
                   PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environ,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    folders = eval(result.stdout.strip().splitlines()[-1])  # noqa: S307 - our own print
    assert folders and all(folder.startswith(str(tmp_path)) for folder in folders)
    assert not any(os.path.exists(folder) for folder in folders)
    assert os.listdir(tmp_path) == []


def test_camvid_recipe_keeps_its_default_blur_without_tensorflow():
    """examples/train_camvid.py stopped at once without TensorFlow ("--blur needs the tf.data
    pipeline"), its own default: the PyDatasets blur too now (tests/test_arrays.py), and
    jitter colours (tests/test_array_jitter.py) and stream --steps_per_epoch
    (tests/test_epoch_stream.py), so these pass the check of the TF-less input path; the
    temporal-consistency loss (its warps are tf.data's) is still refused by name."""
    from keras_fcn.training import array_inputs
    from keras_fcn.training.config import TrainConfig

    array_inputs.check_options(TrainConfig().replace(blur=1.5, photometric=0.5,
                                                     steps_per_epoch=10))
    with pytest.raises(ValueError, match=r"--temporal_consistency needs the tf.data pipeline"):
        array_inputs.check_options(TrainConfig().replace(temporal_consistency=0.5))


def test_predict_tool_runs_without_tensorflow(tmp_path):
    """tools/predict.py died at import (inference.temporal imported the tf-built warps, which
    only the optical-flow flicker measure uses): the labels it writes are the model's argmax,
    and a smoothed frame folder runs too."""
    pytest.importorskip("jax")
    from PIL import Image

    model, path = saved_raw_rgb_fcn(tmp_path, num_classes=3, seed=4)
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(7)
    pixels = [rng.integers(0, 256, (24, 32, 3)).astype(np.uint8) for _ in range(2)]
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(frames / f"f{i}.png")
    out = tmp_path / "out"
    result = _run_without_tf("tools/predict.py", f"--model={path}", f"--output_dir={out}",
                             str(frames / "f0.png"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.rglob("*.png")) == ["f0_labels.png", "f0_overlay.png"]
    labels = np.asarray(Image.open(out / "f0_labels.png"))
    logits = np.asarray(model(pixels[0][None].astype("float32"), training=False))[0]
    np.testing.assert_array_equal(labels, logits.argmax(-1))
    smoothed = _run_without_tf("tools/predict.py", f"--model={path}", "--smooth_alpha=0.5",
                               f"--output_dir={tmp_path / 'smoothed'}",
                               f"--input={frames}")
    assert smoothed.returncode == 0, smoothed.stderr[-3000:]
    assert len(list((tmp_path / "smoothed").rglob("*_labels.png"))) == 2


def test_a_tensorflow_part_in_a_cli_is_one_error_line():
    """A part built on TensorFlow reached from a CLI's main: one line, status 2 (was a
    traceback: the ImportError was not a user error)."""
    code = ("import sys; sys.modules['tensorflow'] = None\n"
            "from keras_fcn import _tf\n"
            "from keras_fcn.training.cli import run_main\n"
            "def main(argv):\n"
            "    raise _tf.missing('keras_fcn.inference.flow_changes', 'labels alone')\n"
            "run_main(main)\n")
    environ = dict(os.environ, KERAS_BACKEND="jax",
                   PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environ,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    line = _one_error_line(result)
    assert line == ("error: keras_fcn.inference.flow_changes needs TensorFlow, which is not "
                    "installed (Keras backend: jax). Install it with `pip install tensorflow`. "
                    "Without TensorFlow, use labels alone.")
