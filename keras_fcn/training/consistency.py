"""Temporal-consistency training: the same scene moved a little must get the same labels.

An FCN with an output stride of 8-32 pixels is not shift-equivariant, so its labels flicker when
a video camera moves by a few pixels. `consistency_loss` compares the prediction of an image,
moved by a known warp, with the prediction of the moved image on the valid pixels (by default
the sum of a symmetric KL divergence of the softmaxes and a cross-entropy against the moved
first prediction's labels: the pair that halved flicker on CamVid, docs/temporal.md);
`add_consistency` adds ``weight`` times it to a compiled model's loss, for the training
elements of `keras_fcn.data.warp.add_warped_pairs`.

Example:
    >>> compile_model(model, num_classes=11, ignore_label=11, optimizer=optimizer)
    >>> add_consistency(model, weight=0.1)
    >>> fit(model, add_warped_pairs(train_ds, seed=0), val_ds, run_dir="runs/a", epochs=5,
    ...     info=info)
"""

import tensorflow as tf

from keras_fcn.data import warp as warp_lib

_EPSILON = 1e-6


def symmetric_kl(p, q, valid):
    """``KL(p || q) + KL(q || p)`` of ``(N, H, W, C)`` distributions, averaged over the
    ``valid`` ``(N, H, W)`` pixels (0 when none is valid).

    Example:
        >>> symmetric_kl(p, p, tf.ones(p.shape[:3], bool)).numpy()
        0.0
    """
    p = tf.clip_by_value(tf.cast(p, tf.float32), _EPSILON, 1.0)
    q = tf.clip_by_value(tf.cast(q, tf.float32), _EPSILON, 1.0)
    per_pixel = tf.reduce_sum((p - q) * (tf.math.log(p) - tf.math.log(q)), axis=-1)
    return _valid_mean(per_pixel, valid)


def _valid_mean(per_pixel, valid):
    """The mean of ``(N, H, W)`` ``per_pixel`` over the ``valid`` pixels (0 when none is)."""
    weights = tf.cast(valid, tf.float32)
    return tf.reduce_sum(per_pixel * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)


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
        >>> flow, valid = affine_flow(matrices, 64, 64)
        >>> loss = consistency_loss(model(images), model(warp_images(images, flow)), flow, valid)
    """
    check_kind(kind)
    probs = tf.nn.softmax(tf.cast(logits, tf.float32))
    moved_logits = tf.cast(moved_logits, tf.float32)
    moved_first = warp_lib.warp_images(probs, flow)
    total = 0.0
    if kind in ("kl", "kl+ce"):
        total += symmetric_kl(moved_first, tf.nn.softmax(moved_logits), valid)
    if kind in ("ce", "kl+ce"):
        targets = tf.stop_gradient(tf.argmax(moved_first, axis=-1))
        total += _valid_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(targets, moved_logits), valid)
    return total


def check_kind(kind):
    """Raises a ValueError naming ``kind`` unless it is one of `KINDS`."""
    if kind not in KINDS:
        raise ValueError(f"The consistency loss kind must be one of {KINDS}. Received: "
                         f"kind={kind!r}")


def add_consistency(model, weight, kind=DEFAULT_KIND):
    """Makes a compiled model train with ``weight`` times `consistency_loss` added to its loss.

    The training batches must come from `keras_fcn.data.warp.add_warped_pairs` (and optionally
    `keras_fcn.training.video_pairs.add_video_pairs`): ``(concat([firsts, seconds]), (masks,
    flow, valid))`` with one flow per pair, the first ``len(masks)`` firsts being the labelled
    images. The usual loss and the metrics see those and the masks; validation data
    ``(images, masks)`` is evaluated as before. Only the model's ``compute_loss`` and
    ``compute_metrics`` are wrapped (on this instance): the saved model is the plain FCN.

    Args:
        model: a compiled `keras.Model` (see `keras_fcn.training.compile_model`).
        weight: the weight of the consistency term, > 0.
        kind: "kl" (symmetric KL of the softmaxes), "ce" (cross-entropy against the moved
            first prediction's labels) or "kl+ce" (both); see `consistency_loss`.

    Returns:
        ``model``.

    Example:
        >>> add_consistency(compile_model(model, num_classes=3, ignore_label=255,
        ...                               optimizer=make_optimizer("adam", 1e-3)), 0.1)
    """
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
        raise ValueError(f"weight must be a positive number. Received: weight={weight!r}")
    check_kind(kind)
    compute_loss, compute_metrics = model.compute_loss, model.compute_metrics

    def split(y, y_pred):
        """(masks, labelled predictions, first and second of each pair, flow, valid)."""
        masks, flow, valid = y
        pairs = tf.shape(flow)[0]
        return masks, y_pred[:tf.shape(masks)[0]], y_pred[:pairs], y_pred[pairs:], flow, valid

    def loss_with_consistency(x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(y, (tuple, list)):
            return compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                training=training)
        masks, labelled, first, moved, flow, valid = split(y, y_pred)
        loss = compute_loss(x=x, y=masks, y_pred=labelled, sample_weight=sample_weight,
                            training=training)
        term = consistency_loss(first, moved, flow, valid, kind)
        return loss + tf.cast(weight * term, loss.dtype)

    def metrics_of_labelled(x, y, y_pred, sample_weight=None):
        if isinstance(y, (tuple, list)):
            y, y_pred = split(y, y_pred)[:2]
        return compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    model.compute_loss = loss_with_consistency
    model.compute_metrics = metrics_of_labelled
    return model
