"""Training: optimizers, compile, distribution, callbacks, run directories and staged training.

The recipes in `examples/` are thin scripts over this module. A run directory receives:

- `model.keras`: the final model (not written when training stopped on a NaN loss);
- `best.keras`: the model with the best validation mean IU (written to a temporary file and
  renamed, so it is never half-written);
- `metrics.json`: per-epoch history (continuous across `--resume`), final validation metrics
  (pixel acc, mean acc, mean IU, fw IU, per-class IU) and how the run ended;
- `curves.png`: loss and mean IU per epoch;
- `labels.json`: class names, palette, ignore label and preprocessing, for export and predict
  (copied to `model.labels.json` and `best.labels.json`, the sidecars `keras_fcn.inference`
  reads next to a model file).

Learning rate and loss normalization. The paper sums the loss over the pixels of an image
(`loss_reduction="sum"`, lr 1e-10 for FCN-32s). With the loss averaged over valid pixels
(`"mean"`) every gradient is `1 / pixels` smaller, so the equivalent rate is

    lr_mean = lr_sum * pixels        (e.g. 1e-10 * 500 * 375 ~= 1.9e-5 on VOC)

(`equivalent_learning_rate` computes it). Adam is invariant to the loss scale, so its rate is
the same for both reductions.

Weight decay (5e-4 in the paper) is applied to convolution kernels only, never to biases:

- SGD: as an L2 penalty `wd / 2 * ||kernel||^2` added to the loss (`apply_kernel_l2`), which is
  exactly Caffe's weight decay: its gradient `wd * kernel` goes through the momentum like the
  data gradient. Decoupled decay would differ from the reference by the momentum gain
  `1 / (1 - 0.99) = 100`. With `loss_reduction="mean"` the penalty is divided by the pixel
  count, like the learning rate, so the balance between data and decay stays the paper's.
- Adam: decoupled decay (AdamW, `exclude_from_weight_decay(var_names=["bias"])`), because an L2
  penalty is rescaled away by Adam's per-weight normalization (Loshchilov & Hutter, 2019).

The reference doubles the learning rate of biases. `CaffeSGD` implements it by doubling the
bias gradients before the momentum update, which for SGD is the same as doubling their rate
(with Adam, scaling a gradient changes nothing, so Adam has no bias multiplier).

Example:
    >>> from keras_fcn import train
    >>> model = build_fcn8s(num_classes=11, weights=None, include_preprocessing=True)
    >>> train.compile_model(model, num_classes=11, ignore_label=11,
    ...                     optimizer=train.make_optimizer("adam", 1e-4))
    >>> result = train.fit(model, train_ds, val_ds, run_dir="runs/camvid", epochs=10,
    ...                    info=info)
"""

import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from keras_fcn import data as data_lib
from keras_fcn import losses as losses_lib
from keras_fcn import metrics as metrics_lib
from keras_fcn import models as models_lib
from keras_fcn._checks import check_choice

logger = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam")
STRATEGIES = ("default", "mirrored", "multi_worker")
LOSS_REDUCTIONS = ("mean", "sum")
MODELS = ("fcn32s", "fcn16s", "fcn8s", "fcn8s_at_once", "staged")
STAGES = ("32s", "16s", "8s")
PAPER_WEIGHT_DECAY = 5e-4
PAPER_MOMENTUM = 0.99
# Fixed rates of the reference with the summed loss, per stage (the 8s stage uses 1e-13; 1e-14
# was used for the longer "heavy" runs).
PAPER_LEARNING_RATES_SUM = {"32s": 1e-10, "16s": 1e-12, "8s": 1e-13, "8s_at_once": 1e-10}
RUN_FILES = ("model.keras", "best.keras", "metrics.json", "curves.png", "labels.json")
BACKUP_DIR = "backup"
HISTORY_FILE = "history.json"
BEST_STATE_FILE = "best_state.json"


# --------------------------------------------------------------------------------------------
# Learning rate, optimizers, weight decay
# --------------------------------------------------------------------------------------------


def equivalent_learning_rate(learning_rate, from_reduction, to_reduction, pixels):
    """Converts an SGD learning rate between summed and averaged pixel losses.

    Args:
        learning_rate: the rate used with `from_reduction`.
        from_reduction: "sum" or "mean".
        to_reduction: "sum" or "mean".
        pixels: (valid) pixels per image, e.g. 500 * 375 for a typical VOC image.

    Returns:
        The rate giving the same updates with `to_reduction` (`lr_mean = lr_sum * pixels`).

    Example:
        >>> equivalent_learning_rate(1e-10, "sum", "mean", 500 * 375)
        1.875e-05
    """
    check_choice("from_reduction", from_reduction, LOSS_REDUCTIONS)
    check_choice("to_reduction", to_reduction, LOSS_REDUCTIONS)
    if not pixels or pixels <= 0:
        raise ValueError(f"`pixels` must be positive. Received: pixels={pixels!r}")
    if from_reduction == to_reduction:
        return float(learning_rate)
    factor = pixels if to_reduction == "mean" else 1.0 / pixels
    return float(learning_rate) * factor


def _is_bias(variable):
    return variable.path.endswith("bias") or variable.name == "bias"


@keras.saving.register_keras_serializable(package="keras_fcn")
class CaffeSGD(keras.optimizers.SGD):
    """SGD with momentum whose bias gradients are scaled by `bias_lr_multiplier`.

    Scaling a gradient by k before a (momentum) SGD update is the same as scaling that
    variable's learning rate by k, so `bias_lr_multiplier=2` is the reference's doubled bias
    learning rate (Caffe `lr_mult: 2` on biases).

    Args:
        learning_rate: base rate (of the kernels).
        momentum: momentum (0.99 in the reference).
        bias_lr_multiplier: rate multiplier of variables named "bias".
        **kwargs: other `keras.optimizers.SGD` arguments.

    Example:
        >>> optimizer = CaffeSGD(learning_rate=1e-5, momentum=0.99, bias_lr_multiplier=2.0)
    """

    def __init__(self, learning_rate=0.01, momentum=0.99, bias_lr_multiplier=2.0, **kwargs):
        super().__init__(learning_rate=learning_rate, momentum=momentum, **kwargs)
        if not bias_lr_multiplier or bias_lr_multiplier <= 0:
            raise ValueError(
                f"`bias_lr_multiplier` must be positive. Received: "
                f"bias_lr_multiplier={bias_lr_multiplier!r}")
        self.bias_lr_multiplier = float(bias_lr_multiplier)

    def apply(self, grads, trainable_variables=None):
        if self.bias_lr_multiplier != 1.0:
            variables = trainable_variables or self._trainable_variables
            grads = [
                g * self.bias_lr_multiplier if g is not None and _is_bias(v) else g
                for g, v in zip(grads, variables)
            ]
        return super().apply(grads, trainable_variables)

    def get_config(self):
        config = super().get_config()
        config["bias_lr_multiplier"] = self.bias_lr_multiplier
        return config


def make_optimizer(name="sgd", learning_rate=1e-4, *, momentum=PAPER_MOMENTUM,
                   weight_decay=PAPER_WEIGHT_DECAY, bias_lr_multiplier=2.0, clipnorm=None):
    """Builds the optimizer of a recipe.

    Args:
        name: "sgd" (`CaffeSGD`: momentum, doubled bias rate; weight decay is added to the
            loss by `compile_model`, see the module docstring) or "adam" (AdamW with
            decoupled decay `weight_decay`, biases excluded).
        learning_rate: float or a `keras.optimizers.schedules.LearningRateSchedule`.
        momentum: SGD momentum (0.99 in the paper).
        weight_decay: for "adam", decoupled decay of kernels; ignored by "sgd" here.
        bias_lr_multiplier: SGD rate multiplier of biases (2 in the paper).
        clipnorm: optional per-variable gradient norm clip.

    Returns:
        A `keras.optimizers.Optimizer` (create it inside `strategy.scope()`).

    Example:
        >>> optimizer = make_optimizer("adam", 1e-4)
    """
    check_choice("optimizer", name, OPTIMIZERS)
    if isinstance(learning_rate, (int, float)) and not learning_rate > 0:
        raise ValueError(f"`learning_rate` must be positive. Received: "
                         f"learning_rate={learning_rate!r}")
    if name == "sgd":
        return CaffeSGD(learning_rate=learning_rate, momentum=momentum,
                        bias_lr_multiplier=bias_lr_multiplier, clipnorm=clipnorm)
    optimizer = keras.optimizers.AdamW(learning_rate=learning_rate,
                                       weight_decay=weight_decay or 0.0, clipnorm=clipnorm)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    return optimizer


def apply_kernel_l2(model, weight_decay):
    """Adds the L2 penalty `weight_decay / 2 * ||kernel||^2` of every trainable kernel to the loss.

    Its gradient is `weight_decay * kernel`, Caffe's weight decay. Biases and the (fixed)
    bilinear upsampling kernels get no decay.

    Args:
        model: a built `keras.Model`.
        weight_decay: decay coefficient (0 or None removes the penalties).

    Returns:
        Number of kernels that got the penalty.

    Example:
        >>> apply_kernel_l2(model, 5e-4)
        18
    """
    regularizer = keras.regularizers.L2(weight_decay / 2.0) if weight_decay else None
    count = 0
    for layer in _all_layers(model):
        kernel = getattr(layer, "kernel", None)
        if kernel is None or not layer.trainable or not getattr(kernel, "trainable", True):
            continue
        kernel.regularizer = regularizer
        count += 1
    return count


def _all_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


# --------------------------------------------------------------------------------------------
# Compile
# --------------------------------------------------------------------------------------------


def make_metrics(num_classes, ignore_label):
    """The paper's four metrics as streaming Keras metrics (logged as `val_mean_iu` etc.).

    Example:
        >>> [m.name for m in make_metrics(11, 11)]
        ['pixel_accuracy', 'mean_accuracy', 'mean_iu', 'frequency_weighted_iu']
    """
    return [
        metrics_lib.PixelAccuracy(num_classes, ignore_label),
        metrics_lib.MeanAccuracy(num_classes, ignore_label),
        metrics_lib.MeanIU(num_classes, ignore_label),
        metrics_lib.FrequencyWeightedIU(num_classes, ignore_label),
    ]


def compile_model(model, *, num_classes, ignore_label, optimizer, loss_reduction="mean",
                  class_weights=None, weight_decay=PAPER_WEIGHT_DECAY, pixels_per_image=None,
                  jit_compile=False, steps_per_execution=1):
    """Compiles a segmentation model with the ignore-label loss and the paper's metrics.

    Under a `mixed_float16` global policy Keras wraps the optimizer in a
    `keras.optimizers.LossScaleOptimizer` itself (`compile(auto_scale_loss=True)`).

    Args:
        model: the FCN (logits output), built inside the strategy scope.
        num_classes: number of classes.
        ignore_label: void label (no loss, not counted).
        optimizer: from `make_optimizer`.
        loss_reduction: "mean" (over valid pixels) or "sum" (per image, the paper's).
        class_weights: optional per-class loss weights.
        weight_decay: with `CaffeSGD`, the L2 coefficient on kernels (see module docstring).
        pixels_per_image: with "mean" and SGD, divides the L2 coefficient so decay matches
            the summed-loss recipe; None keeps `weight_decay` as is.
        jit_compile: compile the train step with XLA.
        steps_per_execution: train steps per `tf.function` call.

    Returns:
        The model.

    Example:
        >>> compile_model(model, num_classes=21, ignore_label=255,
        ...               optimizer=make_optimizer("sgd", 1.9e-5))
    """
    check_choice("loss_reduction", loss_reduction, LOSS_REDUCTIONS)
    if isinstance(optimizer, CaffeSGD):
        decay = weight_decay or 0.0
        if loss_reduction == "mean" and pixels_per_image:
            decay /= float(pixels_per_image)
        apply_kernel_l2(model, decay)
    loss = losses_lib.SparseCategoricalCrossentropyIgnore(
        num_classes=num_classes, ignore_label=ignore_label, reduction_mode=loss_reduction,
        class_weights=None if class_weights is None else [float(w) for w in class_weights])
    model.compile(optimizer=optimizer, loss=loss, metrics=make_metrics(num_classes, ignore_label),
                  jit_compile=jit_compile, steps_per_execution=steps_per_execution)
    return model


# --------------------------------------------------------------------------------------------
# Distribution and precision
# --------------------------------------------------------------------------------------------


def make_strategy(name="default", devices=None):
    """Returns a `tf.distribute.Strategy`.

    Args:
        name: "default" (one device), "mirrored" (all local GPUs, or `devices`) or
            "multi_worker" (`MultiWorkerMirroredStrategy`, cluster from the `TF_CONFIG`
            environment variable; create it before any other TensorFlow op).
        devices: optional device list for "mirrored", e.g. `["/cpu:0", "/cpu:1"]`.

    Returns:
        The strategy. Build the model and optimizer inside `strategy.scope()`; the batch size
        of the data set is the global batch, split across replicas.

    Example:
        >>> strategy = make_strategy("mirrored")
        >>> with strategy.scope():
        ...     model = build_fcn8s(num_classes=21)
    """
    check_choice("strategy", name, STRATEGIES)
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy='multi_worker' needs the TF_CONFIG environment variable "
                             "(cluster and task). Received: TF_CONFIG unset")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def patch_multi_worker_build(model, strategy):
    """Works around a Keras 3 bug with `MultiWorkerMirroredStrategy` (keras-team/keras#20585,
    tensorflow/tensorflow#72388): `fit` first builds the model symbolically from a batch it
    *reduces* across workers, which fails with "Attempt to convert a value (PerReplica...)".
    The patched build uses this worker's local batch instead (only shapes and dtypes are
    used). Does nothing for other strategies or when Keras changes the private method.

    Returns:
        True if the model was patched.
    """
    original = getattr(model, "_maybe_symbolic_build", None)
    if original is None or not isinstance(
            strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False

    def build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues) else v, next(batches))
                break
        return original(data_batch=data_batch)

    model._maybe_symbolic_build = build
    _patch_multi_worker_log_reduction()
    return True


def _patch_multi_worker_log_reduction():
    """Second part of the Keras 3 multi-worker workaround: `fit` reduces the per-step logs
    (scalar loss and metric values) across workers with `strategy.reduce("MEAN", v, axis=0)`,
    which fails on scalars ("Invalid reduction dimension 0 for input with 0 dimensions").
    Scalars are reduced with `axis=None` instead; everything else is left to Keras."""
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica
    if getattr(original, "_keras_fcn_patched", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if (reduction in ("mean", "auto")
                and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)):
            def reduce_one(v):
                local = v
                if isinstance(v, tf.distribute.DistributedValues):
                    local = strategy.experimental_local_results(v)[0]
                if getattr(local, "shape", None) is not None and local.shape.rank == 0:
                    return strategy.reduce("MEAN", v, axis=None)
                return original(v, strategy, reduction)

            return tf.nest.map_structure(reduce_one, values)
        return original(values, strategy, reduction)

    reduce_per_replica._keras_fcn_patched = True
    tf_trainer.reduce_per_replica = reduce_per_replica


def is_chief():
    """True unless `TF_CONFIG` names this process a non-chief worker (worker index > 0 or
    any worker when a "chief" task exists)."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = config.get("task", {})
    kind, index = task.get("type"), int(task.get("index", 0))
    if kind is None or kind == "chief":
        return True
    if kind == "worker":
        return index == 0 and "chief" not in config.get("cluster", {})
    return False


def set_mixed_precision(enabled):
    """Sets the global Keras dtype policy to "mixed_float16" (or back to "float32").

    Call before building the model. The FCN's final `score` layer stays float32.
    """
    keras.mixed_precision.set_global_policy("mixed_float16" if enabled else "float32")


# --------------------------------------------------------------------------------------------
# Callbacks
# --------------------------------------------------------------------------------------------


def _finite(value):
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return True


def save_model_atomic(model, path):
    """Saves `model` to `path` through a temporary file and a rename, so `path` always holds a
    complete model (an interrupted save leaves the old file in place).

    Example:
        >>> save_model_atomic(model, "runs/a/best.keras")
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".keras", dir=directory)
    os.close(fd)
    try:
        model.save(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _write_json_atomic(obj, path):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(_jsonable(obj), f, indent=2)
    os.replace(tmp, path)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


class NaNGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss and names the step.

    Better than `keras.callbacks.TerminateOnNaN`: it records epoch, batch and global step,
    and the other callbacks of this module (`BestCheckpoint`, `SafeBackupAndRestore`) check
    `nan_step` and do not save the diverged weights, so the last good checkpoints survive.

    Attributes:
        nan_step: None, or a dict {"epoch", "batch", "step", "loss"} of the failure.
    """

    def __init__(self, steps_per_epoch=None):
        super().__init__()
        self.nan_step = None
        self._steps_per_epoch = steps_per_epoch
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if self.nan_step is None and loss is not None and not _finite(loss):
            step = None if self._steps_per_epoch is None else (
                self._epoch * self._steps_per_epoch + batch + 1)
            self.nan_step = {"epoch": self._epoch + 1, "batch": batch + 1, "step": step,
                             "loss": str(float(loss))}
            message = (f"Loss is {float(loss)} at epoch {self._epoch + 1}, batch {batch + 1}"
                       + (f" (global step {step})" if step else "")
                       + ": training stopped; the last good checkpoints are kept. Lower the "
                       "learning rate or check the data.")
            print(f"\n{message}", file=sys.stderr, flush=True)
            logger.error(message)
            self.model.stop_training = True


class SafeBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` that does not back up weights after a NaN stop (`NaNGuard`), and
    keeps the backup in that case so a fixed run can resume from the last good epoch."""

    def __init__(self, backup_dir, nan_guard, **kwargs):
        super().__init__(backup_dir, **kwargs)
        self._nan_guard = nan_guard

    def on_epoch_end(self, epoch, logs=None):
        if self._nan_guard.nan_step is None:
            super().on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        if self._nan_guard.nan_step is None:
            super().on_train_end(logs)


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the model with the best `monitor` value atomically; survives resumes.

    Unlike `keras.callbacks.ModelCheckpoint`, the best value is stored next to the checkpoint
    (`best_state.json`) and read back on a resumed run, so a resumed run never replaces a
    better checkpoint, and nothing is saved after a NaN stop.
    """

    def __init__(self, path, nan_guard, monitor="val_mean_iu", mode="max"):
        super().__init__()
        self.path = path
        self.monitor = monitor
        self.sign = 1.0 if mode == "max" else -1.0
        self._nan_guard = nan_guard
        self._state_path = os.path.join(os.path.dirname(path), BEST_STATE_FILE)
        self.best = None
        self.best_epoch = None
        if os.path.exists(self._state_path) and os.path.exists(path):
            with open(self._state_path, encoding="utf-8") as f:
                state = json.load(f)
            self.best, self.best_epoch = state.get("value"), state.get("epoch")

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if self._nan_guard.nan_step is not None or value is None or not _finite(value):
            return
        value = float(value)
        if self.best is None or self.sign * value > self.sign * self.best:
            save_model_atomic(self.model, self.path)
            self.best, self.best_epoch = value, epoch + 1
            _write_json_atomic({"monitor": self.monitor, "value": value, "epoch": epoch + 1},
                               self._state_path)


class HistoryWriter(keras.callbacks.Callback):
    """Appends each epoch's logs (plus time and learning rate) to `history.json`, keeping the
    epochs of earlier runs of the same directory, so history is continuous across resumes."""

    def __init__(self, path, nan_guard):
        super().__init__()
        self.path = path
        self._nan_guard = nan_guard
        self._start = None
        self.epochs = []
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                self.epochs = json.load(f)

    def on_train_begin(self, logs=None):
        first = int(getattr(self.model, "_initial_epoch", 0) or 0)
        # Epochs after the restored one were lost with the interrupted run: drop them.
        self.epochs = [e for e in self.epochs if e["epoch"] <= first]

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        entry = {"epoch": epoch + 1, "seconds": round(time.time() - self._start, 2)}
        entry.update({k: float(v) for k, v in (logs or {}).items()
                      if np.ndim(v) == 0 and not isinstance(v, str)})
        if self._nan_guard.nan_step is not None:
            entry["nan"] = True
        self.epochs = [e for e in self.epochs if e["epoch"] != epoch + 1] + [entry]
        _write_json_atomic(self.epochs, self.path)


class EpochMarker(keras.callbacks.Callback):
    """Writes `epoch_<n>.done` files into a folder at each epoch end (for tests and for
    supervisors that want to know progress without parsing logs)."""

    def __init__(self, directory):
        super().__init__()
        self.directory = directory

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.directory, exist_ok=True)
        with open(os.path.join(self.directory, f"epoch_{epoch + 1}.done"), "w") as f:
            f.write(json.dumps(_jsonable(dict(logs or {}))))


def make_callbacks(run_dir, *, nan_guard, tensorboard=False, monitor="val_mean_iu",
                   extra=None):
    """The callbacks of a training run in `run_dir`.

    Returns:
        A list: `NaNGuard`, `SafeBackupAndRestore` (`run_dir/backup`, every epoch),
        `BestCheckpoint` (`best.keras`), `HistoryWriter` and optionally TensorBoard
        (`run_dir/logs`).
    """
    callbacks = [
        nan_guard,
        SafeBackupAndRestore(os.path.join(run_dir, BACKUP_DIR), nan_guard),
        BestCheckpoint(os.path.join(run_dir, "best.keras"), nan_guard, monitor=monitor),
        HistoryWriter(os.path.join(run_dir, HISTORY_FILE), nan_guard),
    ]
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(run_dir, "logs")))
    return callbacks + list(extra or [])


# --------------------------------------------------------------------------------------------
# Run directory
# --------------------------------------------------------------------------------------------


def prepare_run_dir(run_dir, *, resume=False, overwrite=False):
    """Creates `run_dir`, refusing to reuse a run directory unless asked.

    Args:
        run_dir: the run directory.
        resume: continue the run in `run_dir` (its backup and history are kept).
        overwrite: delete an existing `run_dir` and start again.

    Returns:
        The absolute path.

    Raises:
        FileExistsError: `run_dir` holds a run and neither `resume` nor `overwrite` is set.
    """
    run_dir = os.path.abspath(os.path.expanduser(run_dir))
    exists = os.path.isdir(run_dir) and bool(os.listdir(run_dir))
    if exists and overwrite and not resume:
        shutil.rmtree(run_dir)
    elif exists and not resume:
        raise FileExistsError(
            f"Run directory '{run_dir}' exists. Pass --resume to continue it or --overwrite to "
            "replace it, or choose another --output_dir.")
    os.makedirs(run_dir, exist_ok=True)
    return run_dir


def write_labels_json(path, info, *, image_size=None, model_name=None, extra=None):
    """Writes `labels.json`: what exporters and predictors need to use the model.

    Args:
        path: file to write.
        info: a `keras_fcn.datasets.DatasetInfo` (or any object with `name`, `num_classes`,
            `class_names`, `palette`, `ignore_label`).
        image_size: (height, width) the model was trained at, or None for native size.
        model_name: e.g. "fcn8s".
        extra: more keys to store.

    Returns:
        The dict written.
    """
    labels = {
        "dataset": info.name,
        "num_classes": int(info.num_classes),
        "class_names": list(info.class_names),
        "palette": [list(map(int, c)) for c in info.palette][: max(info.num_classes,
                                                                     len(info.palette))],
        "ignore_label": int(info.ignore_label),
        "preprocessing": {
            "input": "RGB, float32 or uint8, values 0..255 (no scaling)",
            "included_in_model": True,
            "mode": "caffe: RGB->BGR, minus mean, inside the model's 'preprocess' layer",
            "mean_bgr": [float(v) for v in _mean_bgr()],
            "image_size": list(image_size) if image_size else None,
            "mask_resize": "nearest",
        },
        "model": model_name,
        "output": "logits (N, H, W, num_classes), aligned with the input; argmax = class id",
    }
    labels.update(extra or {})
    _write_json_atomic(labels, path)
    # `keras_fcn.inference` looks for `<model>.labels.json` next to a model file.
    for model_file in ("model", "best"):
        _write_json_atomic(labels, os.path.join(os.path.dirname(path),
                                                f"{model_file}.labels.json"))
    return labels


def _mean_bgr():
    from keras_fcn.layers import FCN_MEAN_BGR

    return FCN_MEAN_BGR


def read_labels_json(path):
    """Reads a `labels.json` (a run directory or the file itself)."""
    if os.path.isdir(path):
        path = os.path.join(path, "labels.json")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def plot_curves(history, path, title=None):
    """Plots loss (train/val) and mean IU (train/val) per epoch into a PNG.

    Args:
        history: list of per-epoch dicts (as in `history.json`).
        path: PNG path.
        title: optional figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [e["epoch"] for e in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "loss", "loss"), (axes[1], "mean_iu", "mean IU")):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = [e.get(prefix + key) for e in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [np.nan if v is None else v for v in values], style, marker="o",
                        label=("val " if prefix else "train ") + label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def _predict_fn(model):
    @tf.function(reduce_retracing=True, autograph=False)
    def predict(images, size, flip):
        logits = tf.cast(model(images, training=False), tf.float32)
        if flip:  # a Python bool: one trace per value
            flipped = tf.cast(model(tf.reverse(images, axis=[2]), training=False), tf.float32)
            logits = tf.nn.softmax(logits) + tf.reverse(tf.nn.softmax(flipped), axis=[2])
        same_size = tf.reduce_all(tf.equal(tf.shape(logits)[1:3], size))
        logits = tf.cond(same_size, lambda: logits,
                         lambda: tf.image.resize(logits, size, method="bilinear"))
        return tf.argmax(logits, axis=-1, output_type=tf.int32)

    return predict


def evaluate_model(model, dataset, *, num_classes, ignore_label, flip=False, verbose=1,
                   max_batches=None):
    """Evaluates a segmentation model with the paper's metrics, in numpy.

    Predictions whose size differs from the mask (a model run at reduced resolution on
    full-size labels) are resized bilinearly (logits) to the mask size first, so figures
    are always at label resolution.

    Args:
        model: logits model.
        dataset: `tf.data.Dataset` of (images (B, h, w, 3), masks (B, H, W)).
        num_classes: number of classes.
        ignore_label: void label, not counted.
        flip: also predict the left-right flipped image and average the probabilities (TTA).
        verbose: show a progress bar.
        max_batches: stop after this many batches.

    Returns:
        dict: "pixel_accuracy", "mean_accuracy", "mean_iu", "frequency_weighted_iu",
        "per_class_iu" (list, None for absent classes), "confusion_matrix" (list of lists),
        "num_images".

    Example:
        >>> results = evaluate_model(model, val_ds, num_classes=11, ignore_label=11)
        >>> results["mean_iu"]
    """
    predict = _predict_fn(model)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    images_seen = 0
    total = int(dataset.cardinality())
    total = total if total > 0 else None
    if max_batches is not None and total is not None:
        total = min(total, max_batches)
    bar = keras.utils.Progbar(total, unit_name="batch") if verbose else None
    for index, (images, masks) in enumerate(dataset):
        if max_batches is not None and index >= max_batches:
            break
        preds = predict(images, tf.shape(masks)[1:3], bool(flip))
        confusion += metrics_lib.confusion_matrix(masks.numpy(), preds.numpy(), num_classes,
                                                  ignore_label)
        images_seen += int(images.shape[0])
        if bar is not None:
            bar.update(index + 1)
    if bar is not None and total is None:
        print()
    results = metrics_lib.segmentation_metrics(confusion)
    results["per_class_iu"] = [None if np.isnan(v) else float(v) for v in results["per_class_iu"]]
    results["confusion_matrix"] = confusion.tolist()
    results["num_images"] = images_seen
    return results


def format_results(results, class_names=None):
    """Formats evaluation results as a text table (the four metrics, then IU per class).

    Example:
        >>> print(format_results(results, info.class_names))
    """
    lines = [f"{'metric':<24}{'value':>8}"]
    for key, label in (("pixel_accuracy", "pixel accuracy"), ("mean_accuracy", "mean accuracy"),
                       ("mean_iu", "mean IU"), ("frequency_weighted_iu", "frequency weighted IU")):
        lines.append(f"{label:<24}{100 * results[key]:>7.2f}%")
    lines.append("")
    lines.append(f"{'class':<24}{'IU':>8}")
    for index, iu in enumerate(results["per_class_iu"]):
        name = class_names[index] if class_names and index < len(class_names) else str(index)
        lines.append(f"{name:<24}" + ("     n/a" if iu is None else f"{100 * iu:>7.2f}%"))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Fit
# --------------------------------------------------------------------------------------------


def fit(model, train_ds, val_ds, *, run_dir, epochs, info, steps_per_epoch=None,
        validation_steps=None, eval_ds=None, tensorboard=False, verbose="auto",
        image_size=None, model_name=None, flip_eval=False, callbacks=None, chief=True):
    """Trains a compiled model and fills `run_dir` (see the module docstring).

    The run resumes from `run_dir/backup` when it exists (use `prepare_run_dir` to decide
    whether that is wanted).

    Args:
        model: compiled model.
        train_ds: training `tf.data.Dataset` (repeated if `steps_per_epoch` is set).
        val_ds: validation data set (for `val_mean_iu` each epoch), or None.
        run_dir: run directory.
        epochs: total number of epochs (also when resuming).
        info: `DatasetInfo` of the data (for labels.json and the per-class table).
        steps_per_epoch: train steps per epoch (None: one pass over `train_ds`).
        validation_steps: validation steps per epoch (None: all of `val_ds`).
        eval_ds: data set of the final evaluation (default `val_ds`); masks may be at full
            resolution (logits are resized to them).
        tensorboard: write TensorBoard logs to `run_dir/logs`.
        verbose: Keras `fit` verbosity ("auto": progress bars on a terminal, one line per
            epoch otherwise).
        image_size: training resolution, stored in labels.json.
        model_name: stored in labels.json and metrics.json.
        flip_eval: flip TTA in the final evaluation.
        callbacks: more callbacks.
        chief: False for non-chief multi-worker processes (they write to `run_dir` anyway;
            give them a private one).

    Returns:
        dict with "history" (list of epoch dicts), "final" (evaluation results or None),
        "status" ("completed" or "nan"), "nan_step", "best" and the file paths.
    """
    os.makedirs(run_dir, exist_ok=True)
    nan_guard = NaNGuard(steps_per_epoch)
    all_callbacks = make_callbacks(run_dir, nan_guard=nan_guard, tensorboard=tensorboard,
                                   extra=callbacks)
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    labels_path = os.path.join(run_dir, "labels.json")
    write_labels_json(labels_path, info, image_size=image_size, model_name=model_name)
    started = time.time()
    # shuffle=False: the tf.data pipeline shuffles (seeded); Keras would only warn about it.
    model.fit(train_ds, validation_data=val_ds, epochs=epochs, steps_per_epoch=steps_per_epoch,
              validation_steps=validation_steps, callbacks=all_callbacks, verbose=verbose,
              shuffle=False)
    train_seconds = time.time() - started
    history_writer = next(c for c in all_callbacks if isinstance(c, HistoryWriter))
    best = next(c for c in all_callbacks if isinstance(c, BestCheckpoint))
    status = "nan" if nan_guard.nan_step else "completed"
    final = None
    if status == "completed":
        if chief:
            save_model_atomic(model, os.path.join(run_dir, "model.keras"))
        eval_ds = eval_ds if eval_ds is not None else val_ds
        if eval_ds is not None:
            final = evaluate_model(model, eval_ds, num_classes=info.num_classes,
                                   ignore_label=info.ignore_label, flip=flip_eval,
                                   verbose=1 if verbose == 1 else 0)
    report = {
        "model": model_name or model.name,
        "dataset": info.name,
        "status": status,
        "nan_step": nan_guard.nan_step,
        "epochs": epochs,
        "train_seconds_this_run": round(train_seconds, 1),
        "best": {"monitor": best.monitor, "value": best.best, "epoch": best.best_epoch},
        "history": history_writer.epochs,
        "final_val": final,
        "class_names": list(info.class_names),
    }
    _write_json_atomic(report, os.path.join(run_dir, "metrics.json"))
    if history_writer.epochs:
        plot_curves(history_writer.epochs, os.path.join(run_dir, "curves.png"),
                    title=f"{report['model']} on {info.name}")
    report["run_dir"] = run_dir
    return report


class TimeLimit(keras.callbacks.Callback):
    """Stops training at an epoch end once the next epoch would exceed `minutes` of training.

    The budget counts the training time of this `fit` call (wall clock).
    """

    def __init__(self, minutes):
        super().__init__()
        self.seconds = float(minutes) * 60.0
        self._start = None
        self._epoch_start = None
        self.stopped_epoch = None

    def on_train_begin(self, logs=None):
        self._start = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        now = time.time()
        if now - self._start + (now - self._epoch_start) > self.seconds:
            self.stopped_epoch = epoch + 1
            print(f"\nTime budget of {self.seconds / 60:.1f} min reached after epoch "
                  f"{epoch + 1}: stopping.", flush=True)
            self.model.stop_training = True


# --------------------------------------------------------------------------------------------
# Recipes: configuration, data, model, run
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs; `examples/train.py` fills it from flags.

    Sizes are (height, width) tuples or None. `batch_size` is the global batch (split across
    replicas). `learning_rate=None` picks `default_learning_rate`. See `define_flags` for the
    meaning of each field.
    """

    dataset: str = "shapes"
    data_dir: str = None
    val_data_dir: str = None
    num_classes: int = None
    ignore_label: int = 255
    model: str = "fcn8s"
    backbone: str = "vgg16"
    weights: str = "none"
    widths: tuple = None
    fc_units: int = None
    dropout: float = 0.5
    trainable_upsampling: bool = False
    epochs: int = 10
    steps_per_epoch: int = None
    validation_steps: int = None
    batch_size: int = 1
    val_batch_size: int = 1
    crop_size: tuple = None
    image_size: tuple = None
    scale_range: tuple = None
    flip: bool = True
    learning_rate: float = None
    stage_lr_factors: tuple = None
    optimizer: str = "sgd"
    momentum: float = PAPER_MOMENTUM
    weight_decay: float = PAPER_WEIGHT_DECAY
    bias_lr_multiplier: float = 2.0
    loss_reduction: str = "mean"
    class_weights: str = "none"
    mixed_precision: bool = False
    jit_compile: bool = False
    strategy: str = "default"
    resume: bool = False
    overwrite: bool = False
    tensorboard: bool = False
    output_dir: str = "runs/run"
    export: bool = False
    seed: int = 0
    num_train: int = 300
    num_val: int = 50
    shapes_size: int = 64
    cache: bool = None
    max_minutes_per_stage: float = None
    flip_eval: bool = False
    val_split: str = None
    verbose: str = "auto"


DATASETS = ("shapes", "camvid", "voc", "sbd", "folder", "tfds:<name>")


def _decode_pairs(pairs, info):
    paths = tf.data.Dataset.from_tensor_slices(([p[0] for p in pairs], [p[1] for p in pairs]))
    kwargs = info.dataset_kwargs()
    decode = data_lib.make_decode_fn(num_classes=kwargs["num_classes"],
                                     ignore_label=kwargs["ignore_label"],
                                     mask_format=kwargs["mask_format"],
                                     palette=kwargs["palette"])
    return paths.map(decode, num_parallel_calls=tf.data.AUTOTUNE)


def _custom_info(config, name):
    from keras_fcn import datasets

    if not config.num_classes:
        raise ValueError(f"--dataset={name} needs --num_classes. Received: num_classes="
                         f"{config.num_classes!r}")
    palette = tuple(tuple(int(c) for c in colour) for colour in
                    np.random.default_rng(0).integers(0, 256, (config.num_classes, 3)))
    return datasets.DatasetInfo(name, int(config.num_classes),
                                tuple(str(i) for i in range(config.num_classes)), palette,
                                ignore_label=int(config.ignore_label))


def _folder_pairs(root, split):
    from keras_fcn import datasets

    if os.path.isfile(os.path.join(root, f"{split}.txt")):
        return datasets.list_file_pairs(root, f"{split}.txt")
    return datasets.folder_pairs(os.path.join(root, split, "images"),
                                 os.path.join(root, split, "masks"))


def load_split(config, split):
    """Loads one split of `config.dataset` as decoded, unbatched (image, mask) elements.

    Args:
        config: `TrainConfig` (dataset, data_dir, val_data_dir, num_classes, ...).
        split: "train" or "val" ("val" is seg11valid for sbd when `val_data_dir` is a VOC
            folder, VOC val for voc, `config.val_split` or "test" for TFDS).

    Returns:
        (`tf.data.Dataset` of (image uint8/float (H, W, 3), mask (H, W)), `DatasetInfo`,
        number of examples).

    Example:
        >>> decoded, info, count = load_split(TrainConfig(dataset="shapes"), "train")
    """
    from keras_fcn import datasets
    from keras_fcn.datasets import shapes as synthetic

    name = config.dataset
    if name == "shapes" and not config.data_dir:
        count = config.num_train if split == "train" else config.num_val
        start = 0 if split == "train" else getattr(synthetic, "_VAL_OFFSET", 1_000_000)
        images, masks = synthetic.shapes_arrays(count, config.shapes_size, config.seed, start)
        return tf.data.Dataset.from_tensor_slices((images, masks)), synthetic.SHAPES_INFO, count
    if name.startswith("tfds:"):
        tfds_name = name[len("tfds:"):]
        remap, info = None, None
        if tfds_name.startswith("oxford_iiit_pet"):
            remap, info = datasets.OXFORD_PET_REMAP, datasets.OXFORD_PET_INFO
        info = info or _custom_info(config, tfds_name)
        tfds_split = "train" if split == "train" else (config.val_split or "test")
        decoded = datasets.load_tfds(tfds_name, tfds_split, data_dir=config.data_dir,
                                     label_remap=remap)
        return decoded, info, int(decoded.cardinality())
    if not config.data_dir:
        raise ValueError(f"--dataset={name} needs --data_dir. Received: data_dir=None")
    if name == "shapes":
        pairs, info = synthetic.shapes_pairs(config.data_dir, split)
    elif name == "camvid":
        pairs, info = datasets.camvid_pairs(config.data_dir, split)
    elif name == "voc":
        pairs, info = datasets.voc_pairs(config.data_dir, split)
    elif name == "sbd":
        if split == "val" and config.val_data_dir:
            pairs, info = datasets.seg11valid_pairs(config.val_data_dir)
        else:
            pairs, info = datasets.sbd_pairs(config.data_dir, split)
    elif name == "folder":
        pairs, info = _folder_pairs(config.data_dir, split), _custom_info(config, "folder")
    else:
        raise ValueError(f"Unknown dataset. Expected one of {DATASETS}. Received: "
                         f"dataset={name!r}")
    return _decode_pairs(pairs, info), info, len(pairs)


def resize_pair(image, mask, size, resize_mask=True):
    """Resizes an image (bilinear, antialiased) and its mask (nearest) to `size`.

    Example:
        >>> image, mask = resize_pair(image, mask, (180, 240))
    """
    image = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear", antialias=True)
    if resize_mask:
        mask = tf.image.resize(mask[..., tf.newaxis], size, method="nearest")[..., 0]
    return image, mask


def make_pipelines(config, train_decoded, val_decoded, info, num_replicas=1):
    """Builds the train, validation and final-evaluation pipelines of a run.

    Returns:
        (train_ds, val_ds, eval_ds): train is augmented (crop, flip, scale) and shuffled,
        repeated when `steps_per_epoch` is set; val has masks at the training resolution
        (for `val_mean_iu` during fit); eval has images at the training resolution and masks at
        full resolution, batch 1 (for the final figures).
    """
    size = config.image_size
    resize = (lambda i, m: resize_pair(i, m, size)) if size else None
    resize_image = (lambda i, m: resize_pair(i, m, size, resize_mask=False)) if size else None
    cache = config.cache if config.cache is not None else config.dataset in ("shapes", "camvid")
    common = dict(ignore_label=info.ignore_label, mean_rgb=info.mean_rgb)
    train = train_decoded.map(resize, num_parallel_calls=tf.data.AUTOTUNE) if resize \
        else train_decoded
    train_ds = data_lib.prepare_dataset(
        train, batch_size=config.batch_size, crop_size=config.crop_size,
        scale_range=config.scale_range, flip=config.flip, shuffle=True, seed=config.seed,
        cache=cache, drop_remainder=num_replicas > 1, **common)
    if config.steps_per_epoch:
        train_ds = train_ds.repeat()
    val = val_decoded.map(resize, num_parallel_calls=tf.data.AUTOTUNE) if resize else val_decoded
    val_batch = config.val_batch_size if size else 1
    val_ds = data_lib.prepare_dataset(val, batch_size=val_batch, cache=cache, **common)
    evaluation = val_decoded.map(resize_image) if resize_image else val_decoded
    eval_ds = data_lib.prepare_dataset(evaluation, batch_size=1, **common)
    return train_ds, val_ds, eval_ds


def pixels_per_image(config, decoded):
    """Pixels of a training image: the crop, else the resize, else the mean of 20 images."""
    for size in (config.crop_size, config.image_size):
        if size:
            return int(size[0] * size[1])
    shapes = [tuple(image.shape[:2]) for image, _ in decoded.take(20)]
    return int(np.mean([h * w for h, w in shapes]))


def default_learning_rate(optimizer, loss_reduction, variant, pixels):
    """The recipe's learning rate when none is given.

    SGD: the paper's fixed rates (1e-10 FCN-32s, 1e-12 FCN-16s, 1e-13 FCN-8s with the summed
    loss; times `pixels` with the averaged loss). Adam: 1e-4 for a pretrained trunk is
    common; here 1e-3 (also fine from scratch on small data).
    """
    if optimizer == "adam":
        return 1e-3
    rate = PAPER_LEARNING_RATES_SUM[variant]
    return equivalent_learning_rate(rate, "sum", loss_reduction, pixels)


def resolve_class_weights(config, info, train_decoded, run_dir):
    """Class weights of the loss: "none", "median" (median frequency over the training masks,
    cached in `run_dir/class_weights.json`) or a path to a JSON list / text file of floats.

    Returns:
        A list of floats or None.
    """
    choice = config.class_weights or "none"
    if choice == "none":
        return None
    if choice == "median":
        path = os.path.join(run_dir, "class_weights.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        counts = losses_lib.class_pixel_counts(
            train_decoded.map(lambda i, m: m), info.num_classes, info.ignore_label)
        weights = [float(w) for w in losses_lib.median_frequency_weights(counts)]
        _write_json_atomic(weights, path)
        return weights
    if not os.path.isfile(choice):
        raise ValueError("--class_weights must be 'none', 'median' or a file. Received: "
                         f"class_weights={choice!r}")
    with open(choice, encoding="utf-8") as f:
        text = f.read()
    try:
        weights = [float(w) for w in json.loads(text)]
    except ValueError:
        weights = [float(w) for w in text.replace(",", " ").split()]
    if len(weights) != info.num_classes:
        raise ValueError(f"--class_weights file '{choice}' has {len(weights)} weights; "
                         f"{info.num_classes} classes. Received: {weights}")
    return weights


def _variant(model_flag):
    return {"fcn32s": "32s", "fcn16s": "16s", "fcn8s": "8s", "fcn8s_at_once": "8s_at_once"}[
        model_flag]


def build_model(config, variant, num_classes, weights):
    """Builds the FCN of a recipe (raw RGB 0..255 input: preprocessing included).

    Args:
        config: `TrainConfig` (backbone, widths, fc_units, dropout, trainable_upsampling).
        variant: "32s", "16s", "8s" or "8s_at_once".
        num_classes: number of classes.
        weights: "imagenet", "none"/None, a path or a `keras.Model` (staged init).

    Returns:
        A `keras.Model`.
    """
    if isinstance(weights, str) and weights.lower() == "none":
        weights = None
    kwargs = {}
    if config.backbone == "vgg16":
        if config.widths:
            kwargs["widths"] = tuple(config.widths)
        if config.fc_units:
            kwargs["fc_units"] = int(config.fc_units)
    return models_lib.build_fcn(
        variant, num_classes=num_classes, input_shape=(None, None, 3), weights=weights,
        dropout=config.dropout, trainable_upsampling=config.trainable_upsampling,
        include_preprocessing=True, backbone=config.backbone, name=f"fcn{variant}", **kwargs)


def train_one(config, variant, *, run_dir, data, strategy, weights, learning_rate,
              class_weights, pixels, chief=True):
    """Builds, compiles and trains one FCN variant in `run_dir`.

    Args:
        config: `TrainConfig`.
        variant: "32s", "16s", "8s" or "8s_at_once".
        run_dir: the run directory of this model.
        data: (train_ds, val_ds, eval_ds, info) from `make_pipelines`.
        strategy: `tf.distribute.Strategy`.
        weights: initial weights (see `build_model`).
        learning_rate: the rate.
        class_weights: loss class weights or None.
        pixels: pixels per training image (for the SGD weight-decay scaling).
        chief: whether this process writes the final model.

    Returns:
        (model, report) where report is the dict `fit` returns.
    """
    train_ds, val_ds, eval_ds, info = data
    done = _completed_stage(run_dir) if config.resume else None
    if done is not None:
        print(f"FCN-{variant}: the run in {run_dir} is complete; nothing to resume.")
        with strategy.scope():
            model = keras.models.load_model(os.path.join(run_dir, "model.keras"))
        return model, dict(done, run_dir=run_dir)
    with strategy.scope():
        model = build_model(config, variant, info.num_classes, weights)
        optimizer = make_optimizer(config.optimizer, learning_rate, momentum=config.momentum,
                                   weight_decay=config.weight_decay,
                                   bias_lr_multiplier=config.bias_lr_multiplier)
        compile_model(model, num_classes=info.num_classes, ignore_label=info.ignore_label,
                      optimizer=optimizer, loss_reduction=config.loss_reduction,
                      class_weights=class_weights, weight_decay=config.weight_decay,
                      pixels_per_image=pixels, jit_compile=config.jit_compile)
        patch_multi_worker_build(model, strategy)
    print(f"Training FCN-{variant} ({model.count_params():,} parameters) in {run_dir}: "
          f"{config.optimizer} lr={learning_rate:.3g}, loss {config.loss_reduction}, "
          f"{config.epochs} epochs", flush=True)
    extra = [TimeLimit(config.max_minutes_per_stage)] if config.max_minutes_per_stage else []
    report = fit(model, train_ds, val_ds, run_dir=run_dir, epochs=config.epochs, info=info,
                 steps_per_epoch=config.steps_per_epoch,
                 validation_steps=config.validation_steps, eval_ds=eval_ds,
                 tensorboard=config.tensorboard, verbose=config.verbose,
                 image_size=config.image_size, model_name=f"fcn{variant}",
                 flip_eval=config.flip_eval, callbacks=extra, chief=chief)
    report["learning_rate"] = learning_rate
    return model, report


def _completed_stage(run_dir):
    """The report of a finished stage in `run_dir`, or None."""
    path = os.path.join(run_dir, "metrics.json")
    if not (os.path.exists(path) and os.path.exists(os.path.join(run_dir, "model.keras"))):
        return None
    with open(path, encoding="utf-8") as f:
        report = json.load(f)
    return report if report.get("status") == "completed" else None


def stage_learning_rates(config, pixels, stages):
    """Learning rate per stage: `config.learning_rate` times `stage_lr_factors`, or the
    recipe defaults (`default_learning_rate`: the paper's 1e-10/1e-12/1e-13 for SGD)."""
    factors = config.stage_lr_factors or (1.0,) * len(stages)
    if len(factors) < len(stages):
        raise ValueError(f"stage_lr_factors needs {len(stages)} values. Received: "
                         f"stage_lr_factors={factors!r}")
    if config.learning_rate:
        return [config.learning_rate * f for f in factors]
    return [default_learning_rate(config.optimizer, config.loss_reduction, s, pixels) * f
            for s, f in zip(stages, factors)]


def train_staged(config, *, run_dir, data, strategy, class_weights, pixels,
                 stages=STAGES, chief=True):
    """The paper's staged training: FCN-32s, then FCN-16s initialized from it, then FCN-8s
    initialized from the FCN-16s (new score layers start at zero, everything else copied).

    Each stage trains `config.epochs` epochs in `run_dir/fcn<stage>`. A stage that already
    finished (its `model.keras` and a completed `metrics.json` exist) is not trained again, so
    a killed staged run resumes where it stopped.

    Args:
        config: `TrainConfig`; `config.weights` initializes the first stage.
        run_dir: parent run directory.
        data: (train_ds, val_ds, eval_ds, info).
        strategy: `tf.distribute.Strategy`.
        class_weights: loss class weights or None.
        pixels: pixels per training image.
        stages: variants in order.
        chief: see `train_one`.

    Returns:
        (last model, {stage: report}).

    Example:
        >>> model, reports = train_staged(config, run_dir="runs/voc", data=data,
        ...                               strategy=make_strategy(), class_weights=None,
        ...                               pixels=500 * 375)
    """
    rates = stage_learning_rates(config, pixels, stages)
    weights, reports, model = config.weights, {}, None
    for stage, rate in zip(stages, rates):
        stage_dir = os.path.join(run_dir, f"fcn{stage}")
        done = _completed_stage(stage_dir)
        if done is not None:
            print(f"FCN-{stage}: already trained in {stage_dir}, reusing it.", flush=True)
            model = keras.models.load_model(os.path.join(stage_dir, "model.keras"),
                                            compile=False)
            reports[stage], weights = done, model
            continue
        os.makedirs(stage_dir, exist_ok=True)
        model, reports[stage] = train_one(
            config, stage, run_dir=stage_dir, data=data, strategy=strategy, weights=weights,
            learning_rate=rate, class_weights=class_weights, pixels=pixels, chief=chief)
        if reports[stage]["status"] != "completed":
            break
        weights = model
    return model, reports


def maybe_export(model, run_dir, labels, input_size):
    """Exports a float16-weight TFLite model and its sidecar JSON with `keras_fcn.export`
    (when that module is available; otherwise prints why it was skipped).

    Args:
        model: the trained model.
        run_dir: where `model_float16.tflite` and `model_float16.json` go.
        labels: the dict of `labels.json` (class names, palette, ignore label).
        input_size: (height, width) of the exported fixed-size model.

    Returns:
        The path of the `.tflite` file, or None when skipped.
    """
    try:
        from keras_fcn import export as export_lib
    except ImportError as error:
        print(f"--export: keras_fcn.export is not available ({error}); skipped.")
        return None
    if not hasattr(export_lib, "export_tflite"):
        print("--export: keras_fcn.export has no export_tflite(); skipped.")
        return None
    path = os.path.join(run_dir, "model_float16.tflite")
    export_lib.export_tflite(model, path, input_size=tuple(input_size), quantization="float16",
                             class_names=labels["class_names"], palette=labels["palette"],
                             ignore_label=labels["ignore_label"], overwrite=True)
    print(f"Exported TFLite (float16 weights, {input_size[0]}x{input_size[1]}) to {path}")
    return path


def _export_size(config, eval_ds):
    size = config.image_size or config.crop_size
    if size:
        return tuple(size)
    for images, _ in eval_ds.take(1):
        return tuple(int(d) for d in images.shape[1:3])
    return None


def run(config):
    """Runs a whole recipe: data, model(s), training, final evaluation, table, optional export.

    Args:
        config: `TrainConfig`.

    Returns:
        dict: "run_dir", "reports" ({variant: report}), "final" (final evaluation of the last
        model).

    Example:
        >>> run(TrainConfig(dataset="shapes", epochs=5, output_dir="/tmp/run"))
    """
    strategy = make_strategy(config.strategy)
    keras.utils.set_random_seed(config.seed)
    set_mixed_precision(config.mixed_precision)
    chief = is_chief()
    run_dir = prepare_run_dir(config.output_dir, resume=config.resume,
                              overwrite=config.overwrite) if chief else \
        tempfile.mkdtemp(prefix="keras_fcn_worker_")
    train_decoded, info, count = load_split(config, "train")
    val_decoded, _, val_count = load_split(config, "val")
    print(f"Data: {info.name}, {count} train / {val_count} val images, {info.num_classes} "
          f"classes, ignore label {info.ignore_label}; {strategy.num_replicas_in_sync} "
          f"replica(s).", flush=True)
    class_weights = resolve_class_weights(config, info, train_decoded, run_dir)
    pixels = pixels_per_image(config, train_decoded)
    train_ds, val_ds, eval_ds = make_pipelines(config, train_decoded, val_decoded, info,
                                               strategy.num_replicas_in_sync)
    data = (train_ds, val_ds, eval_ds, info)
    if config.model == "staged":
        model, reports = train_staged(config, run_dir=run_dir, data=data, strategy=strategy,
                                      class_weights=class_weights, pixels=pixels, chief=chief)
    else:
        check_choice("model", config.model, MODELS)
        variant = _variant(config.model)
        rate = stage_learning_rates(config, pixels, [variant])[0]
        model, report = train_one(config, variant, run_dir=run_dir, data=data,
                                  strategy=strategy, weights=config.weights, learning_rate=rate,
                                  class_weights=class_weights, pixels=pixels, chief=chief)
        reports = {variant: report}
    last = list(reports.values())[-1]
    if last["status"] != "completed":
        print(f"Training stopped: {last['status']} at {last['nan_step']}.")
    elif last.get("final_val"):
        print(f"\nFinal validation metrics of {last['model']} ({last['final_val']['num_images']}"
              f" images):\n" + format_results(last["final_val"], info.class_names))
    if config.export and chief and last["status"] == "completed":
        maybe_export(model, last.get("run_dir", run_dir),
                     read_labels_json(last.get("run_dir", run_dir)),
                     _export_size(config, eval_ds))
    print(f"Run directory: {run_dir}")
    return {"run_dir": run_dir, "reports": reports, "final": last.get("final_val")}


# --------------------------------------------------------------------------------------------
# Command-line flags (absl), shared by the recipes in examples/
# --------------------------------------------------------------------------------------------


def _parse_size(text, name):
    if text in (None, "", "none", "None"):
        return None
    parts = [int(p) for p in str(text).replace("x", ",").split(",") if p.strip()]
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise ValueError(f"--{name} must be 'H,W' or 'S' with positive sizes. Received: "
                         f"{name}={text!r}")
    return tuple(parts)


def _parse_floats(text, name):
    if text in (None, "", "none"):
        return None
    try:
        return tuple(float(p) for p in str(text).split(","))
    except ValueError:
        raise ValueError(f"--{name} must be comma-separated numbers. Received: "
                         f"{name}={text!r}") from None


def define_flags(**defaults):
    """Defines the recipe flags on `absl.flags.FLAGS`; keyword arguments override defaults.

    Example (a recipe script):
        >>> define_flags(dataset="sbd", model="staged", optimizer="sgd")
        >>> app.run(lambda argv: run(config_from_flags()))
    """
    from absl import flags

    d = dataclasses.asdict(TrainConfig())
    d.update({"widths": "", "crop_size": "", "image_size": "", "scale_range": "",
              "stage_lr_factors": "", "fc_units": 0, "learning_rate": 0.0,
              "num_classes": 0, "max_minutes_per_stage": 0.0, "steps_per_epoch": 0,
              "validation_steps": 0, "data_dir": "", "val_data_dir": "", "val_split": ""})
    d.update(defaults)
    f = flags
    f.DEFINE_string("dataset", d["dataset"], "shapes|camvid|voc|sbd|folder|tfds:<name>.")
    f.DEFINE_string("data_dir", d["data_dir"], "Data folder (shapes: none = in memory).")
    f.DEFINE_string("val_data_dir", d["val_data_dir"],
                    "sbd: a VOC folder for the seg11valid validation split.")
    f.DEFINE_string("val_split", d["val_split"], "tfds: validation split (default test).")
    f.DEFINE_integer("num_classes", d["num_classes"], "folder/tfds: number of classes.")
    f.DEFINE_integer("ignore_label", d["ignore_label"], "folder/tfds: void label.")
    f.DEFINE_enum("model", d["model"], list(MODELS), "FCN variant, or staged 32s->16s->8s.")
    f.DEFINE_enum("backbone", d["backbone"], list(models_lib.BACKBONES), "Backbone.")
    f.DEFINE_string("weights", d["weights"], "imagenet|none|path of initial weights.")
    f.DEFINE_string("widths", d["widths"], "VGG16 block widths, e.g. 16,32,64,64,64 "
                    "(empty: the paper's 64,128,256,512,512).")
    f.DEFINE_integer("fc_units", d["fc_units"], "fc6/fc7 width (0: the paper's 4096).")
    f.DEFINE_float("dropout", d["dropout"], "Dropout after fc6/fc7.")
    f.DEFINE_bool("trainable_upsampling", d["trainable_upsampling"],
                  "Train the bilinear upsampling layers (the paper keeps them fixed).")
    f.DEFINE_integer("epochs", d["epochs"], "Epochs (per stage for --model=staged).")
    f.DEFINE_integer("steps_per_epoch", d["steps_per_epoch"], "0: one pass over the data.")
    f.DEFINE_integer("validation_steps", d["validation_steps"], "0: all validation data.")
    f.DEFINE_integer("batch_size", d["batch_size"], "Global batch size.")
    f.DEFINE_string("crop_size", d["crop_size"], "Random crop 'H,W' (empty: whole images).")
    f.DEFINE_string("image_size", d["image_size"],
                    "Resize to 'H,W' first (reduced resolution; masks nearest).")
    f.DEFINE_string("scale_range", d["scale_range"], "Random scale 'lo,hi' (empty: none).")
    f.DEFINE_bool("flip", d["flip"], "Random left-right flips.")
    f.DEFINE_float("learning_rate", d["learning_rate"],
                   "0: recipe default (SGD: paper rates, scaled by pixels for --loss_reduction"
                   "=mean; Adam: 1e-3).")
    f.DEFINE_string("stage_lr_factors", d["stage_lr_factors"],
                    "Staged: per-stage learning-rate factors, e.g. 1,0.01,0.001.")
    f.DEFINE_enum("optimizer", d["optimizer"], list(OPTIMIZERS), "sgd (momentum) or adam(w).")
    f.DEFINE_float("momentum", d["momentum"], "SGD momentum.")
    f.DEFINE_float("weight_decay", d["weight_decay"], "Weight decay of kernels.")
    f.DEFINE_float("bias_lr_multiplier", d["bias_lr_multiplier"], "SGD bias rate factor.")
    f.DEFINE_enum("loss_reduction", d["loss_reduction"], list(LOSS_REDUCTIONS),
                  "mean over valid pixels, or sum per image (the paper).")
    f.DEFINE_string("class_weights", d["class_weights"], "none|median|path.")
    f.DEFINE_bool("mixed_precision", d["mixed_precision"], "mixed_float16 policy.")
    f.DEFINE_bool("jit_compile", d["jit_compile"], "XLA-compile the train step.")
    f.DEFINE_enum("strategy", d["strategy"], list(STRATEGIES), "Distribution strategy.")
    f.DEFINE_bool("resume", d["resume"], "Continue the run in --output_dir.")
    f.DEFINE_bool("overwrite", d["overwrite"], "Replace an existing --output_dir.")
    f.DEFINE_bool("tensorboard", d["tensorboard"], "Write TensorBoard logs.")
    f.DEFINE_string("output_dir", d["output_dir"], "Run directory.")
    f.DEFINE_bool("export", d["export"], "Export a float16 TFLite model after training.")
    f.DEFINE_integer("seed", d["seed"], "Random seed.")
    f.DEFINE_integer("num_train", d["num_train"], "shapes: training images.")
    f.DEFINE_integer("num_val", d["num_val"], "shapes: validation images.")
    f.DEFINE_integer("shapes_size", d["shapes_size"], "shapes: image side in pixels.")
    f.DEFINE_float("max_minutes_per_stage", d["max_minutes_per_stage"],
                   "Stop a model's training after this many minutes (0: no limit).")
    f.DEFINE_bool("flip_eval", d["flip_eval"], "Flip TTA in the final evaluation.")


def config_from_flags():
    """Builds a `TrainConfig` from the flags of `define_flags` (after absl parsed them)."""
    from absl import flags

    v = flags.FLAGS
    return TrainConfig(
        dataset=v.dataset, data_dir=v.data_dir or None, val_data_dir=v.val_data_dir or None,
        val_split=v.val_split or None, num_classes=v.num_classes or None,
        ignore_label=v.ignore_label, model=v.model, backbone=v.backbone, weights=v.weights,
        widths=tuple(int(w) for w in _parse_floats(v.widths, "widths") or ()) or None,
        fc_units=v.fc_units or None, dropout=v.dropout,
        trainable_upsampling=v.trainable_upsampling, epochs=v.epochs,
        steps_per_epoch=v.steps_per_epoch or None, validation_steps=v.validation_steps or None,
        batch_size=v.batch_size, crop_size=_parse_size(v.crop_size, "crop_size"),
        image_size=_parse_size(v.image_size, "image_size"),
        scale_range=_parse_floats(v.scale_range, "scale_range"), flip=v.flip,
        learning_rate=v.learning_rate or None,
        stage_lr_factors=_parse_floats(v.stage_lr_factors, "stage_lr_factors"),
        optimizer=v.optimizer, momentum=v.momentum, weight_decay=v.weight_decay,
        bias_lr_multiplier=v.bias_lr_multiplier, loss_reduction=v.loss_reduction,
        class_weights=v.class_weights, mixed_precision=v.mixed_precision,
        jit_compile=v.jit_compile, strategy=v.strategy, resume=v.resume,
        overwrite=v.overwrite, tensorboard=v.tensorboard, output_dir=v.output_dir,
        export=v.export, seed=v.seed, num_train=v.num_train, num_val=v.num_val,
        shapes_size=v.shapes_size,
        max_minutes_per_stage=v.max_minutes_per_stage or None, flip_eval=v.flip_eval)
