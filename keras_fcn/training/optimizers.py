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

import keras

from keras_fcn._checks import check_choice
from keras_fcn.models import all_layers

OPTIMIZERS = ("sgd", "adam")
LOSS_REDUCTIONS = ("mean", "sum")
PAPER_WEIGHT_DECAY = 5e-4
PAPER_MOMENTUM = 0.99
# Fixed rates of the reference with the summed loss, per stage (the 8s stage uses 1e-13; 1e-14
# was used for the longer "heavy" runs).
PAPER_LEARNING_RATES_SUM = {"32s": 1e-10, "16s": 1e-12, "8s": 1e-13, "8s_at_once": 1e-10}
# Adam's default: 1e-4 is common for a pretrained trunk; 1e-3 also trains from scratch.
ADAM_LEARNING_RATE = 1e-3


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
        >>> default_learning_rate("sgd", "mean", "32s", 500 * 375)
        1.875e-05
    """
    if optimizer == "adam":
        return ADAM_LEARNING_RATE
    check_choice("variant", variant, tuple(PAPER_LEARNING_RATES_SUM))
    return equivalent_learning_rate(PAPER_LEARNING_RATES_SUM[variant], "sum", loss_reduction,
                                    pixels)
