"""Tests of keras_fcn.training and examples/train.py: config and flags, optimizers, distribution,
resume, NaN, run directories, the NYUDv2 and SIFT Flow recipes, the CLI error path."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from PIL import Image


from kill_callbacks import Epochs, Killed
from tiny import TINY_FC, TINY_WIDTHS, file_digests, tiny_fcn
from tool_flags import run_in_process
from two_cpus import shared_result
from keras_fcn.datasets import CAMVID_INFO, DatasetInfo, nyud, shapes, siftflow
from keras_fcn.datasets import shapes as synthetic
from keras_fcn.export import TFLiteRunner, export_labels
from keras_fcn.labels import ModelLabels
from keras_fcn.models import build_fcn, multimodal
from keras_fcn import training as train
from keras_fcn.training import TrainConfig, optimizers, recipe
from keras_fcn.training import callbacks as callbacks_lib
from keras_fcn.training import run_config
from keras_fcn.training import run_dir as run_dir_lib
from keras_fcn.training.fit import curve_metric
from keras_fcn.training.optimizers import check_stage_schedules
from keras_fcn.training.run_dir import plot_curves
from known_values import assert_same_metrics, predicted_metrics

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
TINY_FLAGS = [f"--widths={','.join(map(str, TINY_WIDTHS))}", f"--fc_units={TINY_FC}",
              "--num_train=16", "--num_val=4", "--shapes_size=32", "--batch_size=8",
              "--optimizer=adam", "--learning_rate=1e-2", "--dropout=0"]


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return env


def _tiny_model(variant="8s", num_classes=4):
    return tiny_fcn(variant, num_classes, include_preprocessing=True)


def _shapes(count, size=32, start=0):
    images, masks = synthetic.shapes_arrays(count, size=size, seed=0, start=start)
    return images.astype("float32"), masks.astype("int32")


def _shapes_val(count, size=32):
    """The recipe's shapes validation images (seed 0), one per batch as its eval data."""
    images, masks = synthetic.shapes_arrays(count, size=size, seed=0, start=synthetic.VAL_OFFSET)
    return [(images[i:i + 1].astype("float32"), masks[i:i + 1]) for i in range(count)]


# ------------------------------------------------------------------ units ----


def test_equivalent_learning_rate_maps_sum_to_mean():
    assert train.equivalent_learning_rate(1e-10, "sum", "mean", 500 * 375) == pytest.approx(
        1.875e-5)
    assert train.equivalent_learning_rate(1.875e-5, "mean", "sum", 500 * 375) == pytest.approx(
        1e-10)
    with pytest.raises(ValueError, match="pixels=0"):
        train.equivalent_learning_rate(1e-10, "sum", "mean", 0)


def test_caffe_sgd_doubles_bias_step_and_l2_skips_biases():
    layer = keras.layers.Dense(1, kernel_initializer="ones", bias_initializer="zeros")
    layer.build((None, 1))
    optimizer = train.CaffeSGD(learning_rate=0.1, momentum=0.0, bias_lr_multiplier=2.0)
    optimizer.apply([tf.ones((1, 1)), tf.ones((1,))], [layer.kernel, layer.bias])
    np.testing.assert_allclose(layer.kernel.numpy(), [[0.9]], rtol=1e-6)
    np.testing.assert_allclose(layer.bias.numpy(), [-0.2], rtol=1e-6)
    restored = train.CaffeSGD.from_config(optimizer.get_config())
    assert restored.bias_lr_multiplier == 2.0

    model = _tiny_model()
    count = train.apply_kernel_l2(model, 5e-4)
    trainable_kernels = [w for w in model.trainable_weights if w.path.endswith("kernel")]
    assert count == len(trainable_kernels) > 0
    assert all(w.regularizer is None for w in model.trainable_weights if w.path.endswith("bias"))
    assert len(model.losses) == count


def test_adam_excludes_biases_from_decay():
    optimizer = train.make_optimizer("adam", 1e-3, weight_decay=0.1)
    kernel = keras.Variable(np.ones((2, 2), "float32"), name="kernel")
    bias = keras.Variable(np.ones((2,), "float32"), name="bias")
    optimizer.build([kernel, bias])
    assert optimizer._use_weight_decay(kernel) and not optimizer._use_weight_decay(bias)
    with pytest.raises(ValueError, match="optimizer='rmsprop'"):
        train.make_optimizer("rmsprop")


def test_prepare_run_dir_refuses_existing_run(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text("{}")
    with pytest.raises(FileExistsError, match="--resume"):
        train.prepare_run_dir(str(run_dir))
    assert train.prepare_run_dir(str(run_dir), resume=True) == str(run_dir)
    train.prepare_run_dir(str(run_dir), overwrite=True)
    assert os.listdir(run_dir) == [".keras_fcn.lock"]  # this process's (tests/test_locks.py)


# ------------------------------------------------------- distribution ----

def test_mirrored_step_matches_one_device(tmp_path_factory):
    # tests/two_cpu_cases.py's TRAIN_STEP, in the process the other tf.distribute checks share
    result = shared_result(tmp_path_factory, "train_step")
    assert result["replicas"] == 2
    # Every trainable weight moved, and the two replicas' step equals the one device's to 1e-4 of
    # how far it moved that weight (an absolute bound would pass the trunk kernels, which move
    # by ~5e-6, even if the mirrored run skipped their update).
    assert all(step > 0 for step in result["steps"]), result["steps"]
    for index, (step, diff) in enumerate(zip(result["steps"], result["diffs"])):
        assert diff <= 1e-4 * step, (index, step, diff)


# ------------------------------------------------------------ resume ----


def _history(run_dir):
    path = os.path.join(run_dir, "history.json")
    if not os.path.exists(path):
        return []
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError:
        return []


def _temp_files(run_dir):
    """Files keras_fcn.io writes before renaming them (".best.keras.x1y2z3w4.keras")."""
    return [os.path.join(root, n) for root, _, names in os.walk(run_dir) for n in names
            if n.startswith(".") and n != ".keras_fcn.lock"]  # the lock: tests/test_locks.py


def test_resume_removes_temporary_files_of_a_killed_run(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "fcn32s").mkdir(parents=True)
    stale = [run_dir / ".best.keras.k2j4h5g6.keras",
             run_dir / "fcn32s" / ".history.json.a1b2c3d4.json"]
    for path in stale:
        path.write_text("half")
    (run_dir / "notes.txt").write_text("mine")
    assert sorted(_temp_files(str(run_dir))) == sorted(map(str, stale))
    train.prepare_run_dir(str(run_dir), resume=True)
    assert not _temp_files(str(run_dir))
    assert (run_dir / "notes.txt").read_text() == "mine"


def _check_saved_models(run_dir, metrics, num_val):
    """best.keras scores the best value on the validation images, and the final figures are
    model.keras's, both counted here from the models' predictions."""
    val = _shapes_val(num_val)
    best = keras.models.load_model(os.path.join(run_dir, "best.keras"), compile=False)
    assert predicted_metrics(best, val, 4, 255)["mean_iu"] == pytest.approx(
        metrics["best"]["value"], abs=1e-6)
    final = keras.models.load_model(os.path.join(run_dir, "model.keras"), compile=False)
    assert_same_metrics(metrics["final_val"], predicted_metrics(final, val, 4, 255))


def _wait_for_epochs(process, run_dir, epochs, seconds=240):
    """Polls until the run in `run_dir` has `epochs` epochs in its history (or ended)."""
    deadline = time.time() + seconds
    while time.time() < deadline and len(_history(run_dir)) < epochs and process.poll() is None:
        time.sleep(0.02)


def test_random_kills_never_corrupt_the_run_and_resume_completes(tmp_path):
    """SIGKILL at seeded random moments (start-up, then mid-epoch or while checkpointing).

    The moments are "k epochs done, then t seconds" with seeded k and t, not seconds after the
    start: a fixed delay let a fast, idle machine finish the whole run before the first kill
    (then no run was killed and the test failed: the intermittent failure of issue 12)."""
    rng = np.random.default_rng(8)
    run_dir = str(tmp_path / "run")
    command = [sys.executable, os.path.join(REPO, "examples", "train.py"), *TINY_FLAGS,
               "--epochs=12", "--export=false", f"--output_dir={run_dir}"]
    # epochs done before each kill: at start-up, then a seeded moment later in the run (a
    # third kill found nothing the second does not: tests/test_kills.py kills each write)
    targets = [0, int(rng.choice(np.arange(1, 10)))]
    kills = []
    for attempt, target in enumerate(targets):
        process = subprocess.Popen(command + (["--resume"] if attempt else []),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   env=_env(), start_new_session=True)
        _wait_for_epochs(process, run_dir, target)
        time.sleep(float(rng.uniform(0.0, 0.4)))  # start-up, mid-epoch or a checkpoint write
        assert process.poll() is None, f"the run ended before its kill: {process.stderr.read()}"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        kills.append((target, len(_history(run_dir))))
        # Whatever moment the kill came, every file in place is complete: the best model
        # loads and every JSON file parses (writes go to a temporary name, then a rename).
        best = os.path.join(run_dir, "best.keras")
        if os.path.exists(best):
            assert keras.models.load_model(best, compile=False).output_shape[-1] == 4
        for name in ("history.json", "best_state.json", "labels.json", "metrics.json"):
            if os.path.exists(os.path.join(run_dir, name)):
                with open(os.path.join(run_dir, name)) as f:
                    json.load(f)
    print(f"kills (epochs done when killed: target, history): {kills}")
    assert all(done < 12 for _, done in kills) and kills[-1][1] >= 1
    assert os.path.exists(os.path.join(run_dir, "backup", "latest.weights.h5"))

    # Without --resume the killed run's folder is refused: a user error, one line, exit 2.
    refused = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=240)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "--resume" in errors[0], refused.stderr

    finished = subprocess.run(command + ["--resume"], capture_output=True, text=True, env=_env(),
                              timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    history = _history(run_dir)
    assert [e["epoch"] for e in history] == list(range(1, 13))
    # It went on from the backup (the epoch of the last kill's history, or the one a kill in
    # the epoch-end writes had backed up), not from epoch 1.
    first = int(re.search(r"^Epoch (\d+)/12$", finished.stdout, re.M).group(1))
    assert first > 1 and abs(first - 1 - kills[-1][1]) <= 1, (first, kills)
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert metrics["status"] == "completed" and metrics["history"] == history
    # A resumed run never replaces a better checkpoint. (Not "== max": a kill after best.keras
    # was written but before history.json got that epoch leaves a best the history lacks.)
    assert metrics["best"]["value"] >= max(e["val_mean_iu"] for e in history)
    _check_saved_models(run_dir, metrics, num_val=4)
    # temporary files a kill left behind were removed by the next run; the backup went when
    # the run completed
    assert not _temp_files(run_dir)
    assert not os.path.exists(os.path.join(run_dir, "backup"))


# --------------------------------------------------------------- NaN ----


class _Diverge(keras.callbacks.Callback):
    """Simulates divergence: sets the score_fr bias to NaN before one given step.

    (NaN *images* do not work for this: the fused Conv+ReLU kernels of oneDNN map NaN to 0.)
    """

    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)
        self.epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            bias = self.model.get_layer("score_fr").bias
            bias.assign(np.full(bias.shape, np.nan, "float32"))


def test_nan_loss_stops_naming_the_step_and_keeps_good_checkpoint(tmp_path, capsys):
    images, masks = _shapes(8)
    model = _tiny_model()
    train.compile_model(model, num_classes=4, ignore_label=255,
                        optimizer=train.make_optimizer("adam", 1e-3))
    train_ds = tf.data.Dataset.from_tensor_slices((images, masks)).batch(4).repeat()
    val_ds = tf.data.Dataset.from_tensor_slices((images[:4], masks[:4])).batch(4)
    # 2 steps per epoch; the weights go NaN before epoch 2, batch 2 (global step 4)
    report = train.fit(model, train_ds, val_ds, run_dir=str(tmp_path), epochs=3,
                       info=synthetic.SHAPES_INFO, steps_per_epoch=2, verbose=0,
                       callbacks=[_Diverge(epoch=1, batch=1)])
    assert report["status"] == "nan"
    assert report["nan_step"]["epoch"] == 2 and report["nan_step"]["batch"] == 2
    assert report["nan_step"]["step"] == 4
    assert "epoch 2, batch 2 (global step 4)" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "model.keras")
    best = keras.models.load_model(tmp_path / "best.keras", compile=False)
    assert all(np.all(np.isfinite(w)) for w in best.get_weights())
    # ... and it is the epoch-1 model: it scores epoch 1's val_mean_iu on the val images
    state = json.load(open(tmp_path / "best_state.json"))
    assert state["epoch"] == 1 and state["value"] == report["history"][0]["val_mean_iu"]
    assert predicted_metrics(best, [(images[:4], masks[:4])], 4, 255)["mean_iu"] == \
        pytest.approx(state["value"], abs=1e-6)
    # the backup still holds the last good epoch, so a fixed run can resume from it
    meta = json.load(open(tmp_path / "backup" / "training_metadata.json"))
    assert meta["epoch"] == 1
    assert json.load(open(tmp_path / "metrics.json"))["status"] == "nan"


# ----------------------------------------------------------- run dir ----


def _check_run_directory(run_dir, num_images):
    """A one-epoch shapes run: its files, and its figures equal the metrics of the saved model's
    predictions on the validation images, counted here."""
    for name in train.RUN_FILES + ("history.json",):
        assert os.path.getsize(os.path.join(run_dir, name)) > 0, name
    assert not [n for n in os.listdir(run_dir) if n.endswith(".labels.json")]  # one labels file
    labels = ModelLabels.for_model(os.path.join(run_dir, "best.keras"))
    assert labels == ModelLabels.read(run_dir)
    # a model copied out of its run keeps its labels: the run saved them in the file
    alone = os.path.join(os.path.dirname(run_dir), "alone")
    os.makedirs(alone, exist_ok=True)
    shutil.copy(os.path.join(run_dir, "best.keras"), os.path.join(alone, "best.keras"))
    assert ModelLabels.for_model(os.path.join(alone, "best.keras")) == labels
    assert ModelLabels.for_model(os.path.join(alone, "nothing.keras")) is None
    assert labels.class_names == synthetic.SHAPES_CLASSES and labels.ignore_label == 255
    assert labels.normalization["type"] == "caffe_bgr_mean" and labels.model_name == "fcn8s"
    model = keras.models.load_model(os.path.join(run_dir, "model.keras"))
    expected = predicted_metrics(model, _shapes_val(num_images), 4, 255)
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    final = metrics["final_val"]
    assert_same_metrics(final, expected)
    np.testing.assert_allclose(np.array(final["per_class_iu"], "float64"),
                               expected["per_class_iu"], atol=1e-6)  # None (absent) is NaN
    assert final["num_images"] == num_images
    # One epoch: the best checkpoint is the final model, and the epoch's val_mean_iu (Keras'
    # streaming metric, on the same images) is the mean IU counted here.
    assert [e["epoch"] for e in metrics["history"]] == [1]
    assert metrics["history"][0]["val_mean_iu"] == pytest.approx(expected["mean_iu"], abs=1e-6)
    assert metrics["best"] == {"monitor": "val_mean_iu", "epoch": 1,
                               "value": metrics["history"][0]["val_mean_iu"]}
    best = keras.models.load_model(os.path.join(run_dir, "best.keras"))
    for a, b in zip(best.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    images, _ = _shapes(1, size=40)
    assert model.predict(images, verbose=0).shape == (1, 40, 40, 4)
    return model


def test_staged_run_writes_a_loadable_run_directory_per_stage(tmp_path):
    """Also the bfloat16 path of the recipe: every stage computes in bfloat16 with the FCN head
    and the logits in float32, and the exported TFLite model is float."""
    config = train.TrainConfig(
        dataset="shapes", model="staged", widths=TINY_WIDTHS, fc_units=TINY_FC, dropout=0.0,
        epochs=1, batch_size=8, num_train=8, num_val=2, shapes_size=32, optimizer="adam",
        learning_rate=1e-2, output_dir=str(tmp_path / "staged"), verbose=0,
        precision="bfloat16", export=True)
    result = train.run(config)
    assert list(result["reports"]) == ["32s", "16s", "8s"]
    losses = {stage: [e["loss"] for e in report["history"]]
              for stage, report in result["reports"].items()}
    # One step per epoch, and Keras logs the loss of the step's forward pass. The FCN-32s
    # starts with a zero score layer (uniform softmax): exactly the chance loss log(4). The
    # later stages start from the trained previous stage, so they are below chance.
    assert losses["32s"] == [pytest.approx(np.log(4), rel=1e-5)]
    assert losses["16s"][0] < np.log(4) and losses["8s"][0] < np.log(4)
    fcn16s = keras.models.load_model(os.path.join(result["run_dir"], "fcn16s", "model.keras"))
    fcn8s = _check_run_directory(os.path.join(result["run_dir"], "fcn8s"), num_images=2)
    assert "score_pool3" in [layer.name for layer in fcn8s.layers]
    assert fcn8s.get_layer("fc6").compute_dtype == "bfloat16"
    assert fcn8s.get_layer("score_pool3").compute_dtype == "float32"
    assert fcn8s.output.dtype == "float32"
    # The exported TFLite model is this FCN-8s (float16 weights, float compute): its logits on
    # a validation image are the Keras model's, up to bfloat16 rounding.
    runner = TFLiteRunner(os.path.join(result["run_dir"], "fcn8s", "model_float16.tflite"))
    image = _shapes_val(1)[0][0]
    expected = fcn8s.predict(image, verbose=0)[0]
    got = runner.outputs(image[0].astype("uint8"))
    np.testing.assert_allclose(got, expected, atol=2e-2 * np.abs(expected).max())
    # the FCN-8s started from the FCN-16s: score_pool4 (zero at init) was copied, then trained
    assert not np.allclose(fcn16s.get_layer("score_pool4").kernel.numpy(), 0.0)
    assert not np.allclose(fcn8s.get_layer("score_pool4").kernel.numpy(), 0.0)
    with pytest.raises(FileExistsError, match="--overwrite"):
        train.run(config)


# ------------------------------------------------------------ CamVid ----


def test_short_camvid_run_lowers_the_loss(camvid_dir):
    config = train.TrainConfig(dataset="camvid", data_dir=camvid_dir)
    decoded, info, count = train.load_data(config, "train")
    assert count == 367 and info.ignore_label == 11
    decoded = decoded.take(8).map(lambda i, m: train.resize_pair(i, m, (60, 80)))
    images, masks = (np.stack(a) for a in zip(*decoded.as_numpy_iterator()))
    # the recipe's start: zero score layers, a uniform softmax, the chance loss log(11)
    model = build_fcn("8s", info.num_classes, weights=None, widths=TINY_WIDTHS,
                      fc_units=TINY_FC, dropout=0.0, include_preprocessing=True)
    train.compile_model(model, num_classes=info.num_classes, ignore_label=info.ignore_label,
                        optimizer=train.make_optimizer("adam", 3e-3))
    chance = np.log(info.num_classes)
    before = model.evaluate(images, masks.astype("int32"), batch_size=8, verbose=0)[0]
    assert before == pytest.approx(chance, rel=1e-5)
    model.fit(images, masks.astype("int32"), batch_size=4, epochs=6, verbose=0)
    after = model.evaluate(images, masks.astype("int32"), batch_size=8, verbose=0)[0]
    assert after < 0.8 * chance, (after, chance)


# ------------------------------------------------------- multi-worker ----
# tests/test_multi_worker.py: two local workers train one worker's model, and resume.


# ------------------------------------------------------ mixed precision ----


def test_mixed_precision_summed_loss_at_paper_rate_does_not_overflow():
    """The reference recipe (summed loss, SGD 0.99, lr 1e-10) under mixed_float16.

    A summed loss over a 128x160 image is ~2e4 before scaling, so the float16 gradients overflow
    at the initial loss scale (2**15). The loss-scale optimizer must skip those steps and lower
    its scale; the float32 weights stay finite and do move.
    """
    keras.mixed_precision.set_global_policy("mixed_float16")  # what a GPU run gets
    try:
        model = _tiny_model("8s", num_classes=4)
        for name in ("score_fr", "score_pool4", "score_pool3"):  # non-trivial start
            layer = model.get_layer(name)
            layer.set_weights([np.random.default_rng(0).normal(0, 0.1, w.shape).astype("float32")
                               for w in layer.weights])
        optimizer = train.make_optimizer("sgd", 1e-10)
        train.compile_model(model, num_classes=4, ignore_label=255, optimizer=optimizer,
                            loss_reduction="sum")
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        images, masks = _shapes(4, size=128)
        images = np.pad(images, ((0, 0), (0, 0), (0, 32), (0, 0)), constant_values=100)
        masks = np.pad(masks, ((0, 0), (0, 0), (0, 32)), constant_values=255)
        before = [np.array(w) for w in model.get_layer("conv1_1").get_weights()]
        # The summed loss of each image at the start, in numpy: at lr 1e-10 the weights hardly
        # move, so the first epoch's loss is their mean (the float16 model's logits).
        logits = model.predict(images, batch_size=1, verbose=0).astype("float64")
        log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        valid = masks != 255
        picked = np.take_along_axis(log_softmax, np.where(valid, masks, 0)[..., None], -1)[..., 0]
        summed = -np.where(valid, picked, 0.0).sum(axis=(1, 2))
        history = model.fit(images, masks, batch_size=1, epochs=4, verbose=0)
        losses = history.history["loss"]
        assert losses[0] == pytest.approx(summed.mean(), rel=1e-4)  # thousands, not O(1)
        assert all(np.isfinite(losses))
        assert float(model.optimizer.dynamic_scale) < 2.0 ** 15  # it had to back off
        for w in model.weights:
            assert np.all(np.isfinite(np.asarray(w))), w.path
        after = model.get_layer("conv1_1").get_weights()
        assert any(np.abs(a - b).max() > 0 for a, b in zip(after, before))
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_the_old_mixed_precision_flag_means_the_devices_mixed_precision():
    from keras_fcn import runtime

    expected = "mixed_float16" if runtime.has_gpu() else "mixed_bfloat16"
    train.set_mixed_precision(True)
    try:
        assert keras.mixed_precision.global_policy().name == expected
    finally:
        train.set_mixed_precision(False)
    assert keras.mixed_precision.global_policy().name == "float32"
    config = train.TrainConfig(mixed_precision=True)
    assert train.execution_precision(config) == expected.split("_")[1]
    assert train.execution_precision(train.TrainConfig(precision="bfloat16")) == "bfloat16"


# ------------------------------------------------------ config and CLI ----


def test_flags_are_generated_from_every_config_field():
    values = flags.FlagValues()
    train.define_flags(values, dataset="camvid", widths="8,16,32,32,32", cache=True)
    names = list(train.config.FIELDS)
    assert {"val_batch_size", "cache", "verbose", "mixed_precision"} <= set(names)
    for name in names:  # one flag per field, help without lost line continuations
        assert values[name].help and "  " not in values[name].help, name
    values(["prog"])
    assert train.config_from_flags(values) == train.TrainConfig().replace(
        dataset="camvid", widths=(8, 16, 32, 32, 32), cache=True)

    values = flags.FlagValues()
    train.define_flags(values)
    values(["prog", "--crop_size=32", "--image_size=180x240", "--scale_range=0.5,2",
            "--learning_rate=0.01", "--num_classes=0", "--ignore_label=0", "--nocache",
            "--val_batch_size=4", "--verbose=2", "--mixed_precision", "--model=staged"])
    config = train.config_from_flags(values)
    data, run = config.data, config.run
    assert (data.crop_size, data.image_size, data.scale_range) == (
        (32, 32), (180, 240), (0.5, 2.0))
    assert config.optim.learning_rate == 0.01 and data.num_classes is None  # 0: unset
    assert data.ignore_label == 0 and data.cache is False and run.verbose == 2
    assert data.val_batch_size == 4 and run.mixed_precision and config.model.variant == "staged"

    values = flags.FlagValues()
    train.define_flags(values)
    values(["prog", "--crop_size=0,3"])
    with pytest.raises(ValueError, match="crop_size='0,3'"):
        train.config_from_flags(values)


def test_run_main_prints_a_user_error_in_one_line_and_exits_2(capsys):
    def main(argv):
        raise FileExistsError("Run directory 'runs/a' exists. Pass --resume to continue it.")

    with pytest.raises(SystemExit) as exit_info:
        train.run_main(main, argv=["prog"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        "error: Run directory 'runs/a' exists. Pass --resume to continue it.\n")


def test_camvid_labels_have_one_colour_per_class_and_export_accepts_them(tmp_path):
    assert len(CAMVID_INFO.palette) == CAMVID_INFO.num_classes + 1 == 12  # + the void colour
    model = _tiny_model(num_classes=11)
    written = train.write_labels(str(tmp_path), CAMVID_INFO, model=model, image_size=(180, 240),
                                 model_name="fcn8s")
    labels = ModelLabels.for_model(str(tmp_path / "best.keras"))  # the run's labels.json
    assert labels == written and labels.palette == CAMVID_INFO.palette[:11]
    assert labels.ignore_label == 11 and labels.image_size == (180, 240)
    exported = export_labels(model, source=str(tmp_path / "model.keras"))
    assert exported.class_names == CAMVID_INFO.class_names and len(exported.palette) == 11


# ------------------------------------- NYUDv2 and SIFT Flow through fit ----


class _Killed(Exception):
    pass


class _KillAtEpoch(keras.callbacks.Callback):
    """Stops the process-like run at the start of an epoch (after the previous backup)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise _Killed()


class _EpochsRun(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch + 1)


def _fit_killed_then_resumed(run_dir, model, train_ds, val_ds, info, **kwargs):
    """Fits 2 epochs, killed before the second, then resumes from the run's backup (the same
    model object, so its train step is traced once). Returns the report of the resumed run."""
    common = dict(run_dir=run_dir, epochs=2, info=info, steps_per_epoch=2, verbose=0, **kwargs)
    with pytest.raises(_Killed):
        train.fit(model, train_ds, val_ds, callbacks=[_KillAtEpoch(1)], **common)
    assert os.path.exists(os.path.join(run_dir, "best.keras"))
    assert os.path.exists(os.path.join(run_dir, "backup"))
    epochs_run = _EpochsRun()
    report = train.fit(model, train_ds, val_ds, callbacks=[epochs_run], **common)
    assert epochs_run.epochs == [2]  # resumed after epoch 1
    assert report["status"] == "completed" and [e["epoch"] for e in report["history"]] == [1, 2]
    scores = [e[report["best"]["monitor"]] for e in report["history"]]
    assert report["best"]["value"] == max(scores)  # the resumed run kept epoch 1's score
    assert report["best"]["epoch"] == 1 + scores.index(max(scores))
    return report


def test_siftflow_two_headed_recipe_keeps_a_best_checkpoint_and_resumes(tmp_path):
    data_dir = str(tmp_path / "siftflow")
    siftflow.write_fake_siftflow(data_dir, num_train=4, num_test=2, size=32)

    model = multimodal.build_two_headed_fcn("16s", weights=None, widths=TINY_WIDTHS,
                                            fc_units=TINY_FC, dropout=0.0)
    train.compile_two_headed(model, train.make_optimizer("adam", 1e-3))

    info = DatasetInfo("siftflow", siftflow.NUM_SEMANTIC, siftflow.SEMANTIC_CLASSES,
                       ((0, 0, 0),) * siftflow.NUM_SEMANTIC)
    classes = {"semantic": siftflow.NUM_SEMANTIC, "geometric": siftflow.NUM_GEOMETRIC}
    train_ds = siftflow.make_siftflow_dataset(data_dir, "trainval", batch_size=2).repeat()
    test_ds = siftflow.make_siftflow_dataset(data_dir, "test")
    report = _fit_killed_then_resumed(
        str(tmp_path / "run"), model, train_ds, test_ds, info,
        monitor="val_semantic_mean_iu",
        evaluate=lambda model, ds: train.evaluate_segmentation(model, ds, classes))
    assert report["best"]["monitor"] == "val_semantic_mean_iu"
    assert set(report["final_val"]) == {"semantic", "geometric"}
    best = keras.models.load_model(tmp_path / "run" / "best.keras", compile=False)
    assert predicted_metrics(best, test_ds, siftflow.NUM_SEMANTIC, 255, output="semantic")[
        "mean_iu"] == pytest.approx(report["best"]["value"], abs=1e-6)
    final = keras.models.load_model(tmp_path / "run" / "model.keras", compile=False)
    for head, num_classes in classes.items():
        assert_same_metrics(report["final_val"][head],
                            predicted_metrics(final, test_ds, num_classes, 255, output=head))


def test_nyud_fusion_recipe_keeps_a_best_checkpoint_and_resumes(tmp_path):
    data_dir = nyud.write_fake_nyud(str(tmp_path / "nyud"), num_images=4)

    model = multimodal.build_late_fusion_fcn("32s", nyud.NUM_CLASSES, weights_rgb=None,
                                             weights_hha=None, widths=TINY_WIDTHS,
                                             fc_units=TINY_FC, dropout=0.0)
    train.compile_model(model, num_classes=nyud.NUM_CLASSES, ignore_label=255,
                        optimizer=train.make_optimizer("adam", 1e-3))

    info = DatasetInfo("nyud", nyud.NUM_CLASSES, nyud.NYUD_CLASSES,
                       ((0, 0, 0),) * nyud.NUM_CLASSES)
    train_ds = nyud.make_nyud_dataset(data_dir, "trainval", "fusion", batch_size=2).repeat()
    test_ds = nyud.make_nyud_dataset(data_dir, "test", "fusion")
    report = _fit_killed_then_resumed(str(tmp_path / "run"), model, train_ds, test_ds, info)
    final = report["final_val"]
    assert final["num_images"] == len(nyud.nyud_ids(data_dir, "test"))
    assert_same_metrics(final, predicted_metrics(
        keras.models.load_model(tmp_path / "run" / "model.keras", compile=False), test_ds,
        nyud.NUM_CLASSES, 255))
    best = keras.models.load_model(tmp_path / "run" / "best.keras", compile=False)
    assert sorted(best.input) == ["hha", "rgb"]
    assert predicted_metrics(best, test_ds, nyud.NUM_CLASSES, 255)["mean_iu"] == pytest.approx(
        report["best"]["value"], abs=1e-6)


@pytest.mark.parametrize("extra, noted", [([], True), (["--widths=4,4,8,8,8"], False)])
def test_train_script_notes_demo_widths_on_real_data(tmp_path, extra, noted):
    """examples/train.py on a real data set without --widths says that it trains its small
    demo VGG16 (printed before the data are read; the missing folder then stops it, exit 2)."""
    missing = tmp_path / "no_camvid"
    # in this process, as the script runs (the random-kills test runs it in subprocesses)
    result = run_in_process("examples/train.py", "--dataset=camvid", f"--data_dir={missing}",
                            f"--output_dir={tmp_path / 'run'}", *extra)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    defaults = _flag_defaults(os.path.join(REPO, "examples", "train.py"))
    note = (f"trains this script's small demo VGG16 (widths {defaults['widths']}, "
            f"fc {defaults['fc_units']})")
    assert (note in result.stdout) is noted, result.stdout
    assert ("--widths= --fc_units=0" in result.stdout) is noted


def _flag_defaults(script):
    """The keyword defaults a recipe script passes to `define_flags`, as written there."""
    import ast

    tree = ast.parse(open(script, encoding="utf-8").read())
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and getattr(node.func, "attr", None) == "define_flags"]
    assert len(calls) == 1, script
    return {k.arg: ast.literal_eval(k.value) for k in calls[0].keywords}


# Eighth session's mends: curves.png with a monitored loss; per-stage configs of a staged run
# checked before any stage trains.


HISTORY = [{"epoch": 1, "loss": 1.0, "val_loss": 1.2, "mean_iu": 0.3, "val_mean_iu": 0.25},
           {"epoch": 2, "loss": 0.8, "val_loss": 1.1, "mean_iu": 0.4, "val_mean_iu": 0.3}]


@pytest.mark.parametrize("monitor, metric", [
    ("val_mean_iu", "mean_iu"), ("val_loss", "mean_iu"),
    ("val_semantic_loss", "semantic_mean_iu"), ("val_semantic_mean_iu", "semantic_mean_iu")])
def test_a_monitored_loss_draws_the_iu_beside_the_loss(monitor, metric):
    assert curve_metric(monitor) == metric


@pytest.mark.parametrize("metric, history, panels", [
    ("mean_iu", HISTORY, 2),
    ("loss", HISTORY, 1),  # was two panels of the same loss
    ("semantic_mean_iu", HISTORY, 1),  # not logged: no empty panel
    ("mean_iu", [{"epoch": 1, "loss": 1.0}], 1)])
def test_curves_have_a_panel_per_logged_value(tmp_path, metric, history, panels):
    path = tmp_path / "curves.png"
    plot_curves(history, str(path), metric=metric)
    assert Image.open(path).size[0] == 450 * panels  # 5 inches a panel at 90 dpi


def test_stage_configs_are_checked_before_any_stage_trains():
    stages = ("32s", "16s", "8s")
    config = TrainConfig()
    check_stage_schedules(None, stages)
    check_stage_schedules({"16s": config.replace(epochs=4, warmup_epochs=1)}, stages)
    with pytest.raises(ValueError, match=r"FCN-16s \(stage_configs\): --warmup_epochs .* "
                                         r"warmup_epochs=2, epochs=2"):
        check_stage_schedules({"16s": config.replace(epochs=2, warmup_epochs=2)}, stages)
    with pytest.raises(ValueError, match=r"stages this run does not train: \['16'\]. "
                                         r"Expected some of \['32s', '16s', '8s'\]"):
        check_stage_schedules({"16": config}, stages)  # a typo was silently ignored


def test_a_resume_that_replans_the_schedule_says_so(tmp_path, capsys):
    from keras_fcn.training.recipe import SCHEDULE_FLAGS
    from keras_fcn.training.run_config import write_run_config
    flags = {"epochs": 50, "lr_schedule": "poly", "widths": (4, 8)}
    write_run_config(str(tmp_path), flags)
    write_run_config(str(tmp_path), flags, resume=True, replan=SCHEDULE_FLAGS)
    assert capsys.readouterr().out == ""
    write_run_config(str(tmp_path), dict(flags, epochs=80), resume=True, replan=SCHEDULE_FLAGS)
    out = capsys.readouterr().out
    assert out.startswith("--resume changes --epochs=50 to 80: the learning-rate schedule is "
                          "planned anew") and out.count("\n") == 1


def test_a_resume_of_a_finished_run_does_not_say_it_replans(tmp_path, capsys):
    """The CamVid walkthrough: --epochs=3 --resume on a finished 2-epoch run printed
    "--resume changes --epochs=2 to 3: the learning-rate schedule is planned anew", then
    refused the run ("is complete after 2 epochs"): the first line contradicted the second."""
    from keras_fcn import io
    from keras_fcn.training.recipe import SCHEDULE_FLAGS
    from keras_fcn.training.run_config import write_run_config
    from keras_fcn.training.run_dir import MODEL_FILE, finished_run
    flags = {"epochs": 2, "lr_schedule": "poly"}
    write_run_config(str(tmp_path), flags)
    (tmp_path / MODEL_FILE).write_bytes(b"a model")
    io.write_json(str(tmp_path / "metrics.json"), {"status": "completed", "epochs": 2})
    write_run_config(str(tmp_path), dict(flags, epochs=3), resume=True, replan=SCHEDULE_FLAGS)
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match=r"is complete after 2 epochs.*Received: epochs=3"):
        finished_run(str(tmp_path), 3)


# Review 7: argument checks that disagreed between modules.


def test_the_safe_backup_refuses_a_keras_without_the_internals_it_overrides(tmp_path,
                                                                            monkeypatch):
    import keras

    from keras_fcn.training.callbacks import NaNGuard, SafeBackupAndRestore

    backup = SafeBackupAndRestore(str(tmp_path / "b"), NaNGuard(steps_per_epoch=1))
    assert callable(backup._save_model)  # the installed Keras has them
    monkeypatch.delattr(keras.callbacks.BackupAndRestore, "_load_model")
    with pytest.raises(RuntimeError, match=r"Keras .* has no BackupAndRestore._load_model\(\): "
                                           "keras_fcn's safe backup"):
        SafeBackupAndRestore(str(tmp_path / "c"), NaNGuard(steps_per_epoch=1))


# Reliability audit round 5 (docs/reliability.md, "Round 5: training"): each test failed on the
# code before its fix. Tiny models on 32x32 shapes, one step per epoch.


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _data():
    images, masks = shapes.shapes_arrays(4, size=32, seed=0)
    ds = tf.data.Dataset.from_tensor_slices((images.astype("float32"), masks.astype("int32")))
    return ds.batch(2).repeat(), ds.batch(2)


def _model(optimizer="adam", learning_rate=1e-3, **options):
    keras.utils.set_random_seed(0)
    model = tiny_fcn("32s", 4, include_preprocessing=True)
    train.compile_model(model, num_classes=4, ignore_label=255,
                        optimizer=train.make_optimizer(optimizer, learning_rate, **options))
    return model


def _fit(model, run_dir, epochs, callbacks=(), **kwargs):
    train_ds, val_ds = _data()
    return train.fit(model, train_ds, val_ds, run_dir=str(run_dir), epochs=epochs,
                     info=shapes.SHAPES_INFO, steps_per_epoch=1, verbose=0,
                     callbacks=list(callbacks), **kwargs)


def _killed_after(run_dir, epochs_done, epochs, **options):
    """A run of `epochs` killed at the start of epoch `epochs_done + 1`."""
    with pytest.raises(Killed):
        _fit(_model(**options), run_dir, epochs, [Epochs(kill_at=epochs_done + 1)])


def _weights(path):
    return [w.numpy() for w in keras.models.load_model(path, compile=False).weights]


def test_a_kill_after_the_last_epoch_resumes_without_training_again(tmp_path):
    """The backup was deleted when Keras' fit ended, before the final model, evaluation and
    metrics.json: a kill there (the evaluation takes minutes on VOC) made --resume train every
    epoch again from the initial weights. The averaged (EMA) weights come back too."""

    def killed_evaluation(model, dataset):
        raise Killed()

    epochs_run = Epochs()
    with pytest.raises(Killed):
        _fit(_model(ema_decay=0.9), tmp_path, 2, [epochs_run], evaluate=killed_evaluation)
    assert epochs_run.epochs == [1, 2]
    assert os.path.isdir(tmp_path / "backup")  # kept until the run is complete
    before = _weights(tmp_path / "model.keras")
    resumed = Epochs()
    report = _fit(_model(ema_decay=0.9), tmp_path, 2, [resumed])
    assert resumed.epochs == []  # was [1, 2]: the whole run again
    assert report["status"] == "completed"
    assert [e["epoch"] for e in report["history"]] == [1, 2]
    for got, want in zip(_weights(tmp_path / "model.keras"), before):
        np.testing.assert_array_equal(got, want)  # the same averaged weights, not the raw ones
    assert not os.path.exists(tmp_path / "backup")  # deleted once metrics.json is written


def test_resumes_that_would_change_the_run_are_refused_and_the_rate_continues(tmp_path):
    """Finding 3: another optimizer state was dropped with a warning (step 0 of the schedule,
    no momentum); finding 7: fewer epochs than trained ended "completed" with "epochs": 1, a
    2-epoch history and epoch 2's weights; finding 9: history.json had no learning rate (the
    HistoryWriter docstring promised it): with it the resumed schedule is seen to continue."""

    def sgd(**options):
        schedule = train.learning_rate_schedule(1e-2, "poly", total_steps=4)
        return _model("sgd", schedule, momentum=0.9, **options)

    _killed_after(tmp_path, 2, 4, optimizer="sgd",
                  learning_rate=train.learning_rate_schedule(1e-2, "poly", total_steps=4),
                  momentum=0.9)
    backup = file_digests(tmp_path / "backup")
    for model in (_model("adam"), sgd(ema_decay=0.99)):
        with pytest.raises(ValueError) as error:
            _fit(model, tmp_path, 4)
        assert str(error.value).startswith(
            f"The backup in '{tmp_path / 'backup'}' holds the state of another optimizer (this "
            "one has ")
        assert "Were --optimizer, --momentum, --ema_decay or --precision" in str(error.value)
    with pytest.raises(ValueError) as error:
        _fit(sgd(), tmp_path, 1)
    assert str(error.value) == (
        f"The backup in '{tmp_path / 'backup'}' has trained 2 epochs, more than the 1 asked "
        "for: the run would end as a 1-epoch run holding 2 epochs. Resume with --epochs=2 or "
        "more, or start a new run. Received: epochs=1")
    assert file_digests(tmp_path / "backup") == backup
    assert not os.path.exists(tmp_path / "metrics.json")
    report = _fit(sgd(), tmp_path, 4)  # the run's own settings
    assert [e["epoch"] for e in report["history"]] == [1, 2, 3, 4]
    rates = [e["learning_rate"] for e in report["history"]]
    want = [1e-2 * (1 - step / 4) ** 0.9 for step in range(4)]  # one step per epoch
    np.testing.assert_allclose(rates, want, rtol=1e-6)


@pytest.mark.parametrize("flag, stored, given", [("holdout", "0006R0", "0001TP"),
                                                 ("val_split", "validation", "test"),
                                                 ("optimizer", "sgd", "adam")])
def test_a_resume_with_another_split_or_optimizer_is_refused(tmp_path, flag, stored, given):
    """Another validation split made best.keras's stored score (and the cached class weights)
    belong to other images; another optimizer cannot take the backup's state."""
    first = train.TrainConfig().replace(**{flag: stored})
    run_config.write_run_config(str(tmp_path), first.flat())
    with pytest.raises(ValueError) as error:
        run_config.write_run_config(str(tmp_path), first.replace(**{flag: given}).flat(),
                                     resume=True, compare=recipe.RESUME_FLAGS)
    assert str(error.value).startswith(
        f"The run in '{tmp_path}' was trained with --{flag}={stored}; --resume got "
        f"--{flag}={given}.")


def test_best_checkpoint_minimizes_a_loss_and_checks_its_mode(tmp_path):
    """fit(monitor="val_loss") kept the epoch of the highest loss (mode was always "max");
    any mode but "max" (a typo too) meant "min"."""
    best = callbacks_lib.BestCheckpoint(str(tmp_path / "best.keras"), callbacks_lib.NaNGuard(),
                                        monitor="val_loss")
    best.set_model(tiny_fcn("32s", 4))
    for epoch, value in enumerate((1.47, 1.40, 1.45)):
        best.on_epoch_end(epoch, {"val_loss": value, "val_mean_iu": 0.1})
    assert (best.best, best.best_epoch) == (1.40, 2)  # was (1.47, 1)
    assert json.load(open(tmp_path / "best_state.json")) == {
        "monitor": "val_loss", "value": 1.40, "epoch": 2}
    with pytest.raises(ValueError, match="Received: mode='maximum'"):
        callbacks_lib.BestCheckpoint(str(tmp_path / "b.keras"), callbacks_lib.NaNGuard(),
                                     mode="maximum")
    # A resume that monitors another value would compare it with val_loss's best.
    with pytest.raises(ValueError) as error:
        callbacks_lib.BestCheckpoint(str(tmp_path / "best.keras"), callbacks_lib.NaNGuard(),
                                     monitor="val_mean_iu")
    assert str(error.value) == (
        f"'{tmp_path / 'best.keras'}' was chosen by val_loss; this run monitors val_mean_iu, "
        "so a worse model could replace it. Resume with monitor='val_loss', or start a new "
        "run. Received: monitor='val_mean_iu'")


def test_fit_keeps_the_lowest_loss_and_refuses_to_train_a_completed_run_again(tmp_path):
    """Finding 5 through fit; and finding 2: fit on the folder of a completed run trained it
    again from epoch 1, replacing its model, history and metrics."""
    report = _fit(_model(learning_rate=1e-2), tmp_path, 3, monitor="val_loss")
    losses = [e["val_loss"] for e in report["history"]]
    assert len(set(losses)) == 3
    assert report["best"] == {"monitor": "val_loss", "value": min(losses),
                              "epoch": 1 + losses.index(min(losses))}
    before = file_digests(tmp_path)
    with pytest.raises(FileExistsError) as error:
        _fit(_model(), tmp_path, 3, monitor="val_loss")
    assert str(error.value) == (
        f"The run in '{tmp_path}' is complete (metrics.json, model.keras): training again "
        "would start from epoch 1 and replace its model and history. Choose another run "
        "directory, or remove this one (--overwrite on the command line) to train it again.")
    assert file_digests(tmp_path) == before


def test_a_monitor_that_is_never_logged_is_an_error(tmp_path):
    """A typo left no best.keras and `best: None`, exit 0."""
    best = callbacks_lib.BestCheckpoint(str(tmp_path / "best.keras"), callbacks_lib.NaNGuard(),
                                        monitor="val_mean_IU")
    best.set_model(tiny_fcn("32s", 4))
    with pytest.raises(ValueError) as error:
        best.on_epoch_end(0, {"loss": 1.0, "val_loss": 1.2, "val_mean_iu": 0.3})
    assert str(error.value) == (
        "monitor='val_mean_IU' is not among the logged values (loss, val_loss, val_mean_iu): "
        "best.keras would never be written. Pass one of them, e.g. monitor='val_mean_iu'.")
    # Without validation data there is no best checkpoint, as before, and no error.
    best.on_epoch_end(0, {"loss": 1.0})
    assert not os.path.exists(tmp_path / "best.keras")


def test_zero_epochs_need_no_schedule_and_the_warmup_is_checked_first(tmp_path):
    """examples/train_camvid.py --epochs=0 (poly by default) failed after reading the data
    with "total_steps=0"; a warm-up as long as the run failed there too, naming no flag."""
    config = train.TrainConfig().replace(epochs=0, lr_schedule="poly", warmup_epochs=1.0)
    assert recipe.run_schedule(config, 1e-3, train_ds=None) == 1e-3
    optimizers.check_warmup(1.0, epochs=0)
    bad = train.TrainConfig().replace(epochs=3, warmup_epochs=3.0, lr_schedule="poly",
                                      output_dir=str(tmp_path / "run"))
    with pytest.raises(ValueError) as error:
        train.run(bad)
    assert str(error.value) == (
        "--warmup_epochs must be a number >= 0 and below --epochs (the warm-up must end before "
        "the run does). Received: warmup_epochs=3.0, epochs=3")
    assert not os.path.exists(tmp_path / "run")  # before the run folder and the data


_JAX_SCRIPT = r'''
import json, os, sys
import keras, numpy as np
from keras_fcn import training as train
from keras_fcn.data.arrays import make_pydataset
from keras_fcn.datasets import shapes
from keras_fcn.datasets.pairs import file_pairs
from keras_fcn.models import build_fcn
folder, run_dir = sys.argv[1], sys.argv[2]
shapes.make_shapes_dataset(folder, num_train=4, num_val=2, size=32, seed=0)
(train_pairs, info), (val_pairs, _) = (file_pairs("shapes", s, folder) for s in ("train", "val"))
class Killed(BaseException):
    pass
def fit(epochs, evaluate=None):
    keras.utils.set_random_seed(0)
    model = build_fcn("32s", num_classes=4, weights=None, widths=(4, 4, 8, 8, 8), fc_units=8,
                      dropout=0.0, include_preprocessing=True)
    schedule = train.learning_rate_schedule(1e-2, "poly", total_steps=4)
    train.compile_model(model, num_classes=4, ignore_label=255,
                        optimizer=train.make_optimizer("adam", schedule, ema_decay=0.9))
    data = make_pydataset(train_pairs, num_classes=4, batch_size=2, shuffle=True, seed=0)
    val = make_pydataset(val_pairs, num_classes=4)
    seen = []
    record = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: seen.append(e + 1))
    report = train.fit(model, data, val, run_dir=run_dir, epochs=epochs, info=info, verbose=0,
                       callbacks=[record], evaluate=evaluate)
    return seen, report
def killed(model, dataset):
    raise Killed()
try:
    fit(2, killed)
except Killed:
    pass
seen, report = fit(2)
print("RESULT " + json.dumps({"seen": seen, "backup": os.path.exists(run_dir + "/backup"),
                              "rates": [e["learning_rate"] for e in report["history"]]}))
'''


@pytest.mark.slow
def test_the_jax_pydataset_path_resumes_a_kill_after_the_last_epoch(tmp_path):
    """Finding 1 and 9 on KERAS_BACKEND=jax with keras_fcn.data.arrays' PyDataset (two steps an
    epoch): the resume trains no epoch, and the history holds the schedule's rates."""
    pytest.importorskip("jax")
    script = tmp_path / "jax_case.py"
    script.write_text(_JAX_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "data"),
                           str(tmp_path / "run")], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": ROOT})
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT "):])
    assert result["seen"] == [] and not result["backup"]
    np.testing.assert_allclose(result["rates"], [1e-2 * (1 - s / 4) ** 0.9 for s in (1, 3)],
                               rtol=1e-6)


# Mutation audit, round 8 (optimizers): each test fails on a mutant of
# keras_fcn/training/optimizers.py that the suite let pass.


def test_kernel_l2_penalty_is_half_the_decay_times_each_trainable_kernels_square():
    """Caffe's decay: gradient wd * kernel, so the penalty is wd / 2 * ||kernel||^2, on the
    trainable kernels only (no bias, no fixed bilinear kernel)."""
    model = tiny_fcn("32s", 4)
    assert train.apply_kernel_l2(model, 4e-3) == 16  # 13 convolutions, fc6, fc7, score_fr
    kernels = [w for w in model.trainable_weights if w.path.endswith("kernel")]
    expected = sum(2e-3 * float(np.sum(np.square(w.numpy().astype("float64"))))
                   for w in kernels)
    got = sum(float(loss) for loss in model.losses)
    assert got == pytest.approx(expected, rel=1e-5)
    assert train.apply_kernel_l2(model, 0) == 16 and model.losses == []


def test_default_learning_rates_are_the_papers():
    """1e-10 (FCN-32s), 1e-12 (FCN-16s), 1e-13 (FCN-8s) with the summed loss, times the
    pixels with the averaged loss; Adam 1e-3."""
    for variant, rate in (("32s", 1e-10), ("16s", 1e-12), ("8s", 1e-13), ("8s_at_once", 1e-10)):
        assert optimizers.default_learning_rate("sgd", "sum", variant, 500) == rate
        assert optimizers.default_learning_rate("sgd", "mean", variant, 500) == \
            pytest.approx(rate * 500)
    assert optimizers.default_learning_rate("adam", "mean", "16s", 500) == 1e-3


def test_only_a_completed_run_of_the_same_epochs_is_finished(tmp_path):
    """A NaN-stopped run is not complete; a run of more epochs than asked is refused too."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(b"model")
    (run / "metrics.json").write_text(json.dumps({"status": "nan", "epochs": 3}))
    assert run_dir_lib.completed_run(str(run)) is None
    assert run_dir_lib.finished_run(str(run), 3) is None
    (run / "metrics.json").write_text(json.dumps({"status": "completed", "epochs": 3}))
    assert run_dir_lib.finished_run(str(run), 3)["epochs"] == 3
    with pytest.raises(ValueError, match=r"complete after 3 epochs.*Received: epochs=2\."):
        run_dir_lib.finished_run(str(run), 2)


def test_overwrite_keeps_a_folder_named_like_a_run_file(tmp_path):
    """A folder 'metrics.json/' is not the run's file: --overwrite must not delete it."""
    run = tmp_path / "run"
    (run / "metrics.json").mkdir(parents=True)
    (run / "metrics.json" / "mine.txt").write_text("mine")
    assert run_dir_lib.unexpected_entries(str(run)) == ["metrics.json" + os.sep]
    with pytest.raises(ValueError, match="holds other files: 'metrics.json/'"):
        train.prepare_run_dir(str(run), overwrite=True)
    assert (run / "metrics.json" / "mine.txt").read_text() == "mine"
