"""A NumPy input pipeline for semantic segmentation: `keras.utils.PyDataset` batches of
(image, mask) read from (image path, mask path) pairs, for training on any Keras backend.

`keras_fcn.data.make_dataset` is built on tf.data; this module needs only NumPy, PIL and
Keras, so a JAX or PyTorch machine without TensorFlow can train from files. The batches have
the same meaning as make_dataset's:

- `image`: float32 RGB in 0..255, shape (B, H, W, 3). No mean subtraction, no BGR swap.
- `mask`: int32 class ids, shape (B, H, W); the ignore label is kept as is.

Steps, in order: decode (PIL; masks with `keras_fcn.data.masks.read_mask`), check sizes and
mask values, resize to `image_size` (image bilinear antialiased, mask nearest, as the
`image_size` option of training), random scale (image bilinear, mask nearest), random crop
(padded with the mean colour and the ignore label), random flip, random blur, colour jitter
(`keras_fcn.data.jitter`; the image only, padding included). Resizing follows
`tf.image.resize` (half-pixel centres): at the same sizes, masks and randomly scaled images
equal the tf.data pipeline's exactly, `image_size` images up to float round-off. The random draws
are NumPy's: a seed gives reproducible data here, but not the tf.data pipeline's draws.
Image pixels are the same (JPEGs: both decode with libjpeg's accurate IDCT).

Example:

```python
pairs = [("a.jpg", "a.png"), ("b.jpg", "b.png")]
ds = make_pydataset(pairs, num_classes=21, crop_size=(320, 320), batch_size=8,
                    scale_range=(0.5, 2.0), flip=True, shuffle=True, seed=0, workers=4)
images, masks = ds[0]  # (8, 320, 320, 3) float32, (8, 320, 320) int32
model.fit(ds, epochs=10)
```
"""

import os

import keras
import numpy as np
from PIL import Image, ImageOps

from keras_fcn._checks import (
    as_range,
    as_size,
    check_bool,
    check_choice,
    check_int,
    check_positive_int,
)
from keras_fcn.data.jitter import (  # blur_radius, gaussian_blur: re-exported
    apply_jitter,
    blur_radius,
    gaussian_blur,
    jitter_factors,
    photometric_ranges,
)
from keras_fcn.data.masks import (
    MASK_FORMATS,
    UNKNOWN_COLOR_MODES,
    file_errors,
    bad_value_message,
    palette_to_table,
    read_mask,
    size_mismatch_message,
)
from keras_fcn.labels import IGNORE_LABEL, MEAN_RGB
from keras_fcn._pixels import validate_ignore_label

_SHUFFLE_STREAM, _ELEMENT_STREAM = 0, 1  # keep the two kinds of draws apart in the seeds


def read_image(path, exif_transpose=False):
    """Reads an image file (JPEG, PNG, BMP, GIF: the first frame) as uint8 RGB (H, W, 3).

    Grayscale images get three equal channels, alpha is dropped and palette images give their
    colours, as `tf.io.decode_image(..., channels=3)` does; 16-bit greyscale PNGs (and 32-bit
    integer grey images with values in 0..65535) keep their high byte (v >> 8, TensorFlow's
    scaling) instead of PIL's clipping. 32-bit float images (mode "F"), whose scale is unknown,
    are refused. JPEGs get libjpeg's accurate integer IDCT (TF's
    `dct_method="INTEGER_ACCURATE"`), as make_dataset decodes them
    (`keras_fcn.data.decode.decode_rgb`).

    Args:
        path: the image file.
        exif_transpose: apply the EXIF orientation (phone photos), so the pixels are the photo
            as viewers show it; the training pipelines leave it off, as TensorFlow's decoder does.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is damaged, not an image, 32-bit float or 32-bit integer past
            65535 (the message names it).

    Example:
        read_image("camvid/train/0001TP_006690.png").shape
    """
    path = os.fspath(path)
    with file_errors("image", path), Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened) if exif_transpose else opened
        mode = image.mode
        if mode != "F" and not mode.startswith("I"):
            return np.asarray(image.convert("RGB"))
        pixels = np.asarray(image)  # 16- or 32-bit grey ("I;16", "I"), or float ("F")
    if mode == "F":
        raise ValueError(f"image file '{path}' has 32-bit float pixels (mode F), which have no "
                         "known scale; save it as 8- or 16-bit RGB or grey")
    return _grey16_to_rgb(path, pixels)


def _grey16_to_rgb(path, array):
    """16-bit greyscale as TensorFlow's uint8 decoder reads it: the high byte (v >> 8), where
    PIL's convert("RGB") would clip every value above 255 to white."""
    array = array.astype(np.int64)
    if array.size and (array.min() < 0 or array.max() > 65535):
        raise ValueError(f"image file '{path}' has 32-bit integer pixels outside 0..65535 "
                         f"(min={int(array.min())}, max={int(array.max())}); save it as 8- or "
                         "16-bit")
    return np.repeat((array >> 8).astype(np.uint8)[..., None], 3, axis=-1)


def _bilinear_axis(array, size, axis):
    """Bilinear resize along `axis` as TensorFlow's `ResizeBilinear` computes it (half-pixel
    centres, clamped edges, `a + (b - a) * t` in float32)."""
    in_size = array.shape[axis]
    scale = np.float32(in_size) / np.float32(size)
    position = (np.arange(size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(position)
    lower = np.maximum(floor, 0).astype(np.int64)
    upper = np.minimum(np.ceil(position).astype(np.int64), in_size - 1)
    shape = [1] * array.ndim
    shape[axis] = size
    fraction = (position - floor).reshape(shape)
    low = np.take(array, lower, axis=axis)
    out = np.take(array, upper, axis=axis)  # low + (high - low) * t, in place: 1.25x faster
    out -= low
    out *= fraction
    out += low
    return out


def _antialiased_axis(array, size, axis):
    """Antialiased bilinear resize along `axis`: TensorFlow's `ScaleAndTranslate` with the
    triangle kernel (half-pixel centres; downscaling widens the kernel by the scale factor
    and averages; weights normalised over the pixels inside the image)."""
    in_size = array.shape[axis]
    inv_scale = np.float32(1.0) / (np.float32(size) / np.float32(in_size))
    kernel_scale = max(inv_scale, np.float32(1.0))
    sample = (np.arange(size, dtype=np.float32) + np.float32(0.5)) * inv_scale
    start = np.clip(np.ceil(sample - kernel_scale - 0.5), 0, in_size - 1).astype(np.int64)
    end = np.clip(np.floor(sample + kernel_scale - 0.5), 0, in_size - 1).astype(np.int64) + 1
    index = start[:, None] + np.arange(int((end - start).max()))
    inside = index < end[:, None]
    index = np.minimum(index, in_size - 1)
    distance = np.abs(index.astype(np.float32) + np.float32(0.5) - sample[:, None])
    weights = np.maximum(np.float32(0.0), 1 - distance * (np.float32(1.0) / kernel_scale))
    weights *= inside
    weights *= np.float32(1.0) / weights.sum(axis=1, keepdims=True, dtype=np.float32)
    shape = [1] * array.ndim
    shape[axis] = size
    out = np.zeros(array.shape[:axis] + (size,) + array.shape[axis + 1:], np.float32)
    for tap in range(index.shape[1]):
        out += np.take(array, index[:, tap], axis=axis) * weights[:, tap].reshape(shape)
    return out


def resize_image(image, size, antialias=False):
    """Resizes an (H, W, C) image to `size` (height, width), bilinear, as float32.

    Gives `tf.image.resize(image, size, "bilinear", antialias=antialias)`: the same values
    without antialiasing (random scaling), and up to float round-off (1e-4 of 255) with it
    (`image_size`); half-pixel centres, clamped edges, antialiased downscaling averages.

    Example:
        >>> resize_image(np.zeros((4, 6, 3), np.uint8), (2, 3)).shape
        (2, 3, 3)
    """
    image = np.asarray(image, np.float32)
    if antialias:
        return _antialiased_axis(_antialiased_axis(image, int(size[1]), 1), int(size[0]), 0)
    return _bilinear_axis(_bilinear_axis(image, int(size[1]), 1), int(size[0]), 0)


def _nearest_index(in_size, out_size):
    """`tf.image.resize(..., "nearest")`'s source index: floor((i + 0.5) * in / out), in
    float32 as TensorFlow computes it."""
    scale = np.float32(in_size) / np.float32(out_size)
    index = np.floor((np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale)
    return np.minimum(index.astype(np.int64), in_size - 1)


def resize_mask(mask, size):
    """Resizes an (H, W) mask to `size` (height, width) with nearest neighbour: the values
    stay labels. Same pixels as `tf.image.resize(mask[..., None], size, "nearest")`.

    Example:
        >>> resize_mask(np.array([[0, 1], [2, 3]]), (4, 4))[0].tolist()
        [0, 0, 1, 1]
    """
    mask = np.asarray(mask)
    rows = _nearest_index(mask.shape[0], int(size[0]))
    columns = _nearest_index(mask.shape[1], int(size[1]))
    return mask[rows[:, None], columns[None, :]]


class MissingPairFileError(FileNotFoundError, ValueError):
    """An image or mask file of the pairs does not exist: a FileNotFoundError, and a
    ValueError as it was before (callers that catch that keep working)."""


def _checked_pairs(pairs):
    """`pairs` as a list of (str, str) of existing files; raises naming the first bad one."""
    result = []
    for i, pair in enumerate(pairs):
        try:
            ok = not isinstance(pair, (str, bytes, os.PathLike)) and len(pair) == 2
        except TypeError:  # no len()
            ok = False
        if not ok:
            raise ValueError(f"Entry {i} is not an (image, mask) pair. Received: pair={pair!r}")
        image_path, mask_path = os.fspath(pair[0]), os.fspath(pair[1])
        if not os.path.isfile(image_path):
            raise MissingPairFileError(f"image file '{image_path}' does not exist")
        if not os.path.isfile(mask_path):
            raise MissingPairFileError(f"mask file '{mask_path}' does not exist (paired with "
                                       f"image '{image_path}')")
        result.append((image_path, mask_path))
    if not result:
        raise ValueError("No (image, mask) pairs given. Received: pairs=[]")
    return result


def _check_mean_rgb(mean_rgb):
    """The padding colour: `mean_rgb` as float32 (3,), by default the dataset mean
    `keras_fcn.labels.MEAN_RGB`."""
    if mean_rgb is None:
        mean_rgb = MEAN_RGB
    try:
        colour = np.asarray(mean_rgb, np.float32)
    except (TypeError, ValueError):
        colour = None
    if colour is None or colour.shape != (3,) or not np.all(np.isfinite(colour)):
        raise ValueError(f"`mean_rgb` must be three numbers (R, G, B). "
                         f"Received: mean_rgb={mean_rgb!r}")
    return colour


class SegmentationPyDataset(keras.utils.PyDataset):
    """Batches of (image float32 (B, H, W, 3) RGB 0..255, mask int32 (B, H, W)) read from
    (image path, mask path) pairs, for `Model.fit` on any Keras backend (no TensorFlow).

    The same options as `keras_fcn.data.make_dataset` mean the same here (see
    `make_pydataset` for the arguments). Every batch is a pure function of (`seed`, epoch,
    batch index): `on_epoch_end` moves to the next epoch's order and draws, and workers,
    threads or processes, give the same batches in any order. The draws are NumPy's, not
    those of the tf.data pipeline. Unlike make_dataset, batches of images of different sizes
    are not padded: give `crop_size` or `image_size` (or `batch_size=1`). Augmentation runs in
    make_dataset's order: scale, pad + crop, flip, `blur`, then `photometric` colour jitter
    (`keras_fcn.data.jitter`), which changes images only, never masks.

    Under `Model.fit`: Keras 3 calls `on_epoch_end` once before the first epoch too (so the
    first epoch of a fit reads epoch 1's draws), and `fit(shuffle=True)`, its default, also
    shuffles the order of the batches with Python's `random`; pass `shuffle=False` to fit to
    keep this dataset's (seeded) order.

    With ``workers > 1`` on JAX and PyTorch, fit a `keras_fcn.FCN` (its ``fit``), use
    `keras_fcn.training.fit`, or call `keras_fcn.models.build_before_fit(model, ds)` before
    ``model.fit`` of a model of your own: Keras 3 alone reads one batch through the worker
    queue to build the model and trains on the batches fetched ahead first, shifting every
    epoch by one batch (tests/test_arrays_fit_epochs.py).

    Attributes:
        pairs: the (image, mask) pairs, in input order.
        epoch: the epoch whose order and draws `__getitem__` gives (0 first).
        jitter_ranges: `photometric_ranges(photometric)`, None when `photometric` is 0.

    Example:
        ds = SegmentationPyDataset(pairs, num_classes=11, ignore_label=11, batch_size=4,
                                   crop_size=(224, 224), flip=True, photometric=0.5,
                                   shuffle=True, seed=0)
        images, masks = ds[0]
        images.shape, masks.shape
        model.fit(ds, epochs=5)
    """

    def __init__(self, pairs, *, num_classes, ignore_label=IGNORE_LABEL, batch_size=1,
                 crop_size=None, image_size=None, scale_range=None, flip=False, shuffle=False,
                 seed=None, drop_remainder=False, mask_format="index", palette=None,
                 unknown_color="error", mean_rgb=None, blur=0.0, photometric=0.0, workers=1,
                 use_multiprocessing=False, max_queue_size=10):
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.ignore_label = validate_ignore_label(check_int("ignore_label", ignore_label),
                                                  self.num_classes)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.crop_size = as_size("crop_size", crop_size)
        self.image_size = as_size("image_size", image_size)
        self.scale_range = as_range("scale_range", scale_range)
        self.flip = check_bool("flip", flip)
        if not (blur == 0 or blur >= 0.1):  # NaN and negatives fail both
            raise ValueError(f"`blur` must be >= 0.1 (0: off). Received: blur={blur!r}")
        self.blur = float(blur)
        # jitter_factors' ranges, None when off; NaN, negatives and > 1 raise naming the value
        self.jitter_ranges = None if photometric == 0 else photometric_ranges(photometric)
        self.photometric = 0.0 if self.jitter_ranges is None else float(photometric)
        self.shuffle = check_bool("shuffle", shuffle)
        self.drop_remainder = check_bool("drop_remainder", drop_remainder)
        seed = check_int("seed", seed, allow_none=True)
        self.mask_format = check_choice("mask_format", mask_format, MASK_FORMATS)
        self.unknown_color = check_choice("unknown_color", unknown_color, UNKNOWN_COLOR_MODES)
        if mask_format == "rgb":
            palette_to_table(palette, self.num_classes)  # a missing, bad or short palette
        self.palette = palette
        padded = self.crop_size is not None or mean_rgb is not None  # checked when given
        self.mean_rgb = _check_mean_rgb(mean_rgb) if padded else None
        if self.scale_range and self.batch_size > 1 and self.crop_size is None:
            raise ValueError(
                "Randomly scaled images differ in size, and batches are not padded: with "
                "`scale_range` and batch_size > 1, set `crop_size`. Received: "
                f"scale_range={scale_range!r}, batch_size={batch_size}, crop_size=None")
        self.pairs = _checked_pairs(pairs)
        if self.drop_remainder and len(self.pairs) < self.batch_size:
            raise ValueError(
                f"drop_remainder=True leaves no batch: {len(self.pairs)} pairs are fewer than "
                f"batch_size={self.batch_size}")
        # Unseeded data gets a random seed once, so that workers still agree on every batch.
        self.seed = (np.random.SeedSequence().entropy if seed is None else seed) % 2**64
        self.epoch = 0
        super().__init__(workers=workers, use_multiprocessing=use_multiprocessing,
                         max_queue_size=max_queue_size)

    def __len__(self):
        return self.num_batches

    @property
    def num_batches(self):
        """Batches per epoch (as `tf.data.Dataset.cardinality()` of make_dataset's)."""
        count, remainder = divmod(len(self.pairs), self.batch_size)
        return count + (1 if remainder and not self.drop_remainder else 0)

    def on_epoch_end(self):
        """Moves to the next epoch: a new order (with `shuffle`) and new random draws."""
        self.epoch += 1

    def epoch_order(self, epoch=None):
        """The indices into `pairs` in the order of `epoch` (default: the current one)."""
        epoch = self.epoch if epoch is None else epoch
        if not self.shuffle:
            return np.arange(len(self.pairs))
        rng = np.random.default_rng([self.seed, epoch, _SHUFFLE_STREAM])
        return rng.permutation(len(self.pairs))

    def __getitem__(self, index):
        return self.batch(index, self.epoch)

    def batch(self, index, epoch):
        """Batch `index` of `epoch` (its order and draws), whatever the current epoch."""
        if not 0 <= index < self.num_batches:
            raise IndexError(f"Batch index {index} is out of range: this dataset has "
                             f"{self.num_batches} batches.")
        chosen = self.epoch_order(epoch)[index * self.batch_size:(index + 1) * self.batch_size]
        elements = [self.element(int(i), epoch) for i in chosen]
        shapes = {mask.shape for _, mask in elements}
        if len(shapes) > 1:
            sizes = ", ".join(f"'{self.pairs[i][0]}' is {mask.shape[0]}x{mask.shape[1]}"
                              for i, (_, mask) in zip(chosen, elements))
            raise ValueError(
                f"Batch {index} has images of different sizes ({sizes}; HxW) and batches are "
                "not padded: set `crop_size` or `image_size`, or batch_size=1.")
        images = np.stack([image for image, _ in elements]).astype(np.float32, copy=False)
        masks = np.stack([mask for _, mask in elements]).astype(np.int32, copy=False)
        return images, masks

    def read(self, pair_index):
        """The checked (image uint8 (H, W, 3), mask int32 (H, W)) of `pairs[pair_index]`.

        Raises:
            ValueError: the sizes differ, or a mask value is neither a class nor the ignore
                label (the message names the file and the value).
        """
        image_path, mask_path = self.pairs[pair_index]
        image = read_image(image_path)
        mask = read_mask(mask_path, self.mask_format, self.palette, self.ignore_label,
                         self.unknown_color)
        if image.shape[:2] != mask.shape:
            raise ValueError(size_mismatch_message(image_path, image.shape[:2], mask_path,
                                                   mask.shape))
        message = bad_value_message(mask_path, mask, self.num_classes, self.ignore_label)
        if message:
            raise ValueError(message)
        return image, mask

    def element(self, pair_index, epoch=0):
        """`pairs[pair_index]` read, resized and augmented with the draws of `epoch`: (image
        float32 (H, W, 3), mask int32 (H, W))."""
        image, mask = self.read(pair_index)
        if self.image_size is not None:
            image = resize_image(image, self.image_size, antialias=True)
            mask = resize_mask(mask, self.image_size)
        if self.scale_range or self.crop_size or self.flip or self.blur or self.jitter_ranges:
            rng = np.random.default_rng([self.seed, epoch, _ELEMENT_STREAM, pair_index])
            image, mask = self._augment(image, mask, rng)
        return image.astype(np.float32, copy=False), mask

    def _augment(self, image, mask, rng):
        """Random scale, then pad + crop, then flip, then blur (make_dataset's order, which
        blurs before padding: here an image smaller than the crop is blurred padded), then
        colour jitter of the image, padding included (as make_dataset's fixed-size batches).
        The jitter draws come last: the other draws of a seed do not depend on it."""
        if self.scale_range is not None:
            scale = np.float32(rng.uniform(*self.scale_range))
            size = np.maximum(np.round(np.float32(mask.shape) * scale), 1).astype(int)
            image, mask = resize_image(image, size), resize_mask(mask, size)
        if self.crop_size is not None:
            image, mask = self._random_crop(image, mask, rng)
        if self.flip and rng.random() < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        if self.blur and rng.random() < 0.5:  # with probability 1/2, std in [0.1, blur]
            sigma = rng.uniform(0.1, self.blur)
            image = gaussian_blur(image, sigma, blur_radius(self.blur))
        if self.jitter_ranges is not None:
            image = apply_jitter(image, jitter_factors(rng, **self.jitter_ranges))
        return image, mask

    def _random_crop(self, image, mask, rng):
        """A uniform `crop_size` window; sides shorter than the crop are padded at the bottom
        and right first (mean colour, ignore label), and the window there starts at 0."""
        height, width = mask.shape
        pad_h, pad_w = max(self.crop_size[0] - height, 0), max(self.crop_size[1] - width, 0)
        if pad_h or pad_w:
            padded = np.empty((height + pad_h, width + pad_w, 3), np.float32)
            padded[...] = self.mean_rgb
            padded[:height, :width] = image
            image = padded
            mask = np.pad(mask, [(0, pad_h), (0, pad_w)], constant_values=self.ignore_label)
        top = rng.integers(0, mask.shape[0] - self.crop_size[0] + 1)
        left = rng.integers(0, mask.shape[1] - self.crop_size[1] + 1)
        window = np.s_[top:top + self.crop_size[0], left:left + self.crop_size[1]]
        return image[window], mask[window]


def make_pydataset(pairs, *, num_classes, ignore_label=IGNORE_LABEL, batch_size=1,
                   crop_size=None, image_size=None, scale_range=None, flip=False, shuffle=False,
                   seed=None, drop_remainder=False, mask_format="index", palette=None,
                   unknown_color="error", mean_rgb=None, blur=0.0, photometric=0.0,
                   **pydataset_kwargs):
    """Builds a `SegmentationPyDataset` of (image, mask) batches from (image, mask) file pairs:
    `keras_fcn.data.make_dataset` without TensorFlow, for training on JAX or PyTorch.

    Arguments are checked here, and that every file exists; each batch then checks its own
    files as it reads them (sizes, mask values), naming the bad file and value.

    Args:
        pairs: sequence of (image path, mask path). Images: JPEG/PNG/BMP/GIF.
        num_classes: number of classes; mask values must be in [0, num_classes) or ignore.
        ignore_label: void label kept as is in the output (255 for VOC, 11 for CamVid).
        batch_size: elements per batch.
        crop_size: int or (height, width) random crop, or None for whole images. Images
            smaller than the crop are padded (image with `mean_rgb`, mask with
            `ignore_label`).
        image_size: int or (height, width): resize every pair to it first (image bilinear
            antialiased, mask nearest), as training's `image_size` option; None keeps sizes.
        scale_range: (low, high) random scale factors, or None. With `batch_size > 1` it
            needs `crop_size` (batches are not padded).
        flip: random left-right flips.
        shuffle: shuffle the pairs (reshuffled each epoch).
        seed: int seed of shuffling and augmentation: the same seed gives the same data (the
            draws are NumPy's, not make_dataset's).
        drop_remainder: drop the last incomplete batch.
        mask_format: "index" (single-channel or palette PNG: values/indices are the ids),
            "rgb" (colour-coded, needs `palette`) or "sbd_mat" (SBD `cls/*.mat`).
        palette: for "rgb": colours in class-id order, or a dict (r, g, b) -> class id.
        unknown_color: "error" or "ignore" (map to `ignore_label`) for colours not in palette.
        mean_rgb: RGB padding colour of crops (default `keras_fcn.labels.MEAN_RGB`, the
            dataset mean, zero after mean subtraction).
        blur: largest std (pixels, >= 0.1) of a Gaussian blur applied to half the images, as
            make_dataset's `blur`; 0 (the default) is off.
        photometric: colour jitter strength in (0, 1], as make_dataset's `photometric`
            (`keras_fcn.data.jitter.photometric_ranges`: brightness, contrast, saturation,
            hue) of the images only, after the other steps; 0 (the default) is off.
        **pydataset_kwargs: `workers`, `use_multiprocessing`, `max_queue_size` of
            `keras.utils.PyDataset`.

    Returns:
        `SegmentationPyDataset` of (image float32 (B, H, W, 3) RGB 0..255, mask int32
        (B, H, W)).

    Example:
        >>> from keras_fcn import datasets

        pairs, info = datasets.camvid_pairs("/data/camvid", "train")
        ds = make_pydataset(pairs, num_classes=info.num_classes,
                            ignore_label=info.ignore_label, crop_size=(360, 480),
                            batch_size=4, flip=True, shuffle=True, seed=0, workers=2)
        model.fit(ds, epochs=10)
    """
    return SegmentationPyDataset(
        pairs, num_classes=num_classes, ignore_label=ignore_label, batch_size=batch_size,
        crop_size=crop_size, image_size=image_size, scale_range=scale_range, flip=flip,
        shuffle=shuffle, seed=seed, drop_remainder=drop_remainder, mask_format=mask_format,
        palette=palette, unknown_color=unknown_color, mean_rgb=mean_rgb, blur=blur,
        photometric=photometric, **pydataset_kwargs)
