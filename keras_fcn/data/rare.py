"""Showing the model more pixels of rare classes: crops centred on rare-class pixels, and
copy-paste of rare-class pixels between the images of a batch.

Thin, rare classes (CamVid's Pole, SignSymbol, Fence, Pedestrian, Bicyclist) are a few
percent of the pixels and often miss a random crop altogether. Both ops are seeded and
stateless like `keras_fcn.data.augment`, and run in tf.data graph mode;
`prepare_dataset(rare_crops=, copy_paste=, rare_classes=)` turns them on.

Example:
    >>> ds = prepare_dataset(decoded, batch_size=4, crop_size=(180, 240), rare_crops=0.5,
    ...                      copy_paste=0.5, rare_classes=(2, 6, 7, 9, 10), seed=0)
"""

import numpy as np
import tensorflow as tf

from keras_fcn._checks import check_probability


def check_rare_options(rare_crops=0.0, copy_paste=0.0, rare_classes=(), num_classes=None):
    """Checks the rare-class options; returns `rare_classes` as a tuple of ints.

    Args:
        rare_crops, copy_paste: probabilities in [0, 1] (0: off).
        rare_classes: class ids (a tuple or list of ints), at least one when an option is on.
        num_classes: when known, every id must be below it.

    Raises:
        ValueError: naming the bad value.

    Example:
        >>> check_rare_options(rare_crops=0.5, rare_classes=[9, 10], num_classes=11)
        (9, 10)
    """
    check_probability("rare_crops", rare_crops)
    check_probability("copy_paste", copy_paste)
    ids = tuple(rare_classes) if isinstance(rare_classes, (tuple, list, np.ndarray)) else None
    top = np.inf if num_classes is None else num_classes
    if ids is None or any(isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer))
                          or not 0 <= i < top for i in ids):
        allowed = "integers >= 0" if num_classes is None else f"integers in [0, {num_classes})"
        raise ValueError(f"`rare_classes` must be a tuple of class ids, {allowed}. Received: "
                         f"rare_classes={rare_classes!r}")
    if (rare_crops or copy_paste) and not ids:
        raise ValueError(f"`rare_classes` must name at least one class when rare_crops or "
                         f"copy_paste is on. Received: rare_classes={rare_classes!r} "
                         f"(rare_crops={rare_crops!r}, copy_paste={copy_paste!r})")
    return tuple(int(i) for i in ids)


def rare_pixels(mask, rare_classes):
    """Bool tensor of the shape of `mask` (integer ids): True where the id is in
    `rare_classes`.

    Example:
        >>> rare_pixels(tf.constant([[0, 9], [10, 3]]), (9, 10)).numpy().tolist()
        [[False, True], [True, False]]
    """
    ids = tf.constant(rare_classes, tf.int32)
    return tf.reduce_any(tf.equal(tf.cast(mask, tf.int32)[..., None], ids), axis=-1)


def centred_crop_offsets(mask, size, rare_classes, seed, offsets):
    """(top, left) of a `size` crop of `mask` centred on one of its rare-class pixels.

    The pixel is drawn uniformly over the pixels whose label is in `rare_classes`; the window
    is clipped to stay inside the mask (offset 0 on a side shorter than the crop: the caller
    pads), so it always contains the pixel. Without such a pixel: `offsets`.

    Args:
        mask: (H, W) ids. size: (height, width) of the crop. rare_classes: tuple of ids.
        seed: int64 [2] stateless seed of the pixel draw.
        offsets: (top, left) int32 scalars of the fallback (the uniform crop).

    Returns:
        (top, left) int32 scalars.

    Example:
        >>> mask = tf.scatter_nd([[5, 25]], [1], [20, 30])  # one pixel of class 1
        >>> top, left = centred_crop_offsets(mask, (8, 10), (1,), tf.constant([0, 14], tf.int64),
        ...                                  (0, 0))
        >>> int(top), int(left)
        (1, 20)
    """
    where = tf.where(rare_pixels(mask, rare_classes))  # (N, 2) rows and columns
    count = tf.shape(where, out_type=tf.int32)[0]

    def centred():
        pick = tf.random.stateless_uniform([], seed, 0, count, dtype=tf.int32)
        size_ = tf.constant(size, tf.int32)
        last = tf.maximum(tf.shape(mask)[:2] - size_, 0)
        corner = tf.clip_by_value(tf.cast(where[pick], tf.int32) - size_ // 2, 0, last)
        return corner[0], corner[1]

    return tf.cond(count > 0, centred, lambda: tuple(offsets))


def copy_paste_rare(images, masks, paste, rare_classes):
    """Pastes the rare-class pixels of image `(i + 1) % B` into image `i` where `paste[i]`.

    With `M = isin(masks[j], rare_classes) & paste[i]`, j = (i + 1) % B:
    `images[i] = where(M, images[j], images[i])`, `masks[i] = where(M, masks[j], masks[i])`.
    Vectorised over the batch (one `tf.roll`); images must share one size (crops).

    Args:
        images: (B, H, W, C). masks: (B, H, W) ids. paste: bool (B,).
        rare_classes: tuple of class ids.

    Returns:
        (images, masks), same shapes and dtypes.

    Example:
        >>> images, masks = copy_paste_rare(images, masks, tf.constant([True, False]), (9, 10))
    """
    source_images = tf.roll(images, shift=-1, axis=0)
    source_masks = tf.roll(masks, shift=-1, axis=0)
    chosen = tf.logical_and(rare_pixels(source_masks, rare_classes), paste[:, None, None])
    return (tf.where(chosen[..., None], source_images, images),
            tf.where(chosen, source_masks, masks))
