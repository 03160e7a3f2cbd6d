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

import concurrent.futures
import contextlib
import dataclasses
import logging
import os

import numpy as np
import tensorflow as tf

from keras_fcn._checks import check_choice

IGNORE_LABEL = 255
# The Caffe VGG16 mean (104.00699, 116.66877, 122.67892) is BGR; this is the same mean in RGB.
MEAN_RGB = (122.67892, 116.66877, 104.00699)
MASK_FORMATS = ("index", "rgb", "sbd_mat")
UNKNOWN_COLOR_MODES = ("error", "ignore")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_PALETTE_COLOR_TYPE = b"\x03"
_JPEG_EOI = b"\xff\xd9"
_PAD_SENTINEL = -1.0  # images are 0..255, so -1 marks padded pixels until they get the mean
_PROGRESS_MIN_FILES = 200

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------


def _as_size(name, value):
    """Returns `value` as a (height, width) tuple of ints, or None."""
    if value is None:
        return None
    if isinstance(value, int):
        value = (value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 2 or min(value) < 1:
        raise ValueError(
            f"`{name}` must be an int or a (height, width) pair of positive ints. "
            f"Received: {name}={value!r}"
        )
    return value


def _as_range(name, value):
    """Returns `value` as a (low, high) float pair with 0 < low <= high, or None."""
    if value is None:
        return None
    low, high = (float(v) for v in value)
    if not 0 < low <= high:
        raise ValueError(
            f"`{name}` must be a (low, high) pair with 0 < low <= high. Received: {name}={value!r}"
        )
    return low, high


def _as_pairs(pairs):
    """Returns `pairs` as a list of (str, str), raising on entries that are not pairs."""
    result = []
    for i, pair in enumerate(pairs):
        if isinstance(pair, (str, bytes, os.PathLike)) or len(pair) != 2:
            raise ValueError(
                f"Entry {i} is not an (image, mask) pair: it is unpaired. Received: pair={pair!r}"
            )
        result.append((os.fspath(pair[0]), os.fspath(pair[1])))
    return result


# --------------------------------------------------------------------------------------------
# Palettes (colour <-> class id)
# --------------------------------------------------------------------------------------------


def palette_to_table(palette):
    """Turns a colour palette into sorted lookup arrays.

    Args:
        palette: either a sequence of (r, g, b) colours where the position is the class id, an
            array of shape (K, 3), or a dict mapping (r, g, b) to a class id.

    Returns:
        `(codes, labels)`: int32 arrays, `codes` sorted, with `code = r * 65536 + g * 256 + b`.

    Example:
        >>> codes, labels = palette_to_table([(0, 0, 0), (128, 0, 0)])
        >>> codes.tolist(), labels.tolist()
        ([0, 8388608], [0, 1])
    """
    if palette is None:
        raise ValueError("mask_format='rgb' needs a `palette`. Received: palette=None")
    if isinstance(palette, dict):
        items = [(tuple(int(c) for c in colour), int(label)) for colour, label in palette.items()]
    else:
        items = [(tuple(int(c) for c in colour), i) for i, colour in enumerate(np.asarray(palette))]
    for colour, _ in items:
        if len(colour) != 3 or min(colour) < 0 or max(colour) > 255:
            raise ValueError(f"Palette colours must be (r, g, b) in 0..255. Received: {colour!r}")
    codes = np.array([_colour_code(c) for c, _ in items], np.int32)
    labels = np.array([label for _, label in items], np.int32)
    if len(np.unique(codes)) != len(codes):
        raise ValueError(f"Palette has a colour twice. Received: palette={palette!r}")
    order = np.argsort(codes)
    return codes[order], labels[order]


def _colour_code(colour):
    r, g, b = colour
    return int(r) * 65536 + int(g) * 256 + int(b)


def _map_colours_np(rgb, codes, labels, unknown_label):
    """Maps an (H, W, 3) uint8 array to class ids; returns (labels, known) arrays."""
    rgb = rgb.astype(np.int32)
    flat = rgb[..., 0] * 65536 + rgb[..., 1] * 256 + rgb[..., 2]
    index = np.clip(np.searchsorted(codes, flat), 0, len(codes) - 1)
    known = codes[index] == flat
    return np.where(known, labels[index], unknown_label), known


# --------------------------------------------------------------------------------------------
# Reading masks with NumPy / PIL (validation, palette PNGs, SBD .mat)
# --------------------------------------------------------------------------------------------


def _to_str(path):
    return path.decode() if isinstance(path, bytes) else os.fspath(path)


# Errors of opening the path itself: their message already names the file, keep their type.
_PATH_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


@contextlib.contextmanager
def _file_errors(kind, path):
    """Re-raises a decoder's error on a damaged file as a ValueError naming the file.

    PIL raises many types for bad files: OSError ("image file is truncated"), ValueError
    ("Truncated IHDR chunk"), SyntaxError, and `DecompressionBombError`, which is neither an
    OSError nor a ValueError; none of their messages names the file.
    """
    try:
        yield
    except _PATH_ERRORS:
        raise
    except Exception as error:  # noqa: BLE001 - see the docstring
        raise ValueError(f"{kind} file '{_to_str(path)}' is unreadable: "
                         f"{type(error).__name__}: {error}") from error


def read_index_png(path):
    """Reads a single-channel or palette ("P" mode) mask as its raw values.

    For palette PNGs (as VOC SegmentationClass) the palette *indices* are the labels;
    `tf.io.decode_png` would return the palette colours instead.

    Args:
        path: mask file path.

    Returns:
        uint8 (or int32 for 16-bit files) array of shape (H, W).

    Example:
        >>> read_index_png("VOC2012/SegmentationClass/2007_000032.png").max()
        255
    """
    from PIL import Image

    path = _to_str(path)
    with _file_errors("mask", path), Image.open(path) as mask:
        mode = mask.mode
        if mode in ("P", "L", "I", "I;16"):
            array = np.asarray(mask)
    if mode not in ("P", "L", "I", "I;16"):
        raise ValueError(
            f"mask '{path}' has PIL mode {mode!r}; index masks must be single-channel "
            f"or palette PNGs (use mask_format='rgb' for colour-coded masks)"
        )
    return array if array.dtype == np.uint8 else array.astype(np.int32)


def read_sbd_mat(path):
    """Reads the class mask `GTcls.Segmentation` of an SBD `cls/*.mat` file.

    Args:
        path: path of the `.mat` file. Needs scipy (imported only here).

    Returns:
        uint8 array of shape (H, W).
    """
    try:
        import scipy.io
    except ImportError as error:  # pragma: no cover - scipy is a dev dependency
        raise ImportError("Reading SBD .mat masks needs scipy: `pip install scipy`.") from error
    path = _to_str(path)
    with _file_errors("mask", path):
        content = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    if "GTcls" not in content:
        raise ValueError(f"mask '{path}' has no `GTcls` entry; is it an SBD cls/*.mat file?")
    return np.asarray(content["GTcls"].Segmentation, np.uint8)


def read_mask(path, mask_format="index", palette=None, ignore_label=IGNORE_LABEL,
              unknown_color="error"):
    """Reads one mask file into class ids with NumPy/PIL (the pipeline itself uses TF ops).

    Args:
        path: mask file path.
        mask_format: "index" (single-channel or palette PNG), "rgb" (colour-coded, needs
            `palette`) or "sbd_mat" (SBD `cls/*.mat`).
        palette: for "rgb": colours by class id, or a dict colour -> class id.
        ignore_label: label given to unknown colours when `unknown_color="ignore"`.
        unknown_color: "error" or "ignore", for colours not in the palette.

    Returns:
        int32 array of shape (H, W).

    Raises:
        ValueError: the file is damaged or not a mask (the message names it).
        FileNotFoundError: the file does not exist.

    Example:
        >>> read_mask("camvid/trainannot/0001TP_006690.png").shape
        (360, 480)
    """
    check_choice("mask_format", mask_format, MASK_FORMATS)
    if mask_format == "index":
        return read_index_png(path).astype(np.int32)
    if mask_format == "sbd_mat":
        return read_sbd_mat(path).astype(np.int32)
    from PIL import Image

    codes, labels = palette_to_table(palette)
    with _file_errors("mask", path), Image.open(_to_str(path)) as image:
        rgb = np.asarray(image.convert("RGB"))
    mask, known = _map_colours_np(rgb, codes, labels, ignore_label)
    if unknown_color == "error" and not known.all():
        raise ValueError(_unknown_colour_message(path, rgb, known))
    return mask.astype(np.int32)


# --------------------------------------------------------------------------------------------
# Error messages (shared by `validate_pairs` and the in-pipeline checks)
# --------------------------------------------------------------------------------------------


def _bad_value_message(path, mask, num_classes, ignore_label):
    """Returns a message naming the first invalid mask value, or None if all are valid."""
    mask = np.asarray(mask)
    bad = (mask < 0) | (mask >= num_classes)
    bad &= mask != ignore_label
    if not bad.any():
        return None
    y, x = (int(i) for i in np.argwhere(bad)[0])
    return (
        f"mask '{_to_str(path)}' has value {int(mask[y, x])} at ({y}, {x}); "
        f"expected 0..{num_classes - 1} or ignore label {ignore_label}"
    )


def _unknown_colour_message(path, rgb, known):
    y, x = (int(i) for i in np.argwhere(~known)[0])
    colour = tuple(int(c) for c in rgb[y, x])
    return (
        f"mask '{_to_str(path)}' has colour {colour} at ({y}, {x}) that is not in the palette; "
        f"pass unknown_color='ignore' to map unknown colours to the ignore label"
    )


def _size_mismatch_message(image_path, image_hw, mask_path, mask_hw):
    return (
        f"image '{_to_str(image_path)}' is {image_hw[0]}x{image_hw[1]} (HxW) but mask "
        f"'{_to_str(mask_path)}' is {mask_hw[0]}x{mask_hw[1]}"
    )


# --------------------------------------------------------------------------------------------
# Up-front validation
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ValidationReport:
    """Result of `validate_pairs`.

    Attributes:
        good: the valid (image, mask) pairs, in input order.
        bad: list of ((image, mask), message) for the invalid pairs.
    """

    good: list
    bad: list

    @property
    def num_bad(self):
        return len(self.bad)

    def summary(self, max_items=10):
        """Returns a human readable summary naming (up to `max_items`) bad pairs."""
        lines = [f"{len(self.bad)} bad pair(s) of {len(self.good) + len(self.bad)}:"]
        lines += [f"  {message}" for _, message in self.bad[:max_items]]
        if len(self.bad) > max_items:
            lines.append(f"  ... and {len(self.bad) - max_items} more")
        return "\n".join(lines)


def _image_problem(path, decode):
    """Checks that an image is complete; returns ((H, W), None) or (None, message).

    PIL reads the header first (it rejects non-images and decompression bombs without
    decoding). With `decode`, the image is then decoded with `tf.io.decode_image`, the decoder
    of the pipeline itself, so an accepted image cannot fail mid-epoch (JPEGs with damaged
    scan data have a valid header and end marker). Without it, only PNG CRCs and the JPEG end
    marker are checked.
    """
    from PIL import Image

    if not os.path.isfile(path):
        return None, f"image file '{path}' does not exist"
    try:
        with Image.open(path) as image:
            size, fmt = image.size, image.format
            if fmt == "PNG" and not decode:
                image.verify()  # reads every chunk and its CRC: finds truncated files
        if fmt == "JPEG" and not _jpeg_has_end_marker(path):
            return None, f"image file '{path}' is truncated (no JPEG end marker)"
        if fmt not in ("PNG", "JPEG") and not decode:
            with Image.open(path) as image:
                image.load()
    except Exception as error:  # PIL raises many types for bad files
        return None, f"image file '{path}' is unreadable: {error}"
    if decode:
        with open(path, "rb") as file:
            content = file.read()
        try:
            shape = tf.io.decode_image(content, channels=3, expand_animations=False).shape
        except (tf.errors.OpError, ValueError) as error:
            return None, f"image file '{path}' cannot be decoded: {_op_error_text(error)}"
        return (int(shape[0]), int(shape[1])), None
    return (size[1], size[0]), None


def _op_error_text(error):
    """The first line of a TF error's message (without the op and node details)."""
    text = error.message if isinstance(error, tf.errors.OpError) else str(error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def _jpeg_has_end_marker(path, tail_bytes=4096):
    with open(path, "rb") as file:
        file.seek(0, os.SEEK_END)
        file.seek(max(0, file.tell() - tail_bytes))
        return _JPEG_EOI in file.read()


def _pair_problem(pair, num_classes, ignore_label, mask_format, palette, unknown_color,
                  check_values, decode_images):
    """Returns None if `pair` is valid, else a message naming the file and the bad value."""
    image_path, mask_path = pair
    image_hw, message = _image_problem(image_path, decode_images)
    if message:
        return message
    if not os.path.isfile(mask_path):
        return f"mask file '{mask_path}' does not exist (paired with image '{image_path}')"
    try:
        mask = read_mask(mask_path, mask_format, palette, ignore_label, unknown_color)
    except Exception as error:  # noqa: BLE001 - reported with the file name, never raised
        message = str(error)
        return message if mask_path in message else (
            f"mask file '{mask_path}' is unreadable: {type(error).__name__}: {message}")
    if mask.shape != image_hw:
        return _size_mismatch_message(image_path, image_hw, mask_path, mask.shape)
    if check_values:
        return _bad_value_message(mask_path, mask, num_classes, ignore_label)
    return None


def validate_pairs(pairs, *, num_classes, ignore_label=IGNORE_LABEL, mask_format="index",
                   palette=None, unknown_color="error", check_values=True, decode_images=True,
                   skip_bad=False, num_workers=4, verbose="auto"):
    """Checks (image, mask) pairs before training, and names every bad file.

    Checks: entries are pairs, files exist, images decode with `tf.io.decode_image` (the
    pipeline's decoder; with `decode_images=False` only their headers, PNG CRCs and JPEG end
    marker are read), masks decode in `mask_format` (with PIL), image and mask sizes agree
    and (with `check_values`) every mask value is in [0, num_classes) or the ignore label.

    Args:
        pairs: sequence of (image path, mask path).
        num_classes: number of classes.
        ignore_label: the void label, allowed in masks.
        mask_format: "index", "rgb" or "sbd_mat" (see `read_mask`).
        palette: colour palette for mask_format="rgb".
        unknown_color: "error" or "ignore" for colours not in the palette.
        check_values: check every mask value.
        decode_images: decode every image (about 3 ms for a 480x360 PNG, on `num_workers`
            threads); False reads headers only, which misses JPEGs with damaged scan data.
        skip_bad: if False, raise `ValueError` on the first bad pair; if True, return the
            report (and log a warning) so the caller can drop the bad pairs.
        num_workers: threads used to read files.
        verbose: show a progress bar; "auto" shows it for 200 files or more.

    Returns:
        A `ValidationReport` with `.good` pairs and `.bad` ((pair, message) list).

    Example:
        >>> report = validate_pairs(pairs, num_classes=21, skip_bad=True)
        >>> report.num_bad, report.bad[0][1]
        (1, "mask 'x.png' has value 37 at (12, 40); expected 0..20 or ignore label 255")
    """
    check_choice("mask_format", mask_format, MASK_FORMATS)
    check_choice("unknown_color", unknown_color, UNKNOWN_COLOR_MODES)
    pairs = _as_pairs(pairs)
    if mask_format == "rgb":
        palette_to_table(palette)  # raises early on a bad palette
    check = lambda pair: _pair_problem(  # noqa: E731
        pair, num_classes, ignore_label, mask_format, palette, unknown_color, check_values,
        decode_images)
    problems = _run_with_progress(check, pairs, num_workers, verbose)
    report = ValidationReport(
        good=[p for p, m in zip(pairs, problems) if m is None],
        bad=[(p, m) for p, m in zip(pairs, problems) if m is not None],
    )
    if report.bad and not skip_bad:
        more = f" (and {report.num_bad - 1} more bad pairs)" if report.num_bad > 1 else ""
        raise ValueError(report.bad[0][1] + more)
    if report.bad:
        logger.warning("Skipping %s", report.summary())
    return report


def _run_with_progress(fn, items, num_workers, verbose):
    """Maps `fn` over `items` with threads, with an optional progress bar; keeps the order."""
    show = len(items) >= _PROGRESS_MIN_FILES if verbose == "auto" else bool(verbose)
    bar = None
    if show:
        import keras

        bar = keras.utils.Progbar(len(items), unit_name="pair")
    results = []
    with concurrent.futures.ThreadPoolExecutor(max(1, num_workers)) as pool:
        for i, result in enumerate(pool.map(fn, items)):
            results.append(result)
            if bar is not None and ((i + 1) % 50 == 0 or i + 1 == len(items)):
                bar.update(i + 1)
    return results


# --------------------------------------------------------------------------------------------
# In-graph decoding and checks
# --------------------------------------------------------------------------------------------


def _fail_unless(condition, error_fn, args, value):
    """Returns `value`; if `condition` is False, raises `error_fn(*args)` (a ValueError).

    The Python error function only runs on the failure path, so valid data costs one
    reduction; its message (naming the file and value) ends up in the TF error.
    """

    def fail():
        raised = tf.numpy_function(error_fn, args, tf.bool, stateful=True)
        with tf.control_dependencies([raised]):
            return tf.identity(value)

    return tf.cond(condition, lambda: tf.identity(value), fail)


def _raise_channels(path, channels):
    raise ValueError(
        f"mask '{_to_str(path)}' has {int(channels)} channels; index masks must be "
        f"single-channel or palette PNGs (use mask_format='rgb' for colour-coded masks)"
    )


def _is_palette_png(data):
    header = tf.strings.substr(data, 0, 26)  # signature (8) + IHDR up to the colour type byte
    header = tf.strings.join([header, tf.constant(b"\0" * 26)])
    signature_ok = tf.equal(tf.strings.substr(header, 0, 8), _PNG_SIGNATURE)
    return tf.logical_and(signature_ok,
                          tf.equal(tf.strings.substr(header, 25, 1), _PNG_PALETTE_COLOR_TYPE))


def _decode_index_mask(path, data):
    """Decodes an index mask: palette PNGs through PIL (indices), others with TF ops."""

    def palette_indices():
        return tf.numpy_function(lambda p: read_index_png(p).astype(np.int32), [path], tf.int32)

    def single_channel():
        mask = tf.io.decode_image(data, channels=0, expand_animations=False)
        channels = tf.shape(mask)[-1]
        mask = _fail_unless(tf.equal(channels, 1), _raise_channels, [path, channels], mask)
        return tf.cast(mask[..., 0], tf.int32)

    mask = tf.cond(_is_palette_png(data), palette_indices, single_channel)
    mask.set_shape([None, None])
    return mask


def _decode_rgb_mask(path, data, codes, labels, unknown_label, unknown_color):
    """Maps a colour-coded mask to class ids with a sorted-palette lookup."""
    rgb = tf.io.decode_image(data, channels=3, expand_animations=False)
    rgb.set_shape([None, None, 3])
    rgb32 = tf.cast(rgb, tf.int32)
    flat = tf.reshape(rgb32[..., 0] * 65536 + rgb32[..., 1] * 256 + rgb32[..., 2], [-1])
    index = tf.clip_by_value(tf.searchsorted(codes, flat), 0, len(codes) - 1)
    known = tf.equal(tf.gather(codes, index), flat)
    mask = tf.where(known, tf.gather(labels, index), unknown_label)
    mask = tf.reshape(mask, tf.shape(rgb)[:2])
    if unknown_color == "error":
        def raise_unknown(p, colours, ok):
            raise ValueError(_unknown_colour_message(p, colours, ok))

        known_hw = tf.reshape(known, tf.shape(rgb)[:2])
        mask = _fail_unless(tf.reduce_all(known), raise_unknown, [path, rgb, known_hw], mask)
    return mask


def _decode_sbd_mask(path):
    mask = tf.numpy_function(lambda p: read_sbd_mat(p).astype(np.int32), [path], tf.int32)
    mask.set_shape([None, None])
    return mask


def _check_values(path, mask, num_classes, ignore_label):
    valid = tf.logical_or(tf.logical_and(mask >= 0, mask < num_classes),
                          tf.equal(mask, ignore_label))

    def raise_bad_value(p, m):
        raise ValueError(_bad_value_message(p, m, num_classes, ignore_label))

    return _fail_unless(tf.reduce_all(valid), raise_bad_value, [path, mask], mask)


def _check_same_size(image_path, image, mask_path, mask):
    image_hw, mask_hw = tf.shape(image)[:2], tf.shape(mask)

    def raise_mismatch(ip, ihw, mp, mhw):
        raise ValueError(_size_mismatch_message(ip, tuple(ihw), mp, tuple(mhw)))

    return _fail_unless(tf.reduce_all(tf.equal(image_hw, mask_hw)), raise_mismatch,
                        [image_path, image_hw, mask_path, mask_hw], mask)


def _mask_storage_dtype(num_classes, ignore_label):
    """uint8 keeps cached masks 4x smaller when every label fits in a byte."""
    fits = num_classes <= 256 and 0 <= ignore_label <= 255
    return tf.uint8 if fits else tf.int32


def make_decode_fn(*, num_classes, ignore_label=IGNORE_LABEL, mask_format="index", palette=None,
                   unknown_color="error", check_values=True):
    """Returns `fn(image_path, mask_path) -> (image uint8 (H, W, 3), mask (H, W))`.

    The function decodes both files and checks, in the graph, that sizes agree and that mask
    values are valid; failures raise an error naming the file and the value.

    Args:
        num_classes, ignore_label, mask_format, palette, unknown_color: see `make_dataset`.
        check_values: check mask values in the graph. `make_dataset` turns this off when
            `validate_pairs` has already checked the values of every mask (`validate=True`);
            sizes (and unknown colours with `unknown_color="error"`) are always checked.

    Returns:
        A function usable in `tf.data.Dataset.map`. Masks are uint8 when all labels fit in a
        byte (int32 otherwise), to keep caches small; `make_dataset` casts them to int32.
    """
    check_choice("mask_format", mask_format, MASK_FORMATS)
    check_choice("unknown_color", unknown_color, UNKNOWN_COLOR_MODES)
    storage = _mask_storage_dtype(num_classes, ignore_label)
    if mask_format == "rgb":
        codes, labels = (tf.constant(a) for a in palette_to_table(palette))

    def decode(image_path, mask_path):
        image = tf.io.decode_image(tf.io.read_file(image_path), channels=3,
                                   expand_animations=False)
        image.set_shape([None, None, 3])
        if mask_format == "index":
            mask = _decode_index_mask(mask_path, tf.io.read_file(mask_path))
        elif mask_format == "rgb":
            mask = _decode_rgb_mask(mask_path, tf.io.read_file(mask_path), codes, labels,
                                    ignore_label, unknown_color)
        else:
            mask = _decode_sbd_mask(mask_path)
        mask = _check_same_size(image_path, image, mask_path, mask)
        if check_values:
            mask = _check_values(mask_path, mask, num_classes, ignore_label)
        return image, tf.cast(mask, storage)

    return decode


# --------------------------------------------------------------------------------------------
# Augmentation (stateless: one seed per element, so results do not depend on parallelism)
# --------------------------------------------------------------------------------------------
#
# Speed notes (480x360 on a CPU, see benchmarks/input_pipeline.py): crops and flips run on
# the uint8 image before the float conversion when there is no rescaling, flips use
# `tf.reverse` (a strided slice with step -1 is ~10x slower), padding with the mean is only
# built when an element is smaller than the crop (`tf.where` over a whole float image costs
# as much as a bilinear resize), and colour jitter is one per-pixel 3x3 affine map applied to
# whole batches. The outputs are the same as applying the steps one by one in the order
# scale, pad, crop, flip, jitter (jitter up to float round-off).


def _op_seed(seed, op):
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
    """
    size = _scale_size(mask, seed, scale_range)
    image = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear")
    mask = tf.image.resize(mask[..., None], size, method="nearest")[..., 0]
    return image, mask


def _pad_with_mean(image, mask, size, ignore_label, mean_rgb, pad_left=None):
    """Pads float `image` with `mean_rgb` and `mask` with `ignore_label` up to at least `size`:
    at the bottom, and on the right (or on the left where the bool `pad_left` is True).

    The padding blocks are only built when needed: elements already large enough pass through.
    """
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


def pad_to_size(image, mask, size, ignore_label, mean_rgb=MEAN_RGB):
    """Pads bottom/right up to at least `size`: image with `mean_rgb`, mask with ignore.

    Args:
        image: float32 (H, W, 3). mask: (H, W). size: (height, width).
        ignore_label: mask padding value. mean_rgb: image padding colour.

    Returns:
        (image, mask) of at least `size`; already larger sides are unchanged.
    """
    return _pad_with_mean(tf.cast(image, tf.float32), mask, size, ignore_label, mean_rgb)


def fill_padding(image, mean_rgb=MEAN_RGB):
    """Replaces sentinel (-1) pixels by the mean colour (exactly, no round-off)."""
    mean = tf.constant(mean_rgb, tf.float32)
    return tf.where(image < 0, mean, image)


def _crop_window(shape, seed, size):
    """(top, left, height, width) of the random crop of a `shape` image padded to `size`.

    Same draws as cropping the padded image: a side shorter than the crop gets offset 0.
    """
    top = tf.random.stateless_uniform([], _op_seed(seed[0], 11), 0,
                                      tf.maximum(shape[0] - size[0], 0) + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform([], _op_seed(seed[0], 12), 0,
                                       tf.maximum(shape[1] - size[1], 0) + 1, dtype=tf.int32)
    return top, left, tf.minimum(shape[0], size[0]), tf.minimum(shape[1], size[1])


def random_crop(image, mask, seed, size):
    """Crops the same random `size` window of an image and mask at least that big."""
    top, left, height, width = _crop_window(tf.shape(mask), seed, size)
    image = image[top:top + height, left:left + width]
    mask = mask[top:top + height, left:left + width]
    return tf.ensure_shape(image, [size[0], size[1], 3]), tf.ensure_shape(mask, list(size))


def _flip_draw(seed):
    return tf.random.stateless_uniform([], seed) < 0.5


def _flip_if(flip, image, mask):
    return (tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: tf.identity(image)),
            tf.cond(flip, lambda: tf.reverse(mask, [1]), lambda: tf.identity(mask)))


def random_flip(image, mask, seed):
    """Flips image and mask left-right together with probability 1/2."""
    return _flip_if(_flip_draw(seed), image, mask)


_GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def _jitter_factors(seed, brightness=32.0, contrast=(0.75, 1.25), saturation=(0.75, 1.25)):
    """Returns float32 [3]: (brightness shift, contrast factor, saturation factor)."""
    uniform = lambda op, low, high: tf.random.stateless_uniform(  # noqa: E731
        [], _op_seed(seed[0], op), low, high)
    return tf.stack([uniform(21, -brightness, brightness), uniform(22, *contrast),
                     uniform(23, *saturation)])


def _apply_jitter(images, factors):
    """Colour jitter of a batch `images` (B, H, W, 3) with `factors` (B, 3).

    Per image, brightness `b`, contrast `c` (about the mean `m` after the shift) and saturation
    `s` (about the gray level `g = w . x`) compose into one affine map of each pixel `x`:
        out = s c x + (1 - s) c (w . x) 1 + (c b + (1 - c) m) (s + (1 - s) sum(w)) 1,
    so the image is read once for the mean and once for a (3 x 3) matmul, then clipped.
    """
    shift, contrast, saturation = (factors[:, i] for i in range(3))
    weights = tf.constant(_GRAY_WEIGHTS, tf.float32)
    mean = tf.reduce_mean(images, axis=[1, 2, 3]) + shift
    offset = (contrast * shift + (1.0 - contrast) * mean) * (
        saturation + (1.0 - saturation) * tf.reduce_sum(weights))
    eye = tf.eye(3, dtype=tf.float32)[None]
    matrix = (saturation * contrast)[:, None, None] * eye + (
        ((1.0 - saturation) * contrast)[:, None, None] * weights[None, :, None]
        * tf.ones([1, 1, 3], tf.float32))
    shape = tf.shape(images)
    pixels = tf.reshape(images, [shape[0], -1, 3])
    out = tf.matmul(pixels, matrix) + offset[:, None, None]
    return tf.reshape(tf.clip_by_value(out, 0.0, 255.0), shape)


def random_color_jitter(image, seed, brightness=32.0, contrast=(0.75, 1.25), saturation=(0.75, 1.25)):
    """Random brightness/contrast/saturation of a 0..255 RGB image (never the mask).

    In order: add a shift in [-brightness, brightness]; scale about the image mean by a
    contrast factor; scale about the gray level (0.299 R + 0.587 G + 0.114 B) by a saturation
    factor; clip to 0..255 (computed as one affine map per pixel).

    Args:
        image: float32 (H, W, 3) in 0..255. seed: int64 [2] stateless seed.
        brightness: max absolute shift. contrast, saturation: factor ranges.

    Returns:
        The jittered image, clipped to 0..255.
    """
    factors = _jitter_factors(seed, brightness, contrast, saturation)
    return _apply_jitter(tf.cast(image, tf.float32)[None], factors[None])[0]


def _make_element_fn(*, ignore_label, crop_size, scale_range, flip, mean_rgb):
    """`fn((image, mask), seed) -> (image float32, mask)`: scale, pad + crop, flip.

    Integer masks keep their dtype (uint8 masks stay small until batched).
    """
    crop_size = _as_size("crop_size", crop_size)
    scale_range = _as_range("scale_range", scale_range)

    def element_fn(element, seed):
        image, mask = element
        if scale_range is not None:  # bilinear output is float32
            image, mask = random_scale(image, mask, _op_seed(seed, 1), scale_range)
        flipped = _flip_draw(_op_seed(seed, 3)) if flip else None
        if crop_size is not None:
            top, left, height, width = _crop_window(tf.shape(mask), _op_seed(seed, 2),
                                                    crop_size)
            image = image[top:top + height, left:left + width]
            mask = mask[top:top + height, left:left + width]
        if flip:  # on uint8 when not rescaled: 4x less memory to move
            image, mask = _flip_if(flipped, image, mask)
        image = tf.cast(image, tf.float32)
        if crop_size is not None:
            # Padding goes where pad-then-crop-then-flip would have put it.
            image, mask = _pad_with_mean(image, mask, crop_size, ignore_label, mean_rgb,
                                         pad_left=flipped)
            image = tf.ensure_shape(image, [crop_size[0], crop_size[1], 3])
            mask = tf.ensure_shape(mask, list(crop_size))
        return image, mask

    return element_fn


def make_augment_fn(*, ignore_label=IGNORE_LABEL, crop_size=None, scale_range=None, flip=False,
                    color_jitter=False, mean_rgb=MEAN_RGB):
    """Returns `fn((image, mask), seed) -> (image float32, mask int32)` applying, in order,
    random scale, pad + random crop, flip and colour jitter (each only if enabled)."""
    element_fn = _make_element_fn(ignore_label=ignore_label, crop_size=crop_size,
                                  scale_range=scale_range, flip=flip, mean_rgb=mean_rgb)

    def augment(element, seed):
        image, mask = element_fn(element, seed)
        if color_jitter:
            image = random_color_jitter(image, _op_seed(seed, 4))
        return image, tf.cast(mask, tf.int32)

    return augment


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------


def _default_deterministic(seed, shuffle):
    """Order may only be traded for speed where nobody can rely on it: unseeded shuffling."""
    return seed is not None or not shuffle


def prepare_dataset(decoded, *, ignore_label=IGNORE_LABEL, batch_size=1, crop_size=None,
                    scale_range=None, flip=False, color_jitter=False, shuffle=False,
                    shuffle_buffer=None, seed=None, cache=False, deterministic=None,
                    drop_remainder=False, mean_rgb=MEAN_RGB, skip_errors=False):
    """Augments, batches and prefetches a dataset of decoded `(image, mask)` elements.

    `make_dataset` calls this after decoding files; use it directly for in-memory data or TFDS
    (see `keras_fcn.datasets.tfds_segmentation`).

    Args:
        decoded: `tf.data.Dataset` of (image (H, W, 3) uint8/float 0..255 RGB, mask (H, W)).
            Keep images uint8 (and masks uint8 when labels fit): the cache is then 4x smaller
            and crops/flips move less memory.
        shuffle_buffer: shuffle buffer size (default: the dataset size, or 1000 if unknown).
        skip_errors: drop elements whose decoding or checks fail (logged as warnings).
        Other arguments: see `make_dataset`.

    Returns:
        `tf.data.Dataset` of (image float32, mask int32), batched.

    Example:
        >>> ds = tf.data.Dataset.from_tensor_slices((images, masks))
        >>> ds = prepare_dataset(ds, batch_size=4, crop_size=64, flip=True, seed=0)
    """
    if deterministic is None:
        deterministic = _default_deterministic(seed, shuffle)
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1. Received: batch_size={batch_size}")
    if skip_errors:
        decoded = decoded.ignore_errors(log_warning=True)
    if cache:
        decoded = decoded.cache(cache if isinstance(cache, str) else "")
    if shuffle:
        decoded = decoded.shuffle(_buffer_size(decoded, shuffle_buffer), seed=seed,
                                  reshuffle_each_iteration=True)
    element_fn = _make_element_fn(ignore_label=ignore_label, crop_size=crop_size,
                                  scale_range=scale_range, flip=flip, mean_rgb=mean_rgb)
    # Fixed-size batches get their colour jitter per batch (vectorised); padded batches per
    # element, before padding, so that padding stays exactly the mean colour.
    fixed_size = crop_size is not None or batch_size == 1
    batch_jitter = color_jitter and fixed_size

    def augment(element, seed_):
        image, mask = element_fn(element, seed_)
        if batch_jitter:
            return image, mask, _jitter_factors(_op_seed(seed_, 4))
        if color_jitter:
            image = random_color_jitter(image, _op_seed(seed_, 4))
        if not fixed_size:
            mask = tf.cast(mask, tf.int32)
        return image, mask

    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip(decoded, seeds).map(
        augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if fixed_size:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)

        def finish(image, mask, factors=None):
            if factors is not None:
                image = _apply_jitter(image, factors)
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
                 scale_range=None, flip=False, color_jitter=False, shuffle=False, seed=None,
                 mask_format="index", palette=None, unknown_color="error", cache=False,
                 deterministic=None, validate=True, skip_bad=False, drop_remainder=False,
                 shuffle_buffer=None, mean_rgb=MEAN_RGB):
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
        color_jitter: random brightness/contrast/saturation (image only).
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

    Returns:
        `tf.data.Dataset` of (image float32 (B, H, W, 3) RGB 0..255, mask int32 (B, H, W)).

    Example:
        >>> from keras_fcn import datasets
        >>> pairs, info = datasets.camvid_pairs("/data/camvid", "train")
        >>> ds = make_dataset(pairs, num_classes=info.num_classes,
        ...                   ignore_label=info.ignore_label, crop_size=(360, 480),
        ...                   batch_size=4, flip=True, shuffle=True, seed=0)
    """
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
    return prepare_dataset(
        decoded, ignore_label=ignore_label, batch_size=batch_size, crop_size=crop_size,
        scale_range=scale_range, flip=flip, color_jitter=color_jitter, shuffle=shuffle,
        shuffle_buffer=shuffle_buffer or len(pairs), seed=seed, cache=cache,
        deterministic=deterministic, drop_remainder=drop_remainder, mean_rgb=mean_rgb,
        skip_errors=skip_bad)


def _checked_pairs(pairs, *, validate, skip_bad, **kwargs):
    """Validates pairs up front as asked; returns the pairs to use."""
    if validate not in (True, False, "headers"):
        raise ValueError(f"`validate` must be True, False or 'headers'. Received: "
                         f"validate={validate!r}")
    pairs = _as_pairs(pairs)
    if not pairs:
        raise ValueError("No (image, mask) pairs given. Received: pairs=[]")
    if validate:
        full = validate is True
        pairs = validate_pairs(pairs, check_values=full, decode_images=full,
                               skip_bad=skip_bad, **kwargs).good
        if not pairs:
            raise ValueError("Every (image, mask) pair is bad; see the warnings above.")
    return pairs
