"""tf.data input pipelines for semantic segmentation.

The pipelines read (image path, mask path) pairs and yield `(image, mask)` elements:

- `image`: float32 RGB in 0..255, shape (H, W, 3) (batched: (B, H, W, 3)). No mean subtraction
  and no BGR swap here: the model (or `keras_fcn.preprocess_input`) does that.
- `mask`: int32 class ids, shape (H, W) (batched: (B, H, W)). The ignore label (255 by default,
  11 for CamVid) is kept as is, never rewritten to a class.

Masks are only ever resized with nearest neighbour. Padding (random crops larger than the image,
padded batches) fills the image with the dataset mean pixel (so it is zero after mean
subtraction) and the mask with the ignore label.

Example:

```python
pairs = [("a.jpg", "a.png"), ("b.jpg", "b.png")]
ds = make_dataset(pairs, num_classes=21, crop_size=(320, 320), batch_size=8,
                  scale_range=(0.5, 2.0), flip=True, shuffle=True, seed=0)
for image, mask in ds.take(1):
    print(image.shape, mask.shape)  # (8, 320, 320, 3) (8, 320, 320)
```
"""

import warnings

import numpy as np
import tensorflow as tf

from keras_fcn.data.augment import (
    MEAN_RGB,
    apply_jitter,
    fill_padding,
    jitter_factors,
    jitter_settings,
    make_element_fn,
    op_seed,
    random_color_jitter,
    with_element_seeds,
)
from keras_fcn.data.decode import make_decode_fn
from keras_fcn.data.validate import as_pairs, validate_pairs
from keras_fcn.labels import IGNORE_LABEL
from keras_fcn._pixels import validate_ignore_label

_PAD_SENTINEL = -1.0  # images are 0..255, so -1 marks padded pixels until they get the mean


def _default_deterministic(seed, shuffle):
    """Order may only be traded for speed where nobody can rely on it: unseeded shuffling."""
    return seed is not None or not shuffle


def prepare_dataset(decoded, *, ignore_label=IGNORE_LABEL, batch_size=1, crop_size=None,
                    scale_range=None, flip=False, photometric=0.0, blur=0.0, shuffle=False,
                    shuffle_buffer=None, seed=None, cache=False, deterministic=None,
                    drop_remainder=False, mean_rgb=MEAN_RGB, skip_bad=False, color_jitter=None):
    """Augments, batches and prefetches a dataset of decoded `(image, mask)` elements.

    `make_dataset` calls this after decoding files; use it directly for in-memory data or TFDS
    (see `keras_fcn.datasets.from_tfds`).

    Args:
        decoded: `tf.data.Dataset` of (image (H, W, 3) uint8/float 0..255 RGB, mask (H, W)).
            Keep images uint8 (and masks uint8 when labels fit): the cache is then 4x smaller
            and crops/flips move less memory.
        shuffle_buffer: shuffle buffer size (default: the dataset size, or 1000 if unknown).
        skip_bad: drop elements whose decoding or checks fail (logged as warnings).
        Other arguments: see `make_dataset`.

    Returns:
        `tf.data.Dataset` of (image float32, mask int32), batched.

    Example:
        ds = tf.data.Dataset.from_tensor_slices((images, masks))
        ds = prepare_dataset(ds, batch_size=4, crop_size=64, flip=True, seed=0)
    """
    _check_pads_with(ignore_label)
    return _augment_and_batch(
        decoded, _jitter(color_jitter, photometric), ignore_label=ignore_label,
        batch_size=batch_size, crop_size=crop_size, scale_range=scale_range, flip=flip,
        blur=blur, shuffle=shuffle, shuffle_buffer=shuffle_buffer, seed=seed, cache=cache,
        deterministic=deterministic, drop_remainder=drop_remainder, mean_rgb=mean_rgb,
        skip_bad=skip_bad)


def _check_pads_with(ignore_label):
    """The pipelines pad masks with ``ignore_label`` (crops past an image, batches of images
    of different sizes): None is refused by name (it failed inside TensorFlow)."""
    if ignore_label is None:
        raise ValueError(
            "The input pipeline pads masks with ignore_label (crops past an image, batches of "
            "different sizes), so it needs one: pass a value outside [0, num_classes), e.g. "
            "255, even if no mask holds it. Received: ignore_label=None")


def _jitter(color_jitter, photometric):
    """The colour-jitter settings of `photometric`, or of the 0.1.0 `color_jitter` (True: the
    strength 0.5 without hue), which warns: it is deprecated."""
    if color_jitter is not None:
        warnings.warn("`color_jitter` is deprecated: use `photometric` (the strength, e.g. 0.5; "
                      "color_jitter=True is 0.5 without the hue turn). Received: "
                      f"color_jitter={color_jitter!r}", DeprecationWarning, stacklevel=3)
    return jitter_settings(bool(color_jitter), photometric)


def _augment_and_batch(decoded, jitter, *, ignore_label, batch_size, crop_size, scale_range,
                       flip, blur, shuffle, shuffle_buffer, seed, cache, deterministic,
                       drop_remainder, mean_rgb, skip_bad):
    """`prepare_dataset` with its colour jitter resolved (`jitter_settings`)."""
    if deterministic is None:
        deterministic = _default_deterministic(seed, shuffle)
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1. Received: batch_size={batch_size}")
    if skip_bad:
        decoded = decoded.ignore_errors(log_warning=True)
    if cache:
        decoded = decoded.cache(cache if isinstance(cache, str) else "")
    if shuffle:
        decoded = decoded.shuffle(_buffer_size(decoded, shuffle_buffer), seed=seed,
                                  reshuffle_each_iteration=True)
    element_fn = make_element_fn(ignore_label=ignore_label, crop_size=crop_size,
                                 scale_range=scale_range, flip=flip, mean_rgb=mean_rgb,
                                 blur=blur)
    # Fixed-size batches get their colour jitter per batch (vectorised); padded batches per
    # element, before padding, so that padding stays exactly the mean colour.
    fixed_size = crop_size is not None or batch_size == 1
    batch_jitter = jitter is not None and fixed_size

    def augment(element, seed_):
        image, mask = element_fn(element, seed_)
        if batch_jitter:
            return image, mask, jitter_factors(op_seed(seed_, 4), **jitter)
        if jitter is not None:
            image = random_color_jitter(image, op_seed(seed_, 4), **jitter)
        if not fixed_size:
            mask = tf.cast(mask, tf.int32)
        return image, mask

    ds = with_element_seeds(decoded, seed).map(
        augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if fixed_size:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)

        def finish(image, mask, factors=None):
            if factors is not None:
                image = apply_jitter(image, factors)
            return image, tf.cast(mask, tf.int32)

        ds = ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    else:
        ds = _padded_batch(ds, batch_size, ignore_label, drop_remainder, mean_rgb)
    options = tf.data.Options()
    options.deterministic = deterministic
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _buffer_size(ds, shuffle_buffer):
    if shuffle_buffer:
        return int(shuffle_buffer)
    size = int(ds.cardinality())
    return size if size > 0 else 1000


def _padded_batch(ds, batch_size, ignore_label, drop_remainder, mean_rgb):
    """Batches of mixed sizes, padded to the largest element (mean colour, ignore label)."""
    ds = ds.padded_batch(
        batch_size,
        padding_values=(tf.constant(_PAD_SENTINEL, tf.float32),
                        tf.constant(ignore_label, tf.int32)),
        drop_remainder=drop_remainder,
    )
    return ds.map(lambda image, mask: (fill_padding(image, mean_rgb), mask),
                  num_parallel_calls=tf.data.AUTOTUNE)


def make_dataset(pairs, *, num_classes, ignore_label=IGNORE_LABEL, batch_size=1, crop_size=None,
                 scale_range=None, flip=False, photometric=0.0, blur=0.0, shuffle=False,
                 seed=None, mask_format="index", palette=None, unknown_color="error",
                 cache=False, deterministic=None, validate=True, skip_bad=False,
                 drop_remainder=False, shuffle_buffer=None, mean_rgb=MEAN_RGB,
                 color_jitter=None):
    """Builds a `tf.data.Dataset` of (image, mask) batches from (image, mask) file pairs.

    Batching: `batch_size=1` without `crop_size` gives whole images at their own size (the
    paper's setting); with `crop_size` every element is a fixed-size crop (images smaller than
    the crop are padded); `batch_size > 1` without `crop_size` pads each batch to its largest
    image (image padded with `mean_rgb`, mask with `ignore_label`).

    Args:
        pairs: sequence of (image path, mask path). Images: JPEG/PNG/BMP/GIF.
        num_classes: number of classes; mask values must be in [0, num_classes) or ignore.
        ignore_label: void label kept as is in the output (255 for VOC, 11 for CamVid).
        batch_size: elements per batch.
        crop_size: int or (height, width) random crop, or None for whole images.
        scale_range: (low, high) random scale factors, or None.
        flip: random left-right flips.
        photometric: colour augmentation strength in (0, 1], 0 off: brightness, contrast,
            saturation and hue of the images only (`keras_fcn.data.augment.photometric_ranges`).
        blur: largest std in pixels of a random Gaussian blur of half the images, 0 off.
        shuffle: shuffle the pairs (reshuffled each epoch).
        seed: int seed of shuffling and augmentation: the same seed gives the same data.
        mask_format: "index" (single-channel or palette PNG: values/indices are the ids),
            "rgb" (colour-coded, needs `palette`) or "sbd_mat" (SBD `cls/*.mat`).
        palette: for "rgb": colours in class-id order, or a dict (r, g, b) -> class id.
        unknown_color: "error" or "ignore" (map to `ignore_label`) for colours not in palette.
        cache: True caches decoded images in memory, a string caches to that file path.
        deterministic: keep the element order fixed; by default it is kept unless the data is
            shuffled without a seed (so unshuffled data always comes in the order of `pairs`).
        validate: True checks every pair with `validate_pairs` first (decodes the images,
            checks sizes and mask values); "headers" reads only the image headers and skips
            the mask values; False skips it. The pipeline still checks the size of every
            element it reads, and its mask values unless `validate=True` already did.
        skip_bad: drop bad pairs (logged with their names) instead of raising.
        drop_remainder: drop the last incomplete batch.
        shuffle_buffer: shuffle buffer size (default: all pairs).
        mean_rgb: RGB padding colour (the dataset mean, zero after mean subtraction).
        color_jitter: deprecated (0.1.0), warns: True is `photometric=0.5` without the hue turn.

    Returns:
        `tf.data.Dataset` of (image float32 (B, H, W, 3) RGB 0..255, mask int32 (B, H, W)).

    Example:
        >>> from keras_fcn import datasets

        pairs, info = datasets.camvid_pairs("/data/camvid", "train")
        ds = make_dataset(pairs, num_classes=info.num_classes,
                          ignore_label=info.ignore_label, crop_size=(360, 480),
                          batch_size=4, flip=True, shuffle=True, seed=0)
    """
    _check_pads_with(ignore_label)
    if isinstance(num_classes, (int, np.integer)) and not isinstance(num_classes, bool):
        validate_ignore_label(ignore_label, int(num_classes))
    jitter = _jitter(color_jitter, photometric)
    pairs = _checked_pairs(pairs, num_classes=num_classes, ignore_label=ignore_label,
                           mask_format=mask_format, palette=palette,
                           unknown_color=unknown_color, validate=validate, skip_bad=skip_bad)
    if deterministic is None:
        deterministic = _default_deterministic(seed, shuffle)
    paths = tf.data.Dataset.from_tensor_slices(
        ([p[0] for p in pairs], [p[1] for p in pairs]))
    if shuffle and not cache:  # shuffle cheap paths rather than decoded images
        paths = paths.shuffle(len(pairs), seed=seed, reshuffle_each_iteration=True)
        shuffle = False
    # With validate=True every mask value was checked up front: no need to check it again.
    decode = make_decode_fn(num_classes=num_classes, ignore_label=ignore_label,
                            mask_format=mask_format, palette=palette, unknown_color=unknown_color,
                            check_values=validate is not True)
    decoded = paths.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    return _augment_and_batch(
        decoded, jitter, ignore_label=ignore_label,
        batch_size=batch_size, crop_size=crop_size, scale_range=scale_range, flip=flip,
        blur=blur, shuffle=shuffle, shuffle_buffer=shuffle_buffer or len(pairs), seed=seed,
        cache=cache, deterministic=deterministic, drop_remainder=drop_remainder,
        mean_rgb=mean_rgb, skip_bad=skip_bad)


def _checked_pairs(pairs, *, validate, skip_bad, **kwargs):
    """Validates pairs up front as asked; returns the pairs to use."""
    if validate not in (True, False, "headers"):
        raise ValueError(f"`validate` must be True, False or 'headers'. Received: "
                         f"validate={validate!r}")
    pairs = as_pairs(pairs)
    if not pairs:
        raise ValueError("No (image, mask) pairs given. Received: pairs=[]")
    if validate:
        full = validate is True
        pairs = validate_pairs(pairs, check_values=full, decode_images=full,
                               skip_bad=skip_bad, **kwargs).good
        if not pairs:
            raise ValueError("Every (image, mask) pair is bad; see the warnings above.")
    return pairs
