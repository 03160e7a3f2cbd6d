"""In-graph decoding of (image path, mask path) pairs, with checks that name the bad file.

Example:
    >>> decode = make_decode_fn(num_classes=21)

    image, mask = decode("a.jpg", "a.png")
"""

import numpy as np
import tensorflow as tf

from keras_fcn._checks import check_choice
from keras_fcn.data.masks import (
    JPEG_SIGNATURE,
    MASK_FILE_SIGNATURES,
    MASK_FORMATS,
    RGB_MASKS_HINT,
    UNKNOWN_COLOR_MODES,
    bad_value_message,
    mask_file_format_message,
    palette_to_table,
    read_index_png,
    read_sbd_mat,
    size_mismatch_message,
    to_str,
    unknown_colour_message,
)
from keras_fcn.labels import IGNORE_LABEL

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_PALETTE_COLOR_TYPE = b"\x03"


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


# The first bytes of the formats tf.io.decode_image reads (WebP: RIFF....WEBP; JPEG XL: a
# bare codestream or its container box).
_IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM",
                     b"RIFF", b"\xff\x0a", b"\x00\x00\x00\x0cJXL ")


def _raise_format(path, data):
    raise ValueError(f"image '{to_str(path)}' is not a JPEG, PNG, GIF, BMP, WebP or JPEG XL file "
                     f"(it starts with {bytes(data)[:8]!r}): a broken or truncated file?")


def _check_image_format(path, data):
    """Returns `data`; fails naming `path` when it starts like no image format TensorFlow reads
    (tf.io.decode_image's own error names no file)."""
    head = tf.strings.substr(data, 0, 8)
    known = tf.reduce_any([tf.strings.substr(head, 0, len(sig)) == sig
                           for sig in _IMAGE_SIGNATURES])
    return _fail_unless(known, _raise_format, [path, head], data)


def _check_mask_format(path, data, mask_format):
    """Returns `data`; fails naming `path` when it is no file the decoder reads as a mask of
    `mask_format` (a TIFF, a GIF index mask: TF's own error names no file)."""
    head = tf.strings.substr(data, 0, 8)
    known = tf.reduce_any([tf.strings.substr(head, 0, len(sig)) == sig
                           for signatures in MASK_FILE_SIGNATURES[mask_format].values()
                           for sig in signatures])

    def raise_format(p, h):
        h = bytes(h)
        found = ("a JPEG file" if h.startswith(JPEG_SIGNATURE)
                 else f"a file starting with {h!r}")
        raise ValueError(mask_file_format_message(p, mask_format, found))

    return _fail_unless(known, raise_format, [path, head], data)


def _raise_channels(path, channels):
    raise ValueError(
        f"mask '{to_str(path)}' has {int(channels)} channels; index masks must be "
        f"single-channel or palette PNGs ({RGB_MASKS_HINT})"
    )


def decode_rgb(data):
    """Decodes image file contents to uint8 RGB (H, W, 3), JPEGs with libjpeg's accurate
    integer IDCT (`dct_method="INTEGER_ACCURATE"`), as PIL decodes them: the pixels are those
    of `keras_fcn.data.arrays.read_image`, and so of `make_pydataset` and `tools/predict.py`.
    (`tf.io.decode_image` uses the fast IDCT, up to 8 levels off on 60% of the pixels of a
    typical photo: a model evaluated through tf.data scored other pixels than it predicted.)

    Example:
        image = decode_rgb(tf.io.read_file("a.jpg"))
    """
    image = tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(data, channels=3, expand_animations=False))
    image.set_shape([None, None, 3])
    return image


def _is_pil_png(data):
    """True for the PNGs read through PIL (`read_index_png`): palette PNGs (their indices, not
    colours) and 1-, 2-, 4- and 16-bit greyscale masks, whose raw values TensorFlow's
    uint8 decoder scales (1-bit 1 -> 255, 2-bit 1 -> 85, 16-bit v -> v >> 8)."""
    header = tf.strings.substr(data, 0, 26)  # signature (8) + IHDR up to the colour type byte
    header = tf.strings.join([header, tf.constant(b"\0" * 26)])
    signature_ok = tf.equal(tf.strings.substr(header, 0, 8), _PNG_SIGNATURE)
    colour_type = tf.strings.substr(header, 25, 1)
    bit_depth = tf.strings.substr(header, 24, 1)
    scaled_grey = tf.logical_and(
        tf.reduce_any([tf.equal(bit_depth, bytes([bits])) for bits in (1, 2, 4, 16)]),
        tf.equal(colour_type, b"\x00"))
    return tf.logical_and(signature_ok, tf.logical_or(
        tf.equal(colour_type, _PNG_PALETTE_COLOR_TYPE), scaled_grey))


def _decode_index_mask(path, data):
    """Decodes an index mask: palette PNGs and 1-, 2-, 4- and 16-bit greyscale PNGs through
    PIL (`read_index_png`, as `validate_pairs` and `make_pydataset` read them), others with
    TF ops."""

    def palette_indices():
        return tf.numpy_function(lambda p: read_index_png(p).astype(np.int32), [path], tf.int32)

    def single_channel():
        mask = tf.io.decode_image(data, channels=0, expand_animations=False)
        channels = tf.shape(mask)[-1]
        mask = _fail_unless(tf.equal(channels, 1), _raise_channels, [path, channels], mask)
        return tf.cast(mask[..., 0], tf.int32)

    mask = tf.cond(_is_pil_png(data), palette_indices, single_channel)
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
            raise ValueError(unknown_colour_message(p, colours, ok))

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
        raise ValueError(bad_value_message(p, m, num_classes, ignore_label))

    return _fail_unless(tf.reduce_all(valid), raise_bad_value, [path, mask], mask)


def _check_same_size(image_path, image, mask_path, mask):
    image_hw, mask_hw = tf.shape(image)[:2], tf.shape(mask)

    def raise_mismatch(ip, ihw, mp, mhw):
        raise ValueError(size_mismatch_message(ip, tuple(ihw), mp, tuple(mhw)))

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

    Example:
        >>> decode = make_decode_fn(num_classes=11, ignore_label=11)

        image, mask = decode("camvid/val/0016E5_07959.png", "camvid/valannot/0016E5_07959.png")
    """
    check_choice("mask_format", mask_format, MASK_FORMATS)
    check_choice("unknown_color", unknown_color, UNKNOWN_COLOR_MODES)
    storage = _mask_storage_dtype(num_classes, ignore_label)
    if mask_format == "rgb":
        codes, labels = (tf.constant(a) for a in palette_to_table(palette, num_classes))

    def decode(image_path, mask_path):
        image = decode_rgb(_check_image_format(image_path, tf.io.read_file(image_path)))
        if mask_format == "index":
            mask_data = _check_mask_format(mask_path, tf.io.read_file(mask_path), "index")
            mask = _decode_index_mask(mask_path, mask_data)
        elif mask_format == "rgb":
            mask_data = _check_mask_format(mask_path, tf.io.read_file(mask_path), "rgb")
            mask = _decode_rgb_mask(mask_path, mask_data, codes, labels, ignore_label,
                                    unknown_color)
        else:
            mask = _decode_sbd_mask(mask_path)
        mask = _check_same_size(image_path, image, mask_path, mask)
        if check_values:
            mask = _check_values(mask_path, mask, num_classes, ignore_label)
        return image, tf.cast(mask, storage)

    return decode
