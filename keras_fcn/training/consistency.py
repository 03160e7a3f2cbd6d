"""Temporal-consistency training: the same scene moved a little must get the same labels.

An FCN with an output stride of 8-32 pixels is not shift-equivariant, so its labels flicker when
a video camera moves by a few pixels. `consistency_loss` compares the prediction of an image,
moved by a known warp, with the prediction of the moved image on the valid pixels (by default
the sum of a symmetric KL divergence of the softmaxes and a cross-entropy against the moved
first prediction's labels: the pair that halved flicker on CamVid, docs/temporal.md);
`add_consistency` adds ``weight`` times it to a compiled model's loss, for the training
elements of `keras_fcn.data.warp.add_warped_pairs`.

Everything here is written with `keras.ops` and runs on the TensorFlow, JAX and PyTorch
backends; `ConsistencyTrainer` is a `keras.Model` subclass that overrides the documented
`compute_loss` / `compute_metrics` extension points.

Example:
    trainer = add_consistency(model, weight=0.1)
    compile_model(trainer, num_classes=11, ignore_label=11, optimizer=optimizer)
    fit(trainer, add_warped_pairs(train_ds, seed=0), val_ds, run_dir="runs/a", epochs=5,
        info=info)
"""

import math
import numbers

import keras
import numpy as np
from keras import ops

from keras_fcn._jax_guard import variables_kept

_EPSILON = 1e-6


def symmetric_kl(p, q, valid):
    """``KL(p || q) + KL(q || p)`` of ``(N, H, W, C)`` distributions, averaged over the
    ``valid`` ``(N, H, W)`` pixels (0 when none is valid).

    Example:
        float(symmetric_kl(p, p, np.ones(p.shape[:3], bool)))
    """
    p = ops.clip(ops.cast(p, "float32"), _EPSILON, 1.0)
    q = ops.clip(ops.cast(q, "float32"), _EPSILON, 1.0)
    per_pixel = ops.sum((p - q) * (ops.log(p) - ops.log(q)), axis=-1)
    return _valid_mean(per_pixel, valid)


def _valid_mean(per_pixel, valid):
    """The mean of ``(N, H, W)`` ``per_pixel`` over the ``valid`` pixels (0 when none is)."""
    weights = ops.cast(valid, "float32")
    return ops.sum(per_pixel * weights) / ops.maximum(ops.sum(weights), 1.0)


def warp_bilinear(images, flow):
    """``images`` ``(N, H, W, C)`` moved by a backward ``flow`` ``(N, H, W, 2)`` (``(dx, dy)``):
    ``out[n, y, x] = images[n, y + dy, x + dx]``, bilinear, coordinates clamped to the image.

    The `keras.ops` twin of `keras_fcn.data.warp.warp_images` (which runs in tf.data), for the
    loss on every backend; differentiable in ``images``.

    Example:
        moved = warp_bilinear(probs, flow)
    """
    batch, height, width, channels = ops.shape(images)
    flat = ops.reshape(images, (batch, height * width, channels))
    x = ops.arange(width, dtype="float32")[None, None, :] + flow[..., 0]
    y = ops.arange(height, dtype="float32")[None, :, None] + flow[..., 1]
    x = ops.clip(x, 0.0, float(width - 1))
    y = ops.clip(y, 0.0, float(height - 1))
    x0, y0 = ops.floor(x), ops.floor(y)
    x1, y1 = ops.minimum(x0 + 1.0, width - 1.0), ops.minimum(y0 + 1.0, height - 1.0)
    wx, wy = (x - x0)[..., None], (y - y0)[..., None]

    def gather(ys, xs):
        index = ops.cast(ys, "int32") * width + ops.cast(xs, "int32")
        index = ops.reshape(index, (batch, height * width, 1))
        picked = ops.take_along_axis(flat, ops.broadcast_to(index, ops.shape(flat)), axis=1)
        return ops.reshape(picked, (batch, height, width, channels))

    top = gather(y0, x0) * (1 - wx) + gather(y0, x1) * wx
    bottom = gather(y1, x0) * (1 - wx) + gather(y1, x1) * wx
    return top * (1 - wy) + bottom * wy


KINDS = ("kl", "ce", "kl+ce")
DEFAULT_KIND = "kl+ce"  # halved flicker on CamVid (docs/temporal.md); "kl" before 2026-12-01


def consistency_loss(logits, moved_logits, flow, valid, kind=DEFAULT_KIND):
    """The disagreement between a prediction moved by a flow and the prediction of the moved
    image.

    ``kind="kl"``: the symmetric KL divergence of the two softmaxes (0 for a model that moves
    its prediction with the image). ``kind="ce"``: the cross-entropy of the moved image's
    prediction against the *labels* (argmax) of the moved first prediction, held constant
    (a pseudo-label, as in FixMatch): it pushes the moved prediction's argmax, which is what
    flickers, to the first one's, and away from near-ties; it is not 0 for an equivariant
    model (it is then its mean ``-log`` top probability). ``kind="kl+ce"``: their sum.

    Args:
        logits: ``(N, H, W, C)`` scores of the images.
        moved_logits: ``(N, H, W, C)`` scores of the moved images.
        flow: ``(N, H, W, 2)`` backward flow: pixel ``p`` of a moved image shows what pixel
            ``p + flow[p]`` of its image shows (see `keras_fcn.data.warp.affine_flow`).
        valid: ``(N, H, W)`` bool, False where ``p + flow[p]`` is outside the image or occluded.
        kind: "kl", "ce" or "kl+ce" (see above).

    Returns:
        A float32 scalar: the mean over the valid pixels.

    Example:
        flow, valid = affine_flow(matrices, 64, 64)
        loss = consistency_loss(model(images), model(warp_images(images, flow)), flow, valid)
    """
    check_kind(kind)
    _check_shapes(logits, moved_logits, flow, valid)
    probs = ops.softmax(ops.cast(logits, "float32"), axis=-1)
    moved_logits = ops.cast(moved_logits, "float32")
    moved_first = warp_bilinear(probs, ops.cast(flow, "float32"))
    total = 0.0
    if kind in ("kl", "kl+ce"):
        total += symmetric_kl(moved_first, ops.softmax(moved_logits, axis=-1), valid)
    if kind in ("ce", "kl+ce"):
        targets = ops.stop_gradient(ops.argmax(moved_first, axis=-1))
        total += _valid_mean(
            ops.sparse_categorical_crossentropy(targets, moved_logits, from_logits=True), valid)
    return total


def _check_shapes(logits, moved_logits, flow, valid):
    """Raises a ValueError naming the shapes unless they are ``(N, H, W, C)`` twice, ``(N, H,
    W, 2)`` and ``(N, H, W)``: broadcasting would otherwise give a believable wrong loss (a
    ``(H, W)`` or ``(N, 1, 1)`` ``valid`` divides by the wrong pixel count, a 3-channel flow
    loses a channel, a batch of 1 moved prediction is compared with every image). Unknown
    (traced) dimensions are not compared."""
    try:
        shapes = {name: tuple(value.shape) if hasattr(value, "shape") else np.shape(value)
                  for name, value in (("logits", logits), ("moved_logits", moved_logits),
                                      ("flow", flow), ("valid", valid))}
    except ValueError:  # a traced tensor of unknown rank: nothing to compare
        return
    expected = {"logits": 4, "moved_logits": 4, "flow": 4, "valid": 3}
    reference = shapes["logits"]
    ok = all(len(shapes[name]) == rank for name, rank in expected.items())
    if ok:
        wanted = {"moved_logits": reference, "flow": reference[:3] + (2,),
                  "valid": reference[:3]}
        ok = all(a is None or b is None or a == b
                 for name, shape in wanted.items() for a, b in zip(shapes[name], shape))
    if not ok:
        raise ValueError(
            "consistency_loss needs logits and moved_logits of one shape (N, H, W, C), flow "
            "(N, H, W, 2) and valid (N, H, W). Received: "
            + ", ".join(f"{name}.shape={shape}" for name, shape in shapes.items()))


def check_kind(kind):
    """Raises a ValueError naming ``kind`` unless it is one of `KINDS`."""
    if kind not in KINDS:
        raise ValueError(f"The consistency loss kind must be one of {KINDS}. Received: "
                         f"kind={kind!r}")


def _split(y, y_pred):
    """(masks, labelled predictions, first and second of each pair, flow, valid)."""
    masks, flow, valid = y
    pairs = flow.shape[0] if flow.shape[0] is not None else ops.shape(flow)[0]
    labelled = masks.shape[0] if masks.shape[0] is not None else ops.shape(masks)[0]
    return masks, y_pred[:labelled], y_pred[:pairs], y_pred[pairs:], flow, valid


@keras.saving.register_keras_serializable(package="keras_fcn")
class ConsistencyTrainer(keras.Model):
    """Trains an FCN with ``weight`` times `consistency_loss` added to its loss.

    A `keras.Model` that calls ``fcn`` and overrides the documented `compute_loss` and
    `compute_metrics` steps, so it trains the same way on every Keras backend. The training
    batches come from `keras_fcn.data.warp.add_warped_pairs` (and optionally
    `keras_fcn.training.video_pairs.add_video_pairs`): ``(concat([firsts, seconds]), (masks,
    flow, valid))`` with one flow per pair, the first ``len(masks)`` firsts being the labelled
    images. The compiled loss and the metrics see those and the masks; validation data
    ``(images, masks)`` is evaluated as usual. ``fcn`` shares its weights with the trainer:
    save and export ``trainer.fcn`` (`keras_fcn.training.fit` does), the plain FCN.

    Args:
        fcn: the segmentation model (logits output).
        weight: the weight of the consistency term, > 0.
        kind: "kl", "ce" or "kl+ce"; see `consistency_loss`.

    Example:
        trainer = ConsistencyTrainer(build_fcn8s(num_classes=3, weights=None), 0.1)
        compile_model(trainer, num_classes=3, ignore_label=255,
                      optimizer=make_optimizer("adam", 1e-3))
    """

    def __init__(self, fcn, weight, kind=DEFAULT_KIND, **kwargs):
        if not isinstance(fcn, keras.Model):
            raise ValueError(f"fcn must be a keras.Model (the FCN to train). Received: "
                             f"fcn={fcn!r}")
        kwargs.setdefault("name", f"{fcn.name}_consistency")
        super().__init__(**kwargs)
        check_weight(weight)
        check_kind(kind)
        self.fcn, self.weight, self.kind = fcn, float(weight), kind
        if fcn.built:  # nothing of its own to build: its weights are the FCN's
            self.build(fcn.input_shape)

    def build(self, input_shape=None):
        self.built = True

    def compile(self, *args, **kwargs):
        check_one_replica(self)
        return super().compile(*args, **kwargs)

    def fit(self, *args, **kwargs):
        check_one_replica(self)
        with variables_kept(self, fitting=True):  # JAX: a failed first step kept the weights
            return super().fit(*args, **kwargs)

    def evaluate(self, *args, **kwargs):
        with variables_kept(self):
            return super().evaluate(*args, **kwargs)

    def predict(self, *args, **kwargs):
        with variables_kept(self):
            return super().predict(*args, **kwargs)

    def call(self, inputs, training=None):
        return self.fcn(inputs, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(y, (tuple, list)):
            return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                        training=training)
        masks, labelled, first, moved, flow, valid = _split(y, y_pred)
        loss = super().compute_loss(x=x, y=masks, y_pred=labelled, sample_weight=sample_weight,
                                    training=training)
        term = consistency_loss(first, moved, flow, valid, self.kind)
        return loss + ops.cast(self.weight * term, loss.dtype)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y, (tuple, list)):
            y, y_pred = _split(y, y_pred)[:2]
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def get_config(self):
        return {"fcn": keras.saving.serialize_keras_object(self.fcn), "weight": self.weight,
                "kind": self.kind, "name": self.name}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["fcn"] = keras.saving.deserialize_keras_object(config["fcn"])
        return cls(**config)


def check_one_replica(model):
    """Raises a ValueError naming the strategy when ``model`` would train under a TensorFlow
    `tf.distribute` strategy of more than one replica.

    Each replica would get part of a batch ``concat([firsts, seconds])``: the originals of
    some pairs and the moved images of others (TensorFlow then failed in its first step with
    an ``AddN`` error about bool). JAX's ``keras.distribution.DataParallel`` runs one program
    over the whole batch and is fine; PyTorch has no strategy.

    Example:
        check_one_replica(trainer)   # before trainer.fit(...)
    """
    if keras.backend.backend() != "tensorflow":
        return
    strategy = model.distribute_strategy
    replicas = strategy.num_replicas_in_sync
    if replicas > 1:
        raise ValueError(
            "The temporal-consistency loss (ConsistencyTrainer, add_consistency) needs one "
            "replica: the images and the moved images of a pair must stay in one batch, and "
            "a tf.distribute strategy splits it. Train without the strategy, or on JAX with "
            "keras.distribution.DataParallel (training.make_strategy('data_parallel')). "
            f"Received: strategy={type(strategy).__name__} with {replicas} replicas")


def check_weight(weight):
    """Raises a ValueError naming ``weight`` unless it is a finite positive number (an
    infinite weight made every loss infinite)."""
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) \
            or not math.isfinite(weight) or not weight > 0:
        raise ValueError(f"weight must be a finite positive number. Received: "
                         f"weight={weight!r}")


def add_consistency(model, weight, kind=DEFAULT_KIND):
    """The `ConsistencyTrainer` of ``model``: compile it (`compile_model`) and fit it.

    Args:
        model: the FCN (logits output).
        weight: the weight of the consistency term, > 0.
        kind: "kl" (symmetric KL of the softmaxes), "ce" (cross-entropy against the moved
            first prediction's labels) or "kl+ce" (both); see `consistency_loss`.

    Returns:
        A `ConsistencyTrainer` sharing ``model``'s weights (``trainer.fcn is model``).

    Example:
        trainer = compile_model(add_consistency(model, 0.1), num_classes=3,
                                ignore_label=255, optimizer=make_optimizer("adam", 1e-3))
    """
    return ConsistencyTrainer(model, weight, kind)


def plain_model(model):
    """The FCN to save or export: ``model.fcn`` of a `ConsistencyTrainer`, else ``model``."""
    return model.fcn if isinstance(model, ConsistencyTrainer) else model
