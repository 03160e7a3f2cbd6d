"""The core on every Keras 3 backend: TensorFlow here, JAX and PyTorch in subprocesses.

tests/backend_cases.py holds the checks (loss, metrics, LRN, warps, the consistency trainer, a
short fit and its evaluation, all against numpy). This module runs them under TensorFlow in its
own process (imported below) and under ``KERAS_BACKEND=jax`` / ``torch`` with TensorFlow made
unimportable, as on a GPU machine without it; then it loads the model trained on JAX here, on
TensorFlow; a model saved on JAX exports to TFLite (the recipes' TF child process and
tools/export.py). examples/train.py runs on JAX fed by tf.data.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from backend_cases import *  # noqa: F401,F403  (the same checks under TensorFlow)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _run(args, backend, block_tf=True, **env):
    environ = dict(os.environ, KERAS_BACKEND=backend, KERAS_FCN_BLOCK_TF="1" if block_tf else "0",
                   PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **env)
    environ.pop("KERAS_FCN_JIT", None)  # each backend's own default path
    if backend == "jax":  # two CPU devices: backend_cases tests strategy='data_parallel'
        environ["XLA_FLAGS"] = (environ.get("XLA_FLAGS", "")
                                + " --xla_force_host_platform_device_count=2").strip()
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=environ, capture_output=True,
                          text=True, timeout=900)


def _pytest_cases(backend, **env):
    result = _run(["-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
                   os.path.join(HERE, "backend_cases.py")], backend, **env)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary, summary
    return summary


@pytest.fixture(scope="module")
def jax_run(tmp_path_factory):
    """The cases on JAX without TensorFlow, keeping the model they trained."""
    pytest.importorskip("jax")
    folder = tmp_path_factory.mktemp("jax")
    summary = _pytest_cases("jax", KERAS_FCN_SAVE_DIR=str(folder))
    return folder, summary


def test_core_on_jax_without_tensorflow(jax_run):
    folder, summary = jax_run
    assert int(summary.split(" passed")[0].split()[-1]) >= 14
    assert (folder / "jax.keras").is_file()


def test_core_on_torch_without_tensorflow():
    pytest.importorskip("torch")
    summary = _pytest_cases("torch")
    assert int(summary.split(" passed")[0].split()[-1]) >= 14


def test_model_trained_on_jax_loads_on_tensorflow_with_its_logits(jax_run):
    """Same .keras file across backends: the JAX-trained model gives the same logits here."""
    folder, _ = jax_run
    assert keras.backend.backend() == "tensorflow"
    model = keras.models.load_model(folder / "jax.keras", compile=False)
    images = np.load(folder / "images.npy")
    expected = np.load(folder / "jax_logits.npy")
    got = keras.ops.convert_to_numpy(model(images, training=False))
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() <= 1e-5 * scale
    assert (got.argmax(-1) == expected.argmax(-1)).mean() > 0.999
    # its TFLite export: the next test's tools/export.py on a .keras file saved on JAX


@pytest.mark.slow
def test_example_recipe_trains_on_jax_fed_by_tf_data(tmp_path):
    """examples/train.py on the JAX backend, data from the tf.data pipeline (the Keras 3
    convention): a run folder whose final evaluation matches the last validation metric."""
    pytest.importorskip("jax")
    out = tmp_path / "run"
    result = _run([os.path.join("examples", "train.py"), "--epochs=2", "--num_train=16",
                   "--num_val=8", "--shapes_size=32", "--widths=4,4,8,8,8", "--fc_units=8",
                   "--export=false", f"--output_dir={out}"], "jax", block_tf=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "metrics.json").read_text())
    assert report["status"] == "completed"
    last = report["history"][-1]
    assert report["final_val"]["mean_iu"] == pytest.approx(last["val_mean_iu"], abs=1e-5)
    keras.models.load_model(out / "model.keras", compile=False)  # loads on TensorFlow


def test_a_model_on_jax_exports_to_tflite_through_a_tensorflow_child_process(tmp_path):
    """The recipes' export (`run_export.maybe_export`) where Keras runs on JAX and TensorFlow
    is installed: the graph is traced on TensorFlow in a child process (it crashed with a JAX
    TracerArrayConversionError in `tf.cast`, after training); the TFLite logits equal the JAX
    model's. A direct export there names the backend and says what to do instead."""
    pytest.importorskip("jax")
    from keras_fcn.export import TFLiteRunner

    code = f"""
import numpy as np, keras, keras_fcn
from keras_fcn.export import export_tflite
from keras_fcn.labels import ModelLabels
from keras_fcn.training.run_export import maybe_export
keras.utils.set_random_seed(1)
model = keras_fcn.build_fcn("8s", 3, weights=None, widths=(4, 4, 8, 8, 8), fc_units=8,
                            include_preprocessing=True)
rng = np.random.default_rng(0)
model.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in model.get_weights()])
ModelLabels(3, ignore_label=255).write({str(tmp_path / "labels.json")!r})
image = rng.integers(0, 256, (1, 40, 48, 3)).astype("uint8")
np.save({str(tmp_path / "image.npy")!r}, image)
np.save({str(tmp_path / "logits.npy")!r}, keras.ops.convert_to_numpy(model(image.astype("float32"))))
try:
    export_tflite(model, {str(tmp_path / "direct.tflite")!r}, input_size=(40, 48))
except ImportError as error:
    print("REFUSED", type(error).__name__, error)
maybe_export(model, {str(tmp_path)!r}, (40, 48))
model.save({str(tmp_path / "jax.keras")!r})
"""
    result = _run(["-c", code], "jax", block_tf=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert ("REFUSED TensorFlowBackendError TFLite export runs on Keras' TensorFlow backend; "
            "this process runs Keras on jax") in result.stdout
    assert "Exporting on TensorFlow in a child process (Keras runs on jax here)" in result.stdout
    assert not (tmp_path / "direct.tflite").exists()
    runner = TFLiteRunner(str(tmp_path / "model_float16.tflite"))
    image, expected = np.load(tmp_path / "image.npy")[0], np.load(tmp_path / "logits.npy")[0]
    logits = runner.outputs(image)
    scale = np.abs(expected).max()
    assert np.abs(logits - expected).max() < 2e-2 * scale  # float16 weights
    assert (logits.argmax(-1) == expected.argmax(-1)).mean() > 0.95
    assert json.loads((tmp_path / "model_float16.json").read_text())["num_classes"] == 3
    # tools/export.py runs Keras on TensorFlow whatever the shell's KERAS_BACKEND
    tool = _run([os.path.join("tools", "export.py"), f"--model={tmp_path / 'jax.keras'}",
                 "--quantizations=float16", "--input_size=40x48",
                 f"--output_dir={tmp_path / 'tool'}"], "jax", block_tf=False)
    assert tool.returncode == 0, tool.stdout[-3000:] + tool.stderr[-3000:]
    (exported,) = (tmp_path / "tool").glob("*_float16.tflite")
    runner = TFLiteRunner(str(exported))
    assert np.abs(runner.outputs(image) - expected).max() < 2e-2 * scale


def test_multi_worker_workaround_is_checked_against_this_keras():
    """The one patch of Keras internals left (tf.distribute multi-worker) runs only on the Keras
    releases it was checked on: this fails when Keras moves on, so it is looked at again."""
    from keras_fcn.training import distribute

    distribute.check_patched_keras()
    with pytest.raises(RuntimeError, match="Received: keras 3.99.0"):
        distribute.check_patched_keras("3.99.0")


def test_example_recipe_trains_on_torch_without_tensorflow(tmp_path):
    """examples/train.py where TensorFlow is not installed: the shapes data written to files and
    read by keras_fcn.data.arrays, trained on the PyTorch backend, evaluated at the end (the
    final figures equal the last validation metrics: same images, same model), export skipped
    with a message, and the saved model loads here on TensorFlow with the same logits. Epochs of
    --steps_per_epoch=3 steps (of the 1 batch of a pass: an EpochStream), colours jittered."""
    pytest.importorskip("torch")
    out = tmp_path / "run"
    code = ("import runpy, sys; sys.modules['tensorflow'] = None; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    result = _run(["-c", code, os.path.join("examples", "train.py"), "--epochs=2",
                   "--num_train=8", "--num_val=4", "--shapes_size=32", "--widths=4,4,8,8,8",
                   "--fc_units=8", "--class_weights=median", "--steps_per_epoch=3",
                   "--photometric=0.5", f"--output_dir={out}"], "torch")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("3/3 - ") == 2, result.stdout[-3000:]
    assert "input keras.utils.PyDataset (no TensorFlow), " in result.stdout
    assert " reader thread(s)." in result.stdout
    assert "Export skipped: TFLite export needs TensorFlow" in result.stdout
    report = json.loads((out / "metrics.json").read_text())
    assert report["status"] == "completed" and len(report["history"]) == 2
    last = report["history"][-1]
    assert report["final_val"]["mean_iu"] == pytest.approx(last["val_mean_iu"], abs=1e-5)
    assert report["final_val"]["num_images"] == 4
    weights = json.loads((out / "class_weights.json").read_text())
    from keras_fcn.datasets import shapes  # the 8 training masks; Eigen & Fergus in numpy

    pixels, image_pixels = np.zeros(4), np.zeros(4)
    for mask in shapes.shapes_arrays(8, size=32, seed=0)[1]:
        counts = np.bincount(mask[mask != 255], minlength=4)  # void (255) not counted
        pixels += counts
        image_pixels += (counts > 0) * counts.sum()  # labelled pixels of images with the class
    frequencies = pixels / image_pixels
    np.testing.assert_allclose(weights, np.median(frequencies) / frequencies, rtol=1e-6)
    model = keras.models.load_model(out / "model.keras", compile=False)
    assert model.output_shape[-1] == 4
