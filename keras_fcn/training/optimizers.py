"""Optimizers, weight decay and the learning-rate conventions of the paper's recipe.

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
    >>> optimizer = make_optimizer("sgd", equivalent_learning_rate(1e-10, "sum", "mean",
    ...                                                            500 * 375))
"""

import math
import numbers

import keras
import numpy as np

from keras_fcn._checks import check_choice
from keras_fcn.models import all_layers

OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("constant", "poly", "cosine")
POLY_POWER = 0.9  # DeepLab's "poly" policy (Chen et al., 2017)
LOSS_REDUCTIONS = ("mean", "sum")
PAPER_WEIGHT_DECAY = 5e-4
PAPER_MOMENTUM = 0.99
# Fixed rates of the reference with the summed loss, per stage (the 8s stage uses 1e-13; 1e-14
# was used for the longer "heavy" runs).
PAPER_LEARNING_RATES_SUM = {"32s": 1e-10, "16s": 1e-12, "8s": 1e-13, "8s_at_once": 1e-10}
# Adam's default: 1e-4 is common for a pretrained trunk; 1e-3 also trains from scratch.
ADAM_LEARNING_RATE = 1e-3


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _check_number(name, value, expected, test):
    """``value`` as a float when it is a real number (not a bool) and ``test(value)`` holds,
    else a ValueError naming it and ``expected`` (NaN and infinity fail every ``expected``)."""
    if not _is_number(value) or not math.isfinite(value) or not test(value):
        raise ValueError(f"`{name}` must be {expected}. Received: {name}={value!r}")
    return float(value)


def _check_rate(name, value):
    return _check_number(name, value, "a finite positive number", lambda v: v > 0)


def _check_steps(name, value, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: "
                         f"{name}={value!r}")
    return int(value)


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
        >>> round(equivalent_learning_rate(1e-10, "sum", "mean", 500 * 375), 12)
        1.875e-05
    """
    check_choice("from_reduction", from_reduction, LOSS_REDUCTIONS)
    check_choice("to_reduction", to_reduction, LOSS_REDUCTIONS)
    learning_rate = _check_rate("learning_rate", learning_rate)
    pixels = _check_rate("pixels", pixels)
    if from_reduction == to_reduction:
        return learning_rate
    factor = pixels if to_reduction == "mean" else 1.0 / pixels
    return learning_rate * factor


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
        momentum = _check_number("momentum", momentum, "a number in [0, 1]",
                                 lambda v: 0 <= v <= 1)
        super().__init__(learning_rate=learning_rate, momentum=momentum, **kwargs)
        self.bias_lr_multiplier = _check_rate("bias_lr_multiplier", bias_lr_multiplier)

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


@keras.saving.register_keras_serializable(package="keras_fcn")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then poly or cosine decay to 0 at `total_steps` (or a constant rate).

    At optimizer step t (0-based; W = `warmup_steps`, T = `total_steps`, p = (t - W) / (T - W)
    clipped to [0, 1]):
        t < W:    lr * (t + 1) / W
        constant: lr
        poly:     lr * (1 - p) ** power       (DeepLab, power 0.9)
        cosine:   lr * (1 + cos(pi p)) / 2

    Example:
        >>> schedule = WarmupDecay(1e-3, 1000, kind="poly", warmup_steps=100)
        >>> float(schedule(550))  # 1e-3 * 0.5 ** 0.9
        0.000535...
    """

    def __init__(self, learning_rate, total_steps, kind="poly", warmup_steps=0,
                 power=POLY_POWER):
        check_choice("lr_schedule", kind, LR_SCHEDULES)
        # int() would truncate 2.5 steps to 2 and a NaN or negative rate or power would train
        # on NaN, climb the loss or grow without bound: all refused, naming the value.
        learning_rate = _check_rate("learning_rate", learning_rate)
        total_steps = _check_steps("total_steps", total_steps, 1)
        warmup_steps = _check_steps("warmup_steps", warmup_steps, 0)
        power = _check_rate("power", power)
        if not warmup_steps < total_steps:
            raise ValueError(f"Need 0 <= warmup_steps < total_steps. Received: warmup_steps="
                             f"{warmup_steps!r}, total_steps={total_steps!r}")
        self.learning_rate, self.total_steps = learning_rate, total_steps
        self.kind, self.warmup_steps, self.power = kind, warmup_steps, power

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warmup, rate = float(self.warmup_steps), self.learning_rate
        progress = keras.ops.clip((step - warmup) / (self.total_steps - warmup), 0.0, 1.0)
        if self.kind == "poly":
            rate = rate * keras.ops.power(1.0 - progress, self.power)
        elif self.kind == "cosine":
            rate = rate * 0.5 * (1.0 + keras.ops.cos(math.pi * progress))
        if self.warmup_steps:
            rate = keras.ops.where(step < warmup, self.learning_rate * (step + 1.0) / warmup,
                                   rate)
        return rate

    def get_config(self):
        return {"learning_rate": self.learning_rate, "total_steps": self.total_steps,
                "kind": self.kind, "warmup_steps": self.warmup_steps, "power": self.power}


def learning_rate_schedule(learning_rate, kind="constant", total_steps=None, warmup_steps=0):
    """The rate to give `make_optimizer`: `learning_rate` itself for a constant rate without
    warm-up, else a `WarmupDecay` over the run's `total_steps`.

    Example:
        >>> learning_rate_schedule(1e-3, "cosine", total_steps=1000).kind
        'cosine'
    """
    check_choice("lr_schedule", kind, LR_SCHEDULES)
    _check_rate("learning_rate", learning_rate)
    _check_steps("warmup_steps", warmup_steps, 0)
    if kind == "constant" and not warmup_steps:
        return learning_rate
    if total_steps is None or isinstance(total_steps, (bool, np.bool_)) or total_steps == 0:
        raise ValueError(f"lr_schedule={kind!r} needs the run's total steps. Received: "
                         f"total_steps={total_steps!r}")
    return WarmupDecay(learning_rate, total_steps, kind=kind, warmup_steps=warmup_steps)


def make_optimizer(name="sgd", learning_rate=1e-4, *, momentum=PAPER_MOMENTUM,
                   weight_decay=PAPER_WEIGHT_DECAY, bias_lr_multiplier=2.0, clipnorm=None,
                   ema_decay=0.0):
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
        ema_decay: keep an exponential moving average of the weights with this decay (e.g.
            0.999; 0 off): Keras' `use_ema`/`ema_momentum`. After every step
            `average = d * average + (1 - d) * weight` (the first step copies the weights);
            `model.fit` puts the averages into the model when it ends
            (`finalize_variable_values`); `keras_fcn.training.callbacks.EMAWeights`
            validates and checkpoints with them during training.

    Returns:
        A `keras.optimizers.Optimizer` (create it inside `strategy.scope()`).

    Example:
        >>> optimizer = make_optimizer("adam", 1e-4)
    """
    check_choice("optimizer", name, OPTIMIZERS)
    if not isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule) \
            and not callable(learning_rate):
        # A number: finite and positive (infinity used to be accepted, a numpy float refused
        # by Keras without naming it).
        learning_rate = _check_rate("learning_rate", learning_rate)
    ema_decay = _check_number("ema_decay", 0.0 if ema_decay is None else ema_decay,
                              "in [0, 1) (0: off)", lambda v: 0 <= v < 1)
    # Keras ignores a clipnorm <= 0 (or NaN) without a word: no clipping at all.
    if clipnorm is not None:
        clipnorm = _check_rate("clipnorm", clipnorm)
    ema = {"use_ema": True, "ema_momentum": ema_decay} if ema_decay else {}
    if name == "sgd":
        return CaffeSGD(learning_rate=learning_rate, momentum=momentum,
                        bias_lr_multiplier=bias_lr_multiplier, clipnorm=clipnorm, **ema)
    # A negative decay grows the weights, a NaN one makes them NaN at the first step.
    weight_decay = _check_number("weight_decay", 0.0 if weight_decay is None else weight_decay,
                                 "a finite number >= 0 (0 or None: off)", lambda v: v >= 0)
    optimizer = keras.optimizers.AdamW(learning_rate=learning_rate,
                                       weight_decay=weight_decay, clipnorm=clipnorm,
                                       **ema)
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
        apply_kernel_l2(model, 5e-4)
    """
    if weight_decay is not None:
        weight_decay = _check_number("weight_decay", weight_decay,
                                     "a finite number >= 0 (0 or None: off)", lambda v: v >= 0)
    regularizer = keras.regularizers.L2(weight_decay / 2.0) if weight_decay else None
    count = 0
    for layer in all_layers(model):
        kernel = getattr(layer, "kernel", None)
        if kernel is None or not layer.trainable or not getattr(kernel, "trainable", True):
            continue
        kernel.regularizer = regularizer
        count += 1
    return count


def default_learning_rate(optimizer, loss_reduction, variant, pixels):
    """The recipe's learning rate when none is given.

    SGD: the paper's fixed rates (1e-10 FCN-32s, 1e-12 FCN-16s, 1e-13 FCN-8s with the summed
    loss; times `pixels` with the averaged loss). Adam: `ADAM_LEARNING_RATE` (1e-3).

    Example:
        >>> round(default_learning_rate("sgd", "mean", "32s", 500 * 375), 12)
        1.875e-05
    """
    check_choice("optimizer", optimizer, OPTIMIZERS)  # "Adam" used to get SGD's rate
    if optimizer == "adam":
        return ADAM_LEARNING_RATE
    check_choice("variant", variant, tuple(PAPER_LEARNING_RATES_SUM))
    return equivalent_learning_rate(PAPER_LEARNING_RATES_SUM[variant], "sum", loss_reduction,
                                    pixels)


def last_step_rate(optimizer):
    """The learning rate that the optimizer's last step used (its schedule at step
    `iterations - 1`), or None when it has none.

    Example:
        last_step_rate(model.optimizer)  # 0.00054 at step 550 of a poly decay from 1e-3
    """
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer
    rate = getattr(optimizer, "_learning_rate", None)
    if rate is None:
        return None
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        rate = rate(max(int(optimizer.iterations) - 1, 0))
    elif callable(rate) and not isinstance(rate, keras.Variable):
        rate = rate()
    return float(keras.ops.convert_to_numpy(rate))


def check_warmup(warmup_epochs, epochs):
    """Checks that a warm-up of `warmup_epochs` (None: none) ends before a run of `epochs`
    does (with 0 epochs nothing is trained and any warm-up is moot): `keras_fcn.training.run`
    calls it before any data is read.

    Raises:
        ValueError: naming --warmup_epochs and --epochs.

    Example:
        >>> check_warmup(3, epochs=3)
        Traceback (most recent call last):
        ValueError: --warmup_epochs must be a number >= 0 and below --epochs (the warm-up must
        end before the run does). Received: warmup_epochs=3, epochs=3
    """
    warmup = 0.0 if warmup_epochs is None else warmup_epochs
    if not (_is_number(warmup) and math.isfinite(warmup) and warmup >= 0
            and (epochs == 0 or warmup < epochs)):
        raise ValueError(
            "--warmup_epochs must be a number >= 0 and below --epochs (the warm-up must end "
            f"before the run does). Received: warmup_epochs={warmup_epochs!r}, "
            f"epochs={epochs!r}")


def check_stage_schedules(stage_configs, stages):
    """Checks the per-stage configs of a staged run (`recipe.train_staged`) before any stage
    trains: every key of `stage_configs` is one of `stages`, and each stage's warm-up ends
    before its epochs do (named with the stage, not an error inside the schedule).

    Raises:
        ValueError: an unknown stage; a warm-up not below a stage's epochs.

    Example:
        >>> config = keras_fcn.training.TrainConfig().replace(epochs=2, warmup_epochs=3)
        >>> check_stage_schedules({"32s": config},
        ...                       ("32s", "16s", "8s"))
        Traceback (most recent call last):
        ValueError: FCN-32s (stage_configs): --warmup_epochs must be a number >= 0 and below
        --epochs (the warm-up must end before the run does). Received: warmup_epochs=3,
        epochs=2
    """
    unknown = sorted(set(stage_configs or ()) - set(stages))
    if unknown:
        raise ValueError(f"stage_configs has stages this run does not train: {unknown}. "
                         f"Expected some of {list(stages)}.")
    for stage, stage_config in (stage_configs or {}).items():
        try:
            check_warmup(stage_config.optim.warmup_epochs, stage_config.optim.epochs)
        except ValueError as error:
            raise ValueError(f"FCN-{stage} (stage_configs): {error}") from None
