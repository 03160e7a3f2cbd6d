"""Up-front checks of (image, mask) pairs: every bad file is named, with the bad value.

Example:
    report = validate_pairs(pairs, num_classes=21, skip_bad=True)
    report.num_bad
"""

import dataclasses
import logging
import os
import re

import tensorflow as tf

from keras_fcn._checks import check_choice
from keras_fcn.data.decode import decode_rgb
from keras_fcn.data.masks import (
    MASK_FILE_SIGNATURES,
    MASK_FORMATS,
    UNKNOWN_COLOR_MODES,
    bad_value_message,
    map_with_progress,
    mask_file_format_message,
    orientation_problem,
    palette_to_table,
    read_mask,
    size_mismatch_message,
)
from keras_fcn.labels import IGNORE_LABEL

_JPEG_EOI = b"\xff\xd9"

logger = logging.getLogger(__name__)


def as_pairs(pairs):
    """Returns `pairs` as a list of (str, str), raising on entries that are not pairs.

    Example:
        >>> as_pairs([("a.jpg", "a.png")])
        [('a.jpg', 'a.png')]
    """
    result = []
    for i, pair in enumerate(pairs):
        if isinstance(pair, (str, bytes, os.PathLike)) or len(pair) != 2:
            raise ValueError(
                f"Entry {i} is not an (image, mask) pair: it is unpaired. Received: pair={pair!r}"
            )
        result.append((os.fspath(pair[0]), os.fspath(pair[1])))
    return result


@dataclasses.dataclass
class ValidationReport:
    """Result of `validate_pairs`.

    Attributes:
        good: the valid (image, mask) pairs, in input order.
        bad: list of ((image, mask), message) for the invalid pairs.
        problems: what stops a run on the split as a whole though each pair is good (no pair
            at all, masks without a class but 0, a split that could not be listed: "not
            checked: ..."), as `keras_fcn.datasets.check` finds them.

    Example:
        report = validate_pairs(pairs, num_classes=21, skip_bad=True)
        print(report.summary())
    """

    good: list
    bad: list
    problems: list = dataclasses.field(default_factory=list)

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
    decoding). With `decode`, the image is then decoded with `decode_rgb`, the decoder
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
    orientation = orientation_problem(path)  # a new open: PIL's verify() must come first
    if orientation:
        return None, orientation
    if decode:
        with open(path, "rb") as file:
            content = file.read()
        try:
            shape = decode_rgb(tf.constant(content)).shape
        except (tf.errors.OpError, ValueError) as error:
            return None, f"image file '{path}' cannot be decoded: {_op_error_text(error)}"
        return (int(shape[0]), int(shape[1])), None
    return (size[1], size[0]), None


def _op_error_text(error):
    """The first line of a TF error's message, without the op and node details ("Invalid
    PNG data, size 92742", not "{{function_node ...}} Invalid PNG data, size 92742
    [Op:DecodeImage] name:")."""
    text = error.message if isinstance(error, tf.errors.OpError) else str(error)
    line = text.strip().splitlines()[0] if text.strip() else ""
    line = re.sub(r"\{\{function_node [^}]*\}\}|\s*\[Op:\w+\].*$", "", line).strip()
    return line or type(error).__name__


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
        return size_mismatch_message(image_path, image_hw, mask_path, mask.shape)
    if check_values:
        message = bad_value_message(mask_path, mask, num_classes, ignore_label)
        if message:
            return message
    return _mask_file_problem(mask_path, mask_format)


def _mask_file_problem(path, mask_format):
    """A message when the tf.data decoder cannot read the mask file PIL has just read (a TIFF,
    a GIF index mask...), else None."""
    if mask_format not in MASK_FILE_SIGNATURES:  # .mat files: read by scipy in both pipelines
        return None
    with open(path, "rb") as file:
        head = file.read(16)
    if any(head.startswith(signature)
           for signatures in MASK_FILE_SIGNATURES[mask_format].values()
           for signature in signatures):
        return None
    from PIL import Image

    try:
        with Image.open(path) as image:
            found = f"a {image.format} file"
    except Exception:  # noqa: BLE001 - only names the format in the message
        found = f"a file starting with {head[:8]!r}"
    return mask_file_format_message(path, mask_format, found)


def validate_pairs(pairs, *, num_classes, ignore_label=IGNORE_LABEL, mask_format="index",
                   palette=None, unknown_color="error", check_values=True, decode_images=True,
                   skip_bad=False, num_workers=4, verbose="auto"):
    """Checks (image, mask) pairs before training, and names every bad file.

    Checks: entries are pairs, files exist, images decode with `decode_rgb` (the
    pipeline's decoder; with `decode_images=False` only their headers, PNG CRCs and JPEG end
    marker are read), masks decode in `mask_format` (with PIL) and are files the pipeline's
    decoder reads (index masks: PNG or BMP; a TIFF or GIF index mask is refused, naming it,
    and a JPEG mask of either format: it is lossy), image and mask sizes agree and (with
    `check_values`) every mask value is in [0, num_classes) or the ignore label.

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
        report = validate_pairs(pairs, num_classes=21, skip_bad=True)
        report.num_bad, report.bad[0][1]
    """
    check_choice("mask_format", mask_format, MASK_FORMATS)
    check_choice("unknown_color", unknown_color, UNKNOWN_COLOR_MODES)
    pairs = as_pairs(pairs)
    if mask_format == "rgb":
        palette_to_table(palette, num_classes)  # raises early on a bad palette
    check = lambda pair: _pair_problem(  # noqa: E731
        pair, num_classes, ignore_label, mask_format, palette, unknown_color, check_values,
        decode_images)
    problems = map_with_progress(check, pairs, num_workers, verbose)
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
