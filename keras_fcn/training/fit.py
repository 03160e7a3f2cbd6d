"""Compiling a segmentation model and training it into a run directory.

`fit` is the one training loop of the recipes (`examples/train*.py`): NaN guard, backup and
resume, best checkpoint, history, final evaluation and the files of `run_dir` (see
`keras_fcn.training.run_dir`).

Example:
    >>> from keras_fcn import training

    model = build_fcn8s(num_classes=11, weights=None, include_preprocessing=True)
    training.compile_model(model, num_classes=11, ignore_label=11,
                           optimizer=training.make_optimizer("adam", 1e-4))
    result = training.fit(model, train_ds, val_ds, run_dir="runs/camvid", epochs=10,
                          info=info)
"""

import os
import re
import shutil
import sys
import time

from keras_fcn import io, runtime
from keras_fcn import losses as losses_lib
from keras_fcn import metrics as metrics_lib
from keras_fcn._checks import check_choice
from keras_fcn.models import has_preprocessing
from keras_fcn.models.trunk import build_before_fit
from keras_fcn.training import run_dir as run_dir_lib
from keras_fcn.training.callbacks import (
    BACKUP_DIR,
    BestCheckpoint,
    HistoryWriter,
    NaNGuard,
    ProgressLog,
    make_callbacks,
)
from keras_fcn.training.consistency import plain_model
from keras_fcn.training.data_order import ResumeDataOrder
from keras_fcn.training.distribute import for_replicas
from keras_fcn.training.evaluation import evaluate_model
from keras_fcn.training.optimizers import (
    LOSS_REDUCTIONS,
    PAPER_WEIGHT_DECAY,
    CaffeSGD,
    apply_kernel_l2,
)


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
                  jit_compile=None, steps_per_execution=1, label_smoothing=0.0):
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
        weight_decay: with `CaffeSGD`, the L2 coefficient on kernels (see
            `keras_fcn.training.optimizers`).
        pixels_per_image: with "mean" and SGD, divides the L2 coefficient so decay matches
            the summed-loss recipe; None keeps `weight_decay` as is.
        jit_compile: compile the train step with XLA; None (default): the backend's
            compiled path (:func:`compiled_step`: XLA on JAX, where ``False`` runs every op
            eagerly, 1.34x slower on a CPU; TensorFlow's graph without XLA; PyTorch eager).
        steps_per_execution: train steps per `tf.function` call.
        label_smoothing: label smoothing of the loss (0: off).

    Returns:
        The model.

    Example:
        compile_model(model, num_classes=21, ignore_label=255,
                      optimizer=make_optimizer("sgd", 1.9e-5))
    """
    check_choice("loss_reduction", loss_reduction, LOSS_REDUCTIONS)
    if isinstance(optimizer, CaffeSGD):
        decay = weight_decay or 0.0
        if loss_reduction == "mean" and pixels_per_image:
            decay /= float(pixels_per_image)
        apply_kernel_l2(model, decay)
    loss = losses_lib.SparseCategoricalCrossentropyIgnore(
        num_classes=num_classes, ignore_label=ignore_label, reduction_mode=loss_reduction,
        class_weights=None if class_weights is None else [float(w) for w in class_weights],
        label_smoothing=label_smoothing)
    model.compile(optimizer=optimizer, loss=loss, metrics=make_metrics(num_classes, ignore_label),
                  jit_compile=_checked_jit(jit_compile),
                  steps_per_execution=steps_per_execution)
    return model


def _checked_jit(jit_compile):
    """:func:`compiled_step`, refused on PyTorch when it compiles (``checks.check_torch_jit``:
    the first step crashed inside dynamo)."""
    from keras_fcn.training.checks import check_torch_jit

    resolved = compiled_step(jit_compile)
    check_torch_jit(resolved, "jit_compile=True" if jit_compile else f"{runtime.JIT_ENV}=1")
    return resolved


def compiled_step(jit_compile=None):
    """``jit_compile`` for ``model.compile``: the argument when True or False, else the
    backend's compiled path (:func:`keras_fcn.runtime.fast_path`'s rule: True on JAX, whose
    only compiled path is XLA; False on TensorFlow, whose graph runs without XLA, and on
    PyTorch, eager; ``KERAS_FCN_JIT=0/1`` overrides the rule).

    ``compile(jit_compile=False)`` on JAX runs the train step op by op, uncompiled
    (benchmarks/jax_eager.py); Keras' own default, ``"auto"``, compiles there.

    Example:
        >>> compiled_step(False)
        False
    """
    return runtime.fast_path(jit_compile=jit_compile, info={"isa": (), "gpu": False}
                             )["jit_compile"]


def backup_mismatch(error, run_dir):
    """The one-line ValueError for a resume whose backup does not fit the model (Keras' error
    lists every weight array), or None when `error` is another one.

    A run directory with `config.json` is checked before this (`run_dir.write_run_config`);
    this covers the runs without it and the flags it does not compare.

    Example:
        >>> print(backup_mismatch(ValueError(
        ...     "A total of 2 objects could not be loaded. Example error message for object "
        ...     "<Conv2D name=conv1_1, built=True>: The shape ... variable.shape=(3, 3, 3, 8), "
        ...     "Received: value.shape=(3, 3, 3, 4). Target"), "runs/a"))
        The backup of the run in 'runs/a' does not fit this model (conv1_1: the model has
        shape (3, 3, 3, 8), the backup (3, 3, 3, 4)): were the model flags (--model,
        --backbone, --widths, --fc_units, the data's classes) changed since the run began?
        Resume with the run's flags, or start a new run (another --output_dir).
    """
    text = str(error)
    if "could not be loaded" not in text:
        return None
    layer = re.search(r"object <\w+ name=([^,>]+)", text)
    shapes = re.search(r"variable\.shape=(\([^)]*\)), Received: value\.shape=(\([^)]*\))", text)
    detail = text.splitlines()[0][:200]
    if layer and shapes:
        detail = (f"{layer.group(1)}: the model has shape {shapes.group(1)}, the backup "
                  f"{shapes.group(2)}")
    return ValueError(
        f"The backup of the run in '{run_dir}' does not fit this model ({detail}): were the "
        "model flags (--model, --backbone, --widths, --fc_units, the data's classes) changed "
        "since the run began? Resume with the run's flags, or start a new run (another "
        "--output_dir).")


def curve_metric(monitor):
    """The metric beside the loss in curves.png: the monitored one, or for a monitored loss
    the IU of the same head ("val_loss" -> "mean_iu", "val_semantic_loss" ->
    "semantic_mean_iu"), so the loss is not drawn twice.

    Example:
        >>> curve_metric("val_mean_iu"), curve_metric("val_loss")
        ('mean_iu', 'mean_iu')
    """
    metric = monitor.removeprefix("val_")
    return metric[:-len("loss")] + "mean_iu" if metric.endswith("loss") else metric


def _write_labels(run_dir, info, fcn, image_size, model_name, normalization):
    """labels.json, with the data's `normalization` when one is given (see `fit`)."""
    if normalization is not None:
        if not isinstance(normalization, dict) or "type" not in normalization:
            raise ValueError('normalization must be a dict with a "type" (as '
                             "keras_fcn.models.normalization_of returns). Received: "
                             f"normalization={normalization!r}")
        if has_preprocessing(fcn):
            raise ValueError(f"Model {fcn.name!r} normalizes its inputs itself (its "
                             "'preprocess' layer, recorded as is): leave normalization out. "
                             f"Received: normalization={normalization!r}")
        normalization = dict(normalization)
    return run_dir_lib.write_labels(run_dir, info, model=fcn, image_size=image_size,
                                    model_name=model_name, normalization=normalization)


def check_data_set(name, data):
    """Raises a ValueError naming ``data``'s type when it is arrays (a tuple, list, dict or
    numpy array), before anything is written: Keras read ``(x, y)`` as two inputs and told to
    pass a dict, the wrong fix."""
    if isinstance(data, (tuple, list, dict)) or type(data).__module__ == "numpy":
        raise ValueError(
            f"training.fit takes `{name}` as a tf.data.Dataset or a keras.utils.PyDataset of "
            f"(images, labels) batches. Received: a {type(data).__name__}. Image and label "
            "files: keras_fcn.make_pydataset(pairs, num_classes=..., batch_size=...); numpy "
            "arrays: tf.data.Dataset.from_tensor_slices((x, y)).batch(n), or Keras' "
            "model.fit(x, y) without a run folder.")


def fit(model, train_ds, val_ds, *, run_dir, epochs, info, steps_per_epoch=None,
        validation_steps=None, eval_ds=None, tensorboard=False, verbose="auto",
        image_size=None, model_name=None, flip_eval=False, callbacks=None, chief=True,
        monitor="val_mean_iu", evaluate=None, eval_scales=None, conv_matmul=None,
        skipped_fits=(), normalization=None):
    """Trains a compiled model and fills `run_dir` (see `keras_fcn.training.run_dir`).

    The run resumes from `run_dir/backup` when it exists (use `prepare_run_dir` to decide
    whether that is wanted). The backup stays until `metrics.json` is written: a run killed
    after its last epoch (while saving, evaluating or plotting) resumes without training
    again. A folder that holds a completed run (`metrics.json` status "completed" and
    `model.keras`, no backup) is refused: training would start again from epoch 1 and replace
    its files.

    Args:
        model: compiled model (a `ConsistencyTrainer` trains its FCN, which is what is saved).
        train_ds: training `tf.data.Dataset` (repeated if `steps_per_epoch` is set) or
            `keras.utils.PyDataset` (`keras_fcn.data.arrays`, for JAX/PyTorch without
            TensorFlow).
        val_ds: validation data set (for `monitor` each epoch), or None. Under a
            `tf.distribute` strategy of several replicas its batches are padded with void
            images to a multiple of them (`distribute.for_replicas`).
        run_dir: run directory.
        epochs: total number of epochs (also when resuming).
        info: `DatasetInfo` of the data (for labels.json and the per-class table).
        steps_per_epoch: train steps per epoch (None: one pass over `train_ds`).
        validation_steps: validation steps per epoch (None: all of `val_ds`).
        eval_ds: data set of the final evaluation (default `val_ds`); masks may be at full
            resolution (logits are resized to them).
        tensorboard: write TensorBoard logs to `run_dir/logs`.
        verbose: Keras `fit` verbosity ("auto": progress bars on a terminal, 2 otherwise);
            with 2 (one line per epoch), `ProgressLog` adds a line a minute within each epoch
            and the final evaluation logs one a minute too.
        image_size: training resolution, stored in labels.json.
        model_name: stored in labels.json and metrics.json.
        flip_eval: flip TTA in the final evaluation.
        eval_scales: multi-scale TTA in the final evaluation (`evaluate_model`'s `scales`;
            None: 1).
        callbacks: more callbacks.
        chief: False for non-chief multi-worker processes (they write to `run_dir` anyway;
            give them a private one).
        monitor: the logged value that picks `best.keras` (higher is better; lower for a
            loss such as "val_loss"), e.g. "val_semantic_mean_iu" for the two-headed SIFT
            Flow model. Without validation data no `best.keras` is written; a monitor that is
            not logged while validation runs is a ValueError at the first epoch end.
        evaluate: `evaluate(model, eval_ds) -> dict` of the final evaluation; default
            `evaluate_model` with `info`'s classes (one-output models).
        conv_matmul: run the large-kernel convolutions (fc6) as one matrix multiply while
            training (`keras_fcn.runtime.convolutions_as_matmul`); None: `runtime.fast_path`
            (on a CPU; `KERAS_FCN_CONV_MATMUL=0/1` overrides it).
        skipped_fits: the epochs of each earlier `fit` over `train_ds` that an uninterrupted
            run made and this process did not (the finished stages a resumed staged run
            skips); with the backup's epochs the training data is moved on past them
            (`data_order.ResumeDataOrder`), so a resumed run reads the batches an
            uninterrupted one reads.
        normalization: how the data pipeline normalized the inputs, for a model without a
            ``preprocess`` layer whose data is not its trunk's (the NYUDv2 HHA, RGB-D and
            fusion inputs): a dict as ``keras_fcn.models.normalization_of`` returns, written
            in labels.json and the model's ``fcn_info["labels"]`` instead of the trunk's. None:
            ``normalization_of(model)``.

    Returns:
        dict with "history" (list of epoch dicts), "final_val" (evaluation results or None),
        "status" ("completed" or "nan"), "nan_step", "best" and "run_dir".

    Raises:
        FileExistsError: `run_dir` holds a completed run.
        ValueError: data given as arrays (:func:`check_data_set`); a backup that does not
            fit the model or its optimizer, or of more epochs than `epochs`; a `monitor` that
            is not logged; a `normalization` that is no dict with a "type", or given for a
            model with its own ``preprocess`` layer.

    Example:
        report = fit(model, train_ds, val_ds, run_dir="runs/a", epochs=5, info=info)
        report["best"]["value"]
    """
    for name, data in (("train_ds", train_ds), ("val_ds", val_ds), ("eval_ds", eval_ds)):
        check_data_set(name, data)
    with io.writing("training"):  # a full disk here is told to continue with --resume
        os.makedirs(run_dir, exist_ok=True)
        backup_dir = os.path.join(run_dir, BACKUP_DIR)
        if run_dir_lib.completed_run(run_dir) is not None and not os.path.isdir(backup_dir):
            raise FileExistsError(
                f"The run in '{run_dir}' is complete (metrics.json, model.keras): training "
                "again would start from epoch 1 and replace its model and history. Choose "
                "another run directory, or remove this one (--overwrite on the command line) to "
                "train it again.")
        nan_guard = NaNGuard(steps_per_epoch)
        all_callbacks = make_callbacks(run_dir, nan_guard=nan_guard, tensorboard=tensorboard,
                                       monitor=monitor, extra=callbacks, keep_backup=True)
        all_callbacks.append(ResumeDataOrder(train_ds, skipped_fits, steps_per_epoch))
        if verbose == "auto":
            verbose = 1 if sys.stdout.isatty() else 2
        if verbose == 2:  # one line per epoch: a line a minute within it too
            all_callbacks.append(ProgressLog(60))
        fcn = plain_model(model)
        labels = _write_labels(run_dir, info, fcn, image_size, model_name, normalization)
        if isinstance(getattr(fcn, "fcn_info", None), dict):  # saved in its .keras files too
            fcn.fcn_info["labels"] = labels.to_dict()
        started = time.time()
        # shuffle=False: the tf.data pipeline shuffles (seeded); Keras would only warn about it.
        conv_matmul = runtime.fast_path(runtime.model_precision(model), model=model,
                                        conv_matmul=conv_matmul)["conv_matmul"]
        # Keras keeps the epoch a BackupAndRestore restored on the model (`_initial_epoch`) and
        # starts every later `fit` of that model there: a second run of the same model in this
        # process would skip its first epochs. A resume restores it in on_train_begin.
        model._initial_epoch = None
        eval_ds = eval_ds if eval_ds is not None else val_ds  # the final evaluation: unpadded
        # several tf.distribute replicas: validation batches padded to a multiple of them
        _, val_ds = for_replicas(getattr(model, "distribute_strategy", None), None, val_ds,
                                 None, info.ignore_label)
        build_before_fit(model, train_ds)  # whole epochs from a PyDataset with workers
        try:
            # The train and test steps are traced inside the block, so they keep the matmul fc6.
            with runtime.convolutions_as_matmul(model, conv_matmul):
                model.fit(train_ds, validation_data=val_ds, epochs=epochs,
                          steps_per_epoch=steps_per_epoch, validation_steps=validation_steps,
                          callbacks=all_callbacks, verbose=verbose, shuffle=False)
        except ValueError as error:
            mismatch = (backup_mismatch(error, run_dir)
                        if os.path.isdir(backup_dir) else None)
            if mismatch is None:
                raise
            raise mismatch from None
        finally:
            model._initial_epoch = None
        train_seconds = time.time() - started
        history_writer = next(c for c in all_callbacks if isinstance(c, HistoryWriter))
        best = next(c for c in all_callbacks if isinstance(c, BestCheckpoint))
        status = "nan" if nan_guard.nan_step else "completed"
        final = None
        if status == "completed":
            if chief:
                io.save_model(fcn, os.path.join(run_dir, run_dir_lib.MODEL_FILE))
            if eval_ds is not None and evaluate is not None:
                final = evaluate(fcn, eval_ds)
            elif eval_ds is not None:
                final = evaluate_model(fcn, eval_ds, num_classes=info.num_classes,
                                       ignore_label=info.ignore_label, flip=flip_eval,
                                       scales=eval_scales or (1.0,),
                                       verbose=verbose)
        report = {
            "model": model_name or fcn.name,
            "dataset": info.name,
            "status": status,
            "nan_step": nan_guard.nan_step,
            "epochs": epochs,
            "train_seconds_this_run": round(train_seconds, 1),
            "best": {"monitor": best.monitor, "value": best.best, "epoch": best.best_epoch},
            "history": history_writer.epochs,
            "final_val": final,
            "class_names": None if info.class_names is None else list(info.class_names),
        }
        io.write_json(os.path.join(run_dir, run_dir_lib.METRICS_FILE), report)
        if history_writer.epochs:
            run_dir_lib.plot_curves(history_writer.epochs, os.path.join(run_dir, "curves.png"),
                                    title=f"{report['model']} on {info.name}",
                                    metric=curve_metric(monitor))
        if status == "completed" and os.path.isdir(backup_dir):
            # Only now: a kill before this resumes from the last epoch's backup and redoes
            # the final save and evaluation, not the training.
            shutil.rmtree(backup_dir)
        report["run_dir"] = run_dir
        return report
