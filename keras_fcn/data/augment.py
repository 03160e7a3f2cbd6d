"""Seeded, stateless augmentation of (image, mask) pairs: scale, pad + crop, flip, blur, colour
jitter (brightness, contrast, saturation, hue). Masks are only ever scaled, cropped and flipped.

Every random draw comes from an int64 [2] seed (`tf.random.stateless_*`), `op_seed` of one int64
seed per element (see `with_element_seeds`), so the same seed gives the same data whatever the
parallelism.

Example:
    ds = with_element_seeds(decoded, seed=0).map(
        lambda element, seed: random_flip(seed, *element))
"""

import math

import tensorflow as tf

from keras_fcn._checks import as_range, as_size
from keras_fcn.data.jitter import (  # noqa: F401  (photometric_ranges: re-exported)
    GRAY_WEIGHTS,
    blur_radius,
    photometric_ranges,
)
from keras_fcn.labels import MEAN_RGB  # noqa: F401  (re-exported: keras_fcn.data.MEAN_RGB)

FLIP_OP = 3  # the op number of the flip draw (see `op_seed`)


# Speed notes (480x360 on a CPU, see benchmarks/input_pipeline.py): crops and flips run on
# the uint8 image before the float conversion when there is no rescaling, flips use
# `tf.reverse` (a strided slice with step -1 is ~10x slower), padding with the mean is only
# built when an element is smaller than the crop (`tf.where` over a whole float image costs
# as much as a bilinear resize), and colour jitter is one per-pixel 3x3 affine map applied to
# whole batches. The outputs are the same as applying the steps one by one in the order
# scale, pad, crop, flip, jitter (jitter up to float round-off).


def op_seed(seed, op):
    """The stateless seed of augmentation step `op` of the element with seed `seed`.

    Example:
        >>> op_seed(tf.constant(7, tf.int64), 3).numpy().tolist()
        [7, 3]
    """
    return tf.stack([seed, tf.constant(op, tf.int64)])


def _scale_size(mask, seed, scale_range):
    scale = tf.random.stateless_uniform([], seed, scale_range[0], scale_range[1])
    size = tf.cast(tf.round(tf.cast(tf.shape(mask)[:2], tf.float32) * scale), tf.int32)
    return tf.maximum(size, 1)


def random_scale(image, mask, seed, scale_range):
    """Rescales by a factor drawn from `scale_range`: image bilinear, mask nearest.

    Args:
        image: (H, W, 3) 0..255 (any real or integer dtype). mask: (H, W) ids.
        seed: int64 [2] stateless seed. scale_range: (low, high).

    Returns:
        (image float32, mask) at the new size.

    Example:
        image, mask = random_scale(image, mask, tf.constant([0, 1], tf.int64), (0.5, 2.0))
    """
    size = _scale_size(mask, seed, scale_range)
    image = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear")
    mask = tf.image.resize(mask[..., None], size, method="nearest")[..., 0]
    return image, mask


def _pad_with_mean(image, mask, size, ignore_label, mean_rgb, pad_left=None):
    """Pads float `image` with `mean_rgb` and `mask` with `ignore_label` up to at least `size`:
    at the bottom, and on the right (or on the left where the bool `pad_left` is True).

    The padding blocks are only built when needed: elements already large enough pass through.
    A mask whose integer dtype cannot hold `ignore_label` (a uint8 mask, ignore_label=300 or -1)
    comes back as int32: a cast would wrap the void label to another value, a class id maybe.
    """
    dtype = tf.as_dtype(mask.dtype)
    if not dtype.min <= ignore_label <= dtype.max:
        mask = tf.cast(mask, tf.int32)
    shape = tf.shape(mask)
    pad_h = tf.maximum(size[0] - shape[0], 0)
    pad_w = tf.maximum(size[1] - shape[1], 0)
    if pad_left is None:
        left, right = tf.constant(0), pad_w
    else:
        left = tf.where(pad_left, pad_w, 0)
        right = pad_w - left
    mean = tf.constant(mean_rgb, tf.float32)

    def pad():
        height = shape[0]
        padded = tf.concat([tf.broadcast_to(mean, [height, left, 3]), image,
                            tf.broadcast_to(mean, [height, right, 3])], axis=1)
        padded = tf.concat([padded, tf.broadcast_to(mean, [pad_h, shape[1] + pad_w, 3])],
                           axis=0)
        padded_mask = tf.pad(mask, [[0, pad_h], [left, right]],
                             constant_values=tf.cast(ignore_label, mask.dtype))
        return padded, padded_mask

    return tf.cond(tf.logical_or(pad_h > 0, pad_w > 0), pad,
                   lambda: (tf.identity(image), tf.identity(mask)))


def fill_padding(image, mean_rgb=MEAN_RGB):
    """Replaces sentinel (-1) pixels by the mean colour (exactly, no round-off).

    Example:
        >>> [round(v, 1) for v in fill_padding(tf.fill([1, 1, 3], -1.0)).numpy()[0, 0].tolist()]
        [122.7, 116.7, 104.0]
    """
    mean = tf.constant(mean_rgb, tf.float32)
    return tf.where(image < 0, mean, image)


def _crop_window(mask, seed, size):
    """(top, left, height, width) of the random crop of `mask` padded to `size`.

    Same draws as cropping the padded image: a side shorter than the crop gets offset 0.
    """
    shape = tf.shape(mask)
    top = tf.random.stateless_uniform([], op_seed(seed[0], 11), 0,
                                      tf.maximum(shape[0] - size[0], 0) + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform([], op_seed(seed[0], 12), 0,
                                       tf.maximum(shape[1] - size[1], 0) + 1, dtype=tf.int32)
    return top, left, tf.minimum(shape[0], size[0]), tf.minimum(shape[1], size[1])


def flip_draw(seed):
    """Whether to flip: a stateless draw, True with probability 1/2.

    Example:
        >>> bool(flip_draw(tf.constant([0, 3], tf.int64))) in (True, False)
        True
    """
    return tf.random.stateless_uniform([], seed) < 0.5


def flip_if(flip, *tensors):
    """Flips each (H, W, ...) tensor left-right where the bool `flip` is True.

    Example:
        image, mask = flip_if(tf.constant(True), image, mask)
    """
    return tuple(tf.cond(flip, lambda t=t: tf.reverse(t, [1]), lambda t=t: tf.identity(t))
                 for t in tensors)


def random_flip(seed, *tensors):
    """Flips all `tensors` (an image, its masks, other inputs) left-right together, with
    probability 1/2, drawn from the element seed `seed` (as `make_element_fn` does).

    Args:
        seed: int64 scalar element seed (see `with_element_seeds`).
        *tensors: (H, W, ...) tensors of the same element.

    Returns:
        Tuple of the tensors, all flipped or none.

    Example:
        image, mask = random_flip(tf.constant(7, tf.int64), image, mask)
    """
    return flip_if(flip_draw(op_seed(seed, FLIP_OP)), *tensors)


def with_element_seeds(ds, seed):
    """Zips `ds` with one int64 scalar seed per element, drawn anew each epoch.

    With a seed the draws are the same on every run; the augmentation of an element then
    depends on its seed only, not on the order or parallelism of `map`.

    Returns:
        `tf.data.Dataset` of (element, seed).

    Example:
        ds = with_element_seeds(decoded, 0).map(lambda e, s: random_flip(s, *e))
    """
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    return tf.data.Dataset.zip(ds, seeds)


def jitter_settings(color_jitter=False, photometric=0.0):
    """The keyword arguments of `jitter_factors` for these options, or None for no jitter.

    Example:
        >>> jitter_settings(color_jitter=True), jitter_settings()
        ({}, None)
    """
    if photometric:
        return photometric_ranges(photometric)
    return {} if color_jitter else None


def jitter_factors(seed, brightness=32.0, contrast=(0.75, 1.25), saturation=(0.75, 1.25),
                   hue=0.0):
    """Returns float32 [4]: (brightness shift, contrast factor, saturation factor, hue angle in
    radians, drawn in [-hue, hue] turns; exactly 0 when `hue` is 0).

    Example:
        >>> jitter_factors(tf.constant([0, 4], tf.int64)).shape
        TensorShape([4])
    """
    uniform = lambda op, low, high: tf.random.stateless_uniform(  # noqa: E731
        [], op_seed(seed[0], op), low, high)
    angle = uniform(24, -hue, hue) * (2 * math.pi) if hue else tf.constant(0.0)
    return tf.stack([uniform(21, -brightness, brightness), uniform(22, *contrast),
                     uniform(23, *saturation), angle])


def hue_matrices(angles):
    """(B, 3, 3) rotations of RGB about the gray axis (1, 1, 1) by `angles` (B,), radians, for
    row-vector pixels (`pixels @ matrix`): gray stays gray, R + G + B and the distance from
    gray are kept; only the hue turns. An angle of 0 gives the identity exactly.

    Example:
        >>> hue_matrices(tf.constant([0.0]))[0].numpy().tolist()
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    cos, sin = tf.cos(angles)[:, None, None], tf.sin(angles)[:, None, None]
    cross = tf.constant([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]])
    rotation = (cos * tf.eye(3) + sin / math.sqrt(3.0) * cross
                + (1.0 - cos) / 3.0 * tf.ones([3, 3]))
    return tf.transpose(rotation, [0, 2, 1])


def apply_jitter(images, factors):
    """Colour jitter of a batch `images` (B, H, W, 3) with `factors` (B, 4) of `jitter_factors`.

    Per image, brightness `b`, contrast `c` (about the mean `m` after the shift) and saturation
    `s` (about the gray level `g = w . x`) compose into one affine map of each pixel `x`:
        out = s c x + (1 - s) c (w . x) 1 + (c b + (1 - c) m) (s + (1 - s) sum(w)) 1,
    then the hue rotation `hue_matrices` (which keeps the gray offset), so the image is read
    once for the mean and once for a (3 x 3) matmul, then clipped.

    Example:
        images = apply_jitter(images, tf.stack([jitter_factors(s) for s in seeds]))
    """
    shift, contrast, saturation = (factors[:, i] for i in range(3))
    weights = tf.constant(GRAY_WEIGHTS, tf.float32)
    mean = tf.reduce_mean(images, axis=[1, 2, 3]) + shift
    offset = (contrast * shift + (1.0 - contrast) * mean) * (
        saturation + (1.0 - saturation) * tf.reduce_sum(weights))
    eye = tf.eye(3, dtype=tf.float32)[None]
    matrix = (saturation * contrast)[:, None, None] * eye + (
        ((1.0 - saturation) * contrast)[:, None, None] * weights[None, :, None]
        * tf.ones([1, 1, 3], tf.float32))
    matrix = tf.matmul(matrix, hue_matrices(factors[:, 3]))
    shape = tf.shape(images)
    pixels = tf.reshape(images, [shape[0], -1, 3])
    out = tf.matmul(pixels, matrix) + offset[:, None, None]
    return tf.reshape(tf.clip_by_value(out, 0.0, 255.0), shape)


def random_color_jitter(image, seed, brightness=32.0, contrast=(0.75, 1.25),
                        saturation=(0.75, 1.25), hue=0.0):
    """Random brightness/contrast/saturation/hue of a 0..255 RGB image (never the mask).

    In order: add a shift in [-brightness, brightness]; scale about the image mean by a
    contrast factor; scale about the gray level (0.299 R + 0.587 G + 0.114 B) by a saturation
    factor; turn the hue (`hue_matrices`); clip to 0..255 (one affine map per pixel).

    Args:
        image: float32 (H, W, 3) in 0..255. seed: int64 [2] stateless seed.
        brightness: max absolute shift. contrast, saturation: factor ranges.
        hue: max hue rotation, in turns (0.1: 36 degrees).

    Returns:
        The jittered image, clipped to 0..255.

    Example:
        image = random_color_jitter(image, tf.constant([0, 4], tf.int64))
    """
    factors = jitter_factors(seed, brightness, contrast, saturation, hue)
    return apply_jitter(tf.cast(image, tf.float32)[None], factors[None])[0]


def gaussian_blur(image, sigma, radius):
    """Blurs a float (H, W, C) image with a Gaussian of std `sigma` (kernel `2 radius + 1`,
    normalized; mirrored edges as scipy.ndimage's "reflect", at any image size).

    Example:
        >>> round(float(gaussian_blur(tf.ones([8, 8, 3]), 1.0, 3).numpy().mean()), 6)
        1.0
    """
    offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-0.5 * tf.square(offsets / sigma))
    kernel /= tf.reduce_sum(kernel)
    channels = image.shape[-1]
    padded = _reflect_pad(_reflect_pad(image, radius, 0), radius, 1)[None]
    rows = tf.tile(kernel[:, None, None, None], [1, 1, channels, 1])
    columns = tf.tile(kernel[None, :, None, None], [1, 1, channels, 1])
    blurred = tf.nn.depthwise_conv2d(padded, rows, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(blurred, columns, [1, 1, 1, 1], "VALID")[0]


def _reflect_pad(image, radius, axis):
    """`radius` mirrored pixels on both sides of `axis`, as scipy.ndimage's "reflect"
    (d c b a | a b c d | d c b a), repeated with period 2 n where `radius` exceeds the size n:
    tf.pad's "SYMMETRIC" mode fails there, and an image smaller than the crop is not padded
    before the blur."""
    size = tf.shape(image, out_type=tf.int32)[axis]
    index = tf.math.floormod(tf.range(-radius, size + radius), 2 * size)
    return tf.gather(image, tf.where(index < size, index, 2 * size - 1 - index), axis=axis)


def random_blur(image, seed, max_sigma):
    """Gaussian blur with probability 1/2, std drawn in [0.1, max_sigma] (image only).

    Args:
        image: float32 (H, W, 3). seed: int64 [2] stateless seed.
        max_sigma: largest std in pixels (>= 0.1).

    Example:
        image = random_blur(image, tf.constant([0, 5], tf.int64), 1.5)
    """
    if not max_sigma >= 0.1:
        raise ValueError(f"`blur` must be >= 0.1 (0: off). Received: blur={max_sigma!r}")
    sigma = tf.random.stateless_uniform([], op_seed(seed[0], 26), 0.1, max_sigma)
    apply = tf.random.stateless_uniform([], op_seed(seed[0], 25)) < 0.5
    return tf.cond(apply, lambda: gaussian_blur(image, sigma, blur_radius(max_sigma)),
                   lambda: tf.identity(image))


def make_element_fn(*, ignore_label, crop_size, scale_range, flip, mean_rgb=MEAN_RGB,
                    blur=0.0):
    """`fn((image, mask), seed) -> (image float32, mask)`: scale, pad + crop, flip, blur.

    `blur` > 0 blurs the image (`random_blur`, max std `blur` pixels) before any padding.

    Integer masks keep their dtype (uint8 masks stay small until batched).

    Example:
        >>> fn = make_element_fn(ignore_label=255, crop_size=64, scale_range=None, flip=True)

        image, mask = fn((image, mask), tf.constant(7, tf.int64))  # an element seed
    """
    crop_size = as_size("crop_size", crop_size)
    scale_range = as_range("scale_range", scale_range)
    if crop_size is not None and ignore_label is None:
        raise ValueError("`crop_size` pads masks smaller than the crop with `ignore_label`, "
                         "which cannot then be None: pass the void label (e.g. 255). "
                         f"Received: ignore_label=None, crop_size={crop_size}")

    def element_fn(element, seed):
        image, mask = element
        if scale_range is not None:  # bilinear output is float32
            image, mask = random_scale(image, mask, op_seed(seed, 1), scale_range)
        flipped = flip_draw(op_seed(seed, FLIP_OP)) if flip else None
        if crop_size is not None:
            top, left, height, width = _crop_window(mask, op_seed(seed, 2), crop_size)
            image = image[top:top + height, left:left + width]
            mask = mask[top:top + height, left:left + width]
        if flip:  # on uint8 when not rescaled: 4x less memory to move
            image, mask = flip_if(flipped, image, mask)
        image = tf.cast(image, tf.float32)
        if blur:
            image = random_blur(image, op_seed(seed, 5), blur)
        if crop_size is not None:
            # Padding goes where pad-then-crop-then-flip would have put it.
            image, mask = _pad_with_mean(image, mask, crop_size, ignore_label, mean_rgb,
                                         pad_left=flipped)
            image = tf.ensure_shape(image, [crop_size[0], crop_size[1], 3])
            mask = tf.ensure_shape(mask, list(crop_size))
        return image, mask

    return element_fn
