"""The recipe of `examples/train.py`: a `TrainConfig` in, trained FCN(s) and run folders out.

`run` loads the data, builds the model(s), trains one variant or the paper's stages
(FCN-32s -> FCN-16s -> FCN-8s), prints the final table and optionally exports TFLite.

Example:
    >>> from keras_fcn import training
    >>> config = training.TrainConfig().replace(dataset="shapes", epochs=5, output_dir="runs/a")
    >>> training.run(config)  # doctest: +SKIP
"""

import os

import keras

from keras_fcn import _tf, io, runtime
from keras_fcn import models as models_lib
from keras_fcn._checks import check_choice
from keras_fcn.training import array_inputs
from keras_fcn.training.callbacks import TimeLimit
from keras_fcn.training.checks import check_before_run, size_compile_note
from keras_fcn.training.config import MODELS, TrainConfig  # noqa: F401 (doctests)
from keras_fcn.training.consistency import add_consistency
from keras_fcn.training.distribute import (
    for_replicas,
    is_chief,
    make_strategy,
    multi_worker_run,
    patch_multi_worker_build,
)
from keras_fcn.training.evaluation import format_results, num_batches
from keras_fcn.training.fit import compile_model, fit
from keras_fcn.training.optimizers import (
    check_stage_schedules,
    default_learning_rate,
    learning_rate_schedule,
    make_optimizer,
)
from keras_fcn.training.run_export import export_run, export_size, maybe_export  # noqa: F401
from keras_fcn.training.run_dir import (
    MODEL_FILE,
    finished_run,
    prepare_run_dir,
    setup_removed_on_failure,
    run_inputs,
    worker_run_dir,
)
from keras_fcn.training.run_config import write_run_config

STAGES = ("32s", "16s", "8s")
VARIANTS = {"fcn32s": "32s", "fcn16s": "16s", "fcn8s": "8s", "fcn8s_at_once": "8s_at_once",
            "dilated": "dilated"}
# The flags a --resume must not change (config.json of the run): they shape the model (its
# weights would not load), choose the training and validation images (of best.keras's score
# and the cached class weights) or the optimizer (whose state the backup holds). Not
# --weights (a resume loads its backup). The others a resume may change, and is told of
# (run_config.write_run_config), except run_config.QUIET_FLAGS.
RESUME_FLAGS = ("dataset", "num_classes", "model", "backbone", "widths", "fc_units",
                "trainable_upsampling", "data_dir", "val_data_dir", "num_train", "num_val",
                "shapes_size", "holdout", "group_by", "val_split", "ignore_label",
                "optimizer", "image_size", "crop_size")
# The flags a --resume may change, told as planning the learning-rate schedule anew.
SCHEDULE_FLAGS = ("epochs", "steps_per_epoch", "batch_size", "learning_rate", "lr_schedule",
                  "warmup_epochs")


def check_model(config):
    """Checks that `config.model.backbone` has the variant(s) `--model` trains, before any data
    is read (the trunk's `variants`: the ResNets are "dilated" only, the Table 1 trunks
    FCN-32s only).

    Returns:
        The `build_fcn` variants trained, in order (the three stages for "staged").

    Raises:
        ValueError: an unknown `--model`, or one the backbone does not have (both named).

    Example:
        >>> check_model(TrainConfig().replace(model="dilated", backbone="resnet50"))
        ('dilated',)
    """
    check_choice("model", config.model.variant, MODELS)
    variants = STAGES if config.model.variant == "staged" else (VARIANTS[config.model.variant],)
    backbone = config.model.backbone
    has = models_lib.get_trunk(backbone).variants
    if not set(variants) <= set(has):
        names = tuple(name for name, variant in VARIANTS.items() if variant in has)
        raise ValueError(
            f"The {backbone} backbone has no --model={config.model.variant} (its models: "
            f"{', '.join(names)}). Received: model={config.model.variant!r}, "
            f"backbone={backbone!r}")
    return variants


def model_name(config, variant):
    """The name of the FCN `variant` of `config`'s backbone: "fcn8s" for the paper's variants
    (whatever the trunk), the trunk's own name for "dilated" ("fcn_resnet50").

    Example:
        >>> model_name(TrainConfig().replace(backbone="resnet101"), "dilated")
        'fcn_resnet101'
    """
    if variant == "dilated":
        return models_lib.get_trunk(config.model.backbone).model_name(variant)
    return f"fcn{variant}"


def build_model(config, variant, num_classes, weights):
    """Builds the FCN of a recipe (raw RGB 0..255 input: preprocessing included).

    Args:
        config: `TrainConfig` (backbone, widths, fc_units, dropout, trainable_upsampling);
            `widths` and `fc_units`, where set, go to the trunk, and one it does not have is a
            ValueError naming it (`Trunk.check_options`).
        variant: "32s", "16s", "8s", "8s_at_once" or "dilated" (a variant of the backbone).
        num_classes: number of classes.
        weights: "imagenet", "none"/None, a path or a `keras.Model` (staged init).

    Returns:
        A `keras.Model`.

    Example:
        >>> config = TrainConfig().replace(widths=(4, 4, 8, 8, 8), fc_units=8)
        >>> build_model(config, "8s", 4, None).output_shape
        (None, None, None, 4)
    """
    if isinstance(weights, str) and weights.lower() == "none":
        weights = None
    widths, fc_units = config.model.widths, config.model.fc_units
    return models_lib.build_fcn(
        variant, num_classes=num_classes, input_shape=(None, None, 3), weights=weights,
        dropout=config.model.dropout, trainable_upsampling=config.model.trainable_upsampling,
        include_preprocessing=True, backbone=config.model.backbone,
        name=model_name(config, variant), widths=None if widths is None else tuple(widths),
        fc_units=None if fc_units is None else int(fc_units))


def _load_finished(run_dir, strategy=None):
    path = os.path.join(run_dir, MODEL_FILE)
    if strategy is None:
        return keras.models.load_model(path, compile=False)
    with strategy.scope():
        return keras.models.load_model(path)


def train_one(config, variant, *, run_dir, data, strategy, weights, learning_rate,
              class_weights, pixels, chief=True, skipped_fits=()):
    """Builds, compiles and trains one FCN variant in `run_dir`.

    Args:
        config: `TrainConfig`.
        variant: "32s", "16s", "8s" or "8s_at_once".
        run_dir: the run directory of this model.
        data: (train_ds, val_ds, eval_ds, info) from `make_pipelines` and the data's info.
        strategy: `tf.distribute.Strategy`.
        weights: initial weights (see `build_model`).
        learning_rate: the rate.
        class_weights: loss class weights or None.
        pixels: pixels per training image (for the SGD weight-decay scaling).
        chief: whether this process writes the final model.
        skipped_fits: epochs of the earlier stages this process skipped (`fit`'s).

    Returns:
        (model, report) where report is the dict `fit` returns.

    Example:
        model, report = train_one(config, "8s", run_dir="runs/a", data=data,
                                  strategy=make_strategy(), weights=None,
                                  learning_rate=1e-3, class_weights=None, pixels=64 * 64)
    """
    train_ds, val_ds, eval_ds, info = data
    done = finished_run(run_dir, config.optim.epochs) if config.run.resume else None
    if done is not None:
        print(f"FCN-{variant}: the run in {run_dir} is complete; nothing to resume.")
        return _load_finished(run_dir, strategy), dict(done, run_dir=run_dir, reused=True)
    with strategy.scope():
        # Built and initialized in float32, then converted: the FCN head stays float32
        # (keras_fcn.runtime.with_precision; the bf16 crash reported on AMX CPUs, docs/speed.md).
        model = build_model(config, variant, info.num_classes, weights)
        model = runtime.with_precision(model, execution_precision(config, model))
        path = execution_path(config, model)
        jit, conv_matmul = path["jit_compile"], path["conv_matmul"]
        optim = config.optim
        optimizer = make_optimizer(optim.optimizer, run_schedule(config, learning_rate, train_ds),
                                   momentum=optim.momentum, weight_decay=optim.weight_decay,
                                   bias_lr_multiplier=optim.bias_lr_multiplier,
                                   ema_decay=optim.ema_decay)
        # The temporal-consistency loss trains the FCN through a keras.Model subclass that
        # shares its weights (ConsistencyTrainer); `fit` saves the FCN itself.
        trainee = (add_consistency(model, optim.temporal_consistency, optim.temporal_loss)
                   if optim.temporal_consistency else model)
        compile_model(trainee, num_classes=info.num_classes, ignore_label=info.ignore_label,
                      optimizer=optimizer, loss_reduction=config.optim.loss_reduction,
                      class_weights=class_weights, weight_decay=config.optim.weight_decay,
                      pixels_per_image=pixels, jit_compile=jit,
                      label_smoothing=config.optim.label_smoothing)
        patch_multi_worker_build(trainee, strategy)
    print(f"Training FCN-{variant} ({model.count_params():,} parameters) in {run_dir}: "
          f"{config.optim.optimizer} lr={learning_rate:.3g}, loss {config.optim.loss_reduction}, "
          f"{config.optim.epochs} epochs, {runtime.model_precision(model)}, "
          f"XLA {'on' if jit else 'off'}, large kernels as matmul "
          f"{'on' if conv_matmul and runtime.matmul_candidates(model) else 'off'}", flush=True)
    if note := size_compile_note(config, train_ds, jit):
        print(note, flush=True)
    optim, run_config = config.optim, config.run
    extra = ([TimeLimit(optim.max_minutes_per_stage, optim.budget_clock)]
             if optim.max_minutes_per_stage is not None else [])
    report = fit(trainee, train_ds, val_ds, run_dir=run_dir, epochs=optim.epochs, info=info,
                 steps_per_epoch=optim.steps_per_epoch,
                 validation_steps=run_config.validation_steps, eval_ds=eval_ds,
                 tensorboard=run_config.tensorboard, verbose=run_config.verbose,
                 image_size=config.data.image_size, model_name=model_name(config, variant),
                 flip_eval=run_config.flip_eval, eval_scales=run_config.eval_scales,
                 callbacks=extra, chief=chief, conv_matmul=conv_matmul,
                 skipped_fits=skipped_fits)
    report["learning_rate"] = learning_rate
    return model, report


def epoch_steps(config, train_ds):
    """Train steps per epoch: `config.optim.steps_per_epoch`, else the batches of one pass.

    Example:
        >>> epoch_steps(TrainConfig().replace(steps_per_epoch=50), train_ds=None)
        50
    """
    if config.optim.steps_per_epoch is not None:
        return int(config.optim.steps_per_epoch)
    batches = num_batches(train_ds) or 0
    if batches < 1:
        raise ValueError("The number of training batches per epoch is unknown: give "
                         "--steps_per_epoch. Received: steps_per_epoch=None")
    return batches


def run_schedule(config, learning_rate, train_ds):
    """The learning rate (or `WarmupDecay` schedule) of one model's training: `lr_schedule`
    and `warmup_epochs` over its `epochs` (per stage when staged).

    Example:
        >>> config = TrainConfig().replace(epochs=10, steps_per_epoch=100, lr_schedule="poly")
        >>> run_schedule(config, 1e-3, train_ds=None).total_steps
        1000
    """
    if (config.optim.lr_schedule == "constant" and not config.optim.warmup_epochs) \
            or config.optim.epochs == 0:  # --epochs=0 takes no step: nothing to schedule
        return learning_rate
    steps = epoch_steps(config, train_ds)
    return learning_rate_schedule(learning_rate, config.optim.lr_schedule,
                                  total_steps=config.optim.epochs * steps,
                                  warmup_steps=round(config.optim.warmup_epochs * steps))


def stage_learning_rates(config, pixels, stages):
    """Learning rate per stage: `config.optim.learning_rate` times `stage_lr_factors`, or the
    recipe defaults (`default_learning_rate`: the paper's 1e-10/1e-12/1e-13 for SGD).

    Example:
        >>> config = TrainConfig().replace(learning_rate=1e-3, stage_lr_factors=(1, 0.5, 0.25))
        >>> stage_learning_rates(config, 4096, STAGES)
        [0.001, 0.0005, 0.00025]
    """
    factors = config.optim.stage_lr_factors
    if factors is None:
        factors = (1.0,) * len(stages)
    if len(factors) < len(stages):
        raise ValueError(f"stage_lr_factors needs {len(stages)} values. Received: "
                         f"stage_lr_factors={factors!r}")
    optim = config.optim
    if optim.learning_rate is not None:
        return [optim.learning_rate * f for f in factors]
    return [default_learning_rate(optim.optimizer, optim.loss_reduction, s, pixels) * f
            for s, f in zip(stages, factors)]


def train_staged(config, *, run_dir, data, strategy, class_weights, pixels,
                 stages=STAGES, chief=True, stage_configs=None):
    """The paper's staged training: FCN-32s, then FCN-16s initialized from it, then FCN-8s
    initialized from the FCN-16s (new score layers start at zero, everything else copied).

    Each stage trains `config.optim.epochs` epochs in `run_dir/fcn<stage>`. A stage that already
    finished (its `model.keras` and a completed `metrics.json` exist) is not trained again, so
    a killed staged run resumes where it stopped.

    Args:
        config: `TrainConfig`; `config.model.weights` initializes the first stage.
        run_dir: parent run directory.
        data: (train_ds, val_ds, eval_ds, info).
        strategy: `tf.distribute.Strategy`.
        class_weights: loss class weights or None.
        pixels: pixels per training image.
        stages: variants in order.
        chief: see `train_one`.
        stage_configs: optional {stage: `TrainConfig`} overriding `config` for some stages
            (e.g. a time budget per stage).

    Returns:
        (last model, {stage: report}).

    Example:
        model, reports = train_staged(config, run_dir="runs/voc", data=data,
                                      strategy=make_strategy(), class_weights=None,
                                      pixels=500 * 375)
    """
    check_stage_schedules(stage_configs, stages)
    rates = stage_learning_rates(config, pixels, stages)
    weights, reports, model, skipped = config.model.weights, {}, None, []
    for stage, rate in zip(stages, rates):
        stage_config = (stage_configs or {}).get(stage, config)
        stage_dir = os.path.join(run_dir, f"fcn{stage}")
        done = finished_run(stage_dir, stage_config.optim.epochs)
        if done is not None:
            print(f"FCN-{stage}: already trained in {stage_dir}, reusing it.", flush=True)
            model = _load_finished(stage_dir)
            reports[stage], weights = dict(done, run_dir=stage_dir, reused=True), model
            skipped.append(len(done.get("history") or ()))  # the data moves on past them
            continue
        os.makedirs(stage_dir, exist_ok=True)
        model, reports[stage] = train_one(
            stage_config, stage, run_dir=stage_dir, data=data, strategy=strategy,
            weights=weights, learning_rate=rate, class_weights=class_weights, pixels=pixels,
            chief=chief, skipped_fits=tuple(skipped))
        skipped = []  # that fit moved the data past them: the next stage starts where it ended
        if reports[stage]["status"] != "completed":
            break
        weights = model
    return model, reports


def execution_precision(config, model=None):
    """The compute precision of a run: ``--precision`` (``auto`` knows the ``model``: see
    ``keras_fcn.runtime.resolve_precision``), with ``--mixed_precision`` (0.1.0) meaning the
    device's mixed precision (a GPU's as ``auto`` picks it, bfloat16 on a CPU).

    Example:
        # "bfloat16" on a Xeon with AMX:
        execution_precision(TrainConfig().replace(precision="auto"))
    """
    return runtime.resolve_precision(config.run.precision,
                                     mixed_precision=config.run.mixed_precision, model=model)


def execution_path(config, model):
    """How to run the train step (``keras_fcn.runtime.fast_path``): ``--jit_compile`` and
    ``--conv_matmul`` if given, else ``KERAS_FCN_JIT`` / ``KERAS_FCN_CONV_MATMUL``, else the
    rule: no XLA on a CPU (slower than the oneDNN graph with fc6 as a matmul, and it compiles
    once per input shape: docs/speed.md) and fc6 as one matrix multiply.

    Example:
        execution_path(TrainConfig(), model)["conv_matmul"]  # on a CPU
    """
    return runtime.fast_path(runtime.model_precision(model), model=model,
                             jit_compile=config.run.jit_compile, conv_matmul=config.run.conv_matmul)


def temporal_line(config, count):
    """The start-up line of a run with the temporal-consistency loss (weight, kind, pairs).

    Example:
        >>> print(temporal_line(TrainConfig().replace(temporal_consistency=10.0), 8))
        Temporal consistency: weight 10, loss kl+ce, on pairs of each of the 8 training images
        and a copy moved by a random camera warp
    """
    optim, data = config.optim, config.data
    video = (f", plus up to {data.unlabelled_pairs} frame pairs of {data.unlabelled_video_dir}"
             if data.unlabelled_video_dir else "")
    return (f"Temporal consistency: weight {optim.temporal_consistency:g}, loss "
            f"{optim.temporal_loss}, on pairs of each of the {count} training images and a copy "
            f"moved by a random camera warp{video}")


def tta_note(flip, scales):
    """The test-time augmentation of a final evaluation, for its table's heading ("" if none).

    Example:
        >>> tta_note(True, (0.75, 1.0, 1.25))
        ', test-time augmentation: scales 0.75, 1, 1.25 and horizontal flip'
    """
    parts = (["scales " + ", ".join(f"{float(s):g}" for s in scales)]
             if scales and tuple(scales) != (1.0,) else []) + (["horizontal flip"] if flip else [])
    return f", test-time augmentation: {' and '.join(parts)}" if parts else ""


def _print_outcome(last, info, config):
    if last["status"] != "completed":
        print(f"Training stopped: {last['status']} at {last['nan_step']}.")
    elif last.get("final_val"):
        # A reused (finished) run's figures are those of its own evaluation: no note then.
        note = "" if last.get("reused") else tta_note(config.run.flip_eval, config.run.eval_scales)
        print(f"\nFinal validation metrics of {last['model']} ({last['final_val']['num_images']}"
              f" images{note}):\n" + format_results(last["final_val"], info.class_names))


def _load_inputs(config, run_dir, strategy):
    """((train, val, eval), info, (train count, val count), class weights, pixels per image):
    tf.data pipelines where TensorFlow is installed (they feed every Keras backend), the
    `keras.utils.PyDataset`s of `array_inputs` where it is not."""
    if _tf.HAS_TENSORFLOW:
        from keras_fcn.training import inputs

        train_decoded, info, count = inputs.load_data(config, "train")
        val_decoded, _, val_count = inputs.load_data(config, "val")
        class_weights = inputs.resolve_class_weights(config, info, train_decoded, run_dir)
        pixels = inputs.pixels_per_image(config, train_decoded)
        pipelines = list(inputs.make_pipelines(config, train_decoded, val_decoded, info,
                                               strategy.num_replicas_in_sync))
        source = "tf.data"
    else:
        *pipelines, info, (count, val_count), class_weights, pixels = \
            array_inputs.load_pipelines(config, run_dir, strategy.num_replicas_in_sync)
        source = (f"keras.utils.PyDataset (no TensorFlow), "
                  f"{pipelines[0].workers} reader thread(s)")
    pipelines[:2] = for_replicas(strategy, *pipelines[:2], config.optim.batch_size,
                                 info.ignore_label)
    print(f"Data: {info.name}, {count} train / {val_count} val images, {info.num_classes} "
          f"classes, ignore label {info.ignore_label}; {strategy.num_replicas_in_sync} "
          f"replica(s); input {source}.", flush=True)
    if config.optim.temporal_consistency:
        print(temporal_line(config, count), flush=True)
    return tuple(pipelines), info, (count, val_count), class_weights, pixels


def run(config):
    """Runs a whole recipe: data, model(s), training, final evaluation, table, optional export.

    Args:
        config: `TrainConfig`.

    Returns:
        dict: "run_dir", "reports" ({variant: report}), "final" (final evaluation of the last
        model).

    Raises:
        FileExistsError: `config.run.output_dir` holds a run and neither `resume` nor `overwrite`
            is set.
        ValueError: a bad configuration value (the message names it); `--overwrite` of a folder
            that is not a run directory, or a run directory that is or contains the data
            (`prepare_run_dir`); a `--resume` that changes a flag of `RESUME_FLAGS`.

    Example:
        >>> run(TrainConfig().replace(dataset="shapes", epochs=5,  # doctest: +SKIP
        ...                           output_dir="runs/a"))
    """
    config = check_before_run(config)  # all that needs no data: before the folder is made
    check_model(config)
    strategy = make_strategy(config.run.strategy, batch_size=config.optim.batch_size)
    keras.utils.set_random_seed(config.run.seed)
    keras.mixed_precision.set_global_policy("float32")  # models are converted after building
    print(f"Execution: {runtime.describe(runtime.cpu_info())}; precision "
          f"{execution_precision(config)}", flush=True)
    chief = is_chief()
    # The run folder is locked while this call trains, and released when it returns or raises
    # (kept if the caller held it): export, predict or another process may then use it.
    with io.directory_lock(config.run.output_dir if chief else None, "training"):
        # No folder of this run's setup files alone blocks the corrected rerun.
        with setup_removed_on_failure(config.run.output_dir, enabled=chief):
            if chief:
                run_dir = prepare_run_dir(config.run.output_dir, inputs=run_inputs(config),
                                          resume=config.run.resume, overwrite=config.run.overwrite)
                # Before any weights are loaded: a resume with other model flags is named here.
                write_run_config(run_dir, config.flat(), resume=config.run.resume,
                                 compare=RESUME_FLAGS, replan=SCHEDULE_FLAGS)
            else:
                run_dir = worker_run_dir(config.run.output_dir, resume=config.run.resume)
            with multi_worker_run(strategy, run_dir, chief):  # a worker's folder: removed
                return _train_in(config, run_dir, strategy, chief)


def _train_in(config, run_dir, strategy, chief):
    """`run` once `run_dir` is prepared: data, training, table, optional export."""
    pipelines, info, (count, val_count), class_weights, pixels = _load_inputs(
        config, run_dir, strategy)
    data = (*pipelines, info)
    if config.model.variant == "staged":
        model, reports = train_staged(config, run_dir=run_dir, data=data, strategy=strategy,
                                      class_weights=class_weights, pixels=pixels, chief=chief)
    else:
        variant = VARIANTS[config.model.variant]
        rate = stage_learning_rates(config, pixels, [variant])[0]
        model, report = train_one(config, variant, run_dir=run_dir, data=data,
                                  strategy=strategy, weights=config.model.weights,
                                  learning_rate=rate,
                                  class_weights=class_weights, pixels=pixels, chief=chief)
        reports = {variant: report}
    last = list(reports.values())[-1]
    _print_outcome(last, info, config)
    if config.run.export and chief and last["status"] == "completed" and not _tf.HAS_TENSORFLOW:
        print("Export skipped: TFLite export needs TensorFlow (a .keras file made here loads "
              "and exports on a machine with it).")
    elif config.run.export and chief and last["status"] == "completed":
        export_run(model, last.get("run_dir", run_dir), config, pipelines[2],
                   keep=all(report.get("reused") for report in reports.values()))
    print(f"Run directory: {run_dir}")
    return {"run_dir": run_dir, "reports": reports, "final": last.get("final_val")}
