"""CutMix for segmentation: a random box of another image of the batch, image and labels.

Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers with Localizable
Features", ICCV 2019 (https://arxiv.org/abs/1905.04899); for segmentation the box's labels
come with its pixels (French et al., "Semi-supervised semantic segmentation needs strong,
varied perturbations", BMVC 2020). A model trained on few streets learns their layout and
look; boxes of another street in odd places break both. Seeded and stateless like
`keras_fcn.data.augment`; `prepare_dataset(cutmix=p)` turns it on.

Example:
    >>> draws = cutmix_draws(seed, probability=0.5)        # per element, in the map
    >>> images, masks = cutmix(images, masks, batch_of_draws)  # per batch
"""

import tensorflow as tf

from keras_fcn.data.augment import op_seed

CUTMIX_OP = 7  # the op number of the CutMix draws (see `op_seed`)


def cutmix_draws(seed, probability):
    """The random numbers of one element's CutMix: ``[apply, area, centre_y, centre_x]``.

    ``apply`` is 1.0 with ``probability`` (else 0.0); ``area`` (the box's fraction of the
    image), ``centre_y`` and ``centre_x`` (fractions of the height and width) are uniform in
    [0, 1).

    Args:
        seed: the element's seed (a scalar int64), as given to the augmentation map.
        probability: chance in [0, 1] that the element gets a box.

    Returns:
        float32 tensor (4,).
    """
    values = tf.random.stateless_uniform([4], op_seed(seed, CUTMIX_OP))
    apply = tf.cast(values[0] < probability, tf.float32)
    return tf.concat([[apply], values[1:]], axis=0)


def box_masks(draws, height, width):
    """The boxes of a batch's draws as booleans ``(B, height, width)``.

    Element ``i``'s box has sides ``sqrt(area)`` times the image's (rounded), is centred on
    ``(centre_y * height, centre_x * width)`` and is clipped to the image; it is empty where
    ``apply`` is 0.

    Example:
        >>> box_masks(tf.constant([[1.0, 0.25, 0.5, 0.5]]), 4, 4)[0].numpy().astype(int)
        array([[0, 0, 0, 0],
               [0, 1, 1, 0],
               [0, 1, 1, 0],
               [0, 0, 0, 0]])
    """
    draws = tf.convert_to_tensor(draws, tf.float32)
    side = tf.sqrt(draws[:, 1])

    def span(centre, size):
        length = tf.round(side * float(size))
        start = tf.round(centre * float(size) - length / 2.0)
        inside = tf.range(size, dtype=tf.float32)[None, :]
        return (inside >= start[:, None]) & (inside < (start + length)[:, None])

    rows = span(draws[:, 2], height)
    cols = span(draws[:, 3], width)
    box = rows[:, :, None] & cols[:, None, :]
    return box & (draws[:, 0] > 0.5)[:, None, None]


def cutmix(images, masks, draws):
    """Pastes a box of image ``(i + 1) % B`` (pixels and labels) into image ``i``.

    Args:
        images: (B, H, W, C), one size for the batch (crops). masks: (B, H, W) ids.
        draws: (B, 4) float, rows from :func:`cutmix_draws`.

    Returns:
        (images, masks), same shapes and dtypes.
    """
    height, width = masks.shape[1], masks.shape[2]
    if height is None or width is None:
        raise ValueError("cutmix needs batches of one static size (random crops). Received: "
                         f"masks of shape {masks.shape}")
    box = box_masks(draws, height, width)
    source_images = tf.roll(images, shift=-1, axis=0)
    source_masks = tf.roll(masks, shift=-1, axis=0)
    return (tf.where(box[..., None], source_images, images),
            tf.where(box, source_masks, masks))
