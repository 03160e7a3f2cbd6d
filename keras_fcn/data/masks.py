"""Reading segmentation masks into class ids with NumPy / PIL, and the error messages that
name a bad file and value (shared by `validate_pairs` and the in-graph checks).

Mask formats: "index" (single-channel or palette PNG: the values, or palette indices, are the


class ids), "rgb" (colour-coded, mapped through a palette) and "sbd_mat" (SBD `cls/*.mat`).

Example:
    read_mask("VOC2012/SegmentationClass/2007_000032.png").shape
"""

import concurrent.futures
import contextlib
import os

import numpy as np

from keras_fcn._checks import check_choice
from keras_fcn.labels import IGNORE_LABEL, check_colour, whole_number

MASK_FORMATS = ("index", "rgb", "sbd_mat")
UNKNOWN_COLOR_MODES = ("error", "ignore")
# How colour-coded masks are declared, in Python and on the command line (docs/data.md).
RGB_MASKS_HINT = ("colour-coded masks: mask_format='rgb' with a palette in Python; for "
                  "--dataset=folder, \"mask_format\": \"rgb\" and a \"palette\" in the data "
                  "folder's classes.json, see docs/data.md")


def palette_to_table(palette, num_classes=None):
    """Turns a colour palette into sorted lookup arrays.

    Args:
        palette: either a sequence of (r, g, b) colours where the position is the class id, an
            array of shape (K, 3), or a dict mapping (r, g, b) to a class id.
        num_classes: when given, a sequence palette must hold a colour for each class (a
            shorter one is refused: its last classes could never appear in a mask).

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
        items = [(check_colour(colour, f"palette key {colour!r}"),
                  whole_number(f"palette[{colour!r}]", label)) for colour, label in palette.items()]
    else:
        items = [(check_colour(colour, f"palette[{i}]"), i) for i, colour in enumerate(palette)]
        if num_classes is not None and len(items) < int(num_classes):
            raise ValueError(
                f"The palette has {len(items)} colour(s) for num_classes={int(num_classes)}: "
                f"class ids {len(items)}..{int(num_classes) - 1} have none. Give one (r, g, b) "
                "colour per class, in class-id order (or a dict colour -> class id). "
                f"Received: palette={palette!r}")
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


def to_str(path):
    """A path given as str, bytes (from a TF tensor) or path-like, as str.

    Example:
        >>> to_str(b"a.png")
        'a.png'
    """
    return path.decode() if isinstance(path, bytes) else os.fspath(path)


# Errors of opening the path itself: their message already names the file, keep their type.
_PATH_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


@contextlib.contextmanager
def file_errors(kind, path):
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
        raise ValueError(f"{kind} file '{to_str(path)}' is unreadable: "
                         f"{type(error).__name__}: {error}") from error


INDEX_MODES = ("P", "L", "I", "I;16", "1")  # PIL modes of single-channel and palette masks


def read_index_png(path):
    """Reads a single-channel, 1-bit or palette ("P" mode) mask as its raw values.

    For palette PNGs (as VOC SegmentationClass) the palette *indices* are the labels;
    `tf.io.decode_png` would return the palette colours instead. A 1-bit mask (PIL mode "1",
    as binary masks are often saved) reads as class ids 0 and 1, 2- and 4-bit greyscale PNGs
    as their stored values (0..3, 0..15; decoders scale them to 0..255) and 16-bit ones as
    their 16-bit values. `make_dataset` reads these PNGs with this function too.

    Args:
        path: mask file path.

    Returns:
        uint8 (or int32 for 16-bit files) array of shape (H, W).

    Raises:
        ValueError: the file is damaged, a JPEG (lossy: its values are not the ids saved), or
            an image of another mode (RGB, grey plus alpha, ...); the message names the file
            and its mode.

    Example:
        read_index_png("VOC2012/SegmentationClass/2007_000032.png").max()
    """
    from PIL import Image

    path = to_str(path)
    header = None
    with file_errors("mask", path), Image.open(path) as mask:
        mode, fmt = mask.mode, mask.format
        if fmt == "JPEG":
            raise ValueError(mask_file_format_message(path, "index", "a JPEG file"))
        if mode in INDEX_MODES:
            if fmt == "PNG" and mode == "L":  # the header tells 2- and 4-bit grey from 8-bit
                header = _read_header(mask.fp)
            array = np.asarray(mask)
    if mode not in INDEX_MODES:
        raise ValueError(_mode_message(path, mode))
    if array.dtype == bool:  # mode "1": one bit per pixel
        return array.astype(np.uint8)
    # PIL (like TensorFlow) scales 2- and 4-bit greyscale to 0..255 (x 85, x 17).
    scale = _PNG_GREY_SCALES.get(_grey_bit_depth(header)) if header else None
    if scale:
        return (array // scale).astype(np.uint8)
    return array if array.dtype == np.uint8 else array.astype(np.int32)


_PNG_GREY_SCALES = {2: 85, 4: 17}
_PNG_HEADER_SIZE = 26  # signature (8), IHDR length and type (8), width, height, depth, colour


def _read_header(file):
    """The first bytes of an open file, its position left where it was (PIL's, before it
    decodes: the file is read once, by the image that decodes it)."""
    position = file.tell()
    file.seek(0)
    header = file.read(_PNG_HEADER_SIZE)
    file.seek(position)
    return header


def _grey_bit_depth(header):
    """The bit depth in a PNG `header` of a greyscale (colour type 0) image, else None."""
    if (len(header) < _PNG_HEADER_SIZE or header[:8] != b"\x89PNG\r\n\x1a\n"
            or header[25] != 0):
        return None
    return header[24]


def _mode_message(path, mode):
    """The message for a mask whose PIL mode is not one of :data:`INDEX_MODES`."""
    expected = ("index masks must be single-channel ('L', 'I', 'I;16' or 1-bit '1') or "
                "palette ('P') images")
    if mode in ("LA", "La", "PA"):
        what = "grey plus alpha" if mode != "PA" else "palette plus alpha"
        return (f"mask '{path}' has PIL mode {mode!r} ({what}: two channels); {expected}. "
                "Save it without the alpha channel, e.g. "
                f"Image.open(path).convert({'L' if mode != 'PA' else 'P'!r}).save(path)")
    return f"mask '{path}' has PIL mode {mode!r}; {expected} ({RGB_MASKS_HINT})"


SBD_CLASSES = 21  # background and the 20 PASCAL VOC classes


def read_sbd_mat(path):
    """Reads the class mask `GTcls.Segmentation` of an SBD `cls/*.mat` file.

    Args:
        path: path of the `.mat` file. Needs scipy (imported only here).

    Returns:
        uint8 array of shape (H, W).

    Example:
        read_sbd_mat("benchmark_RELEASE/dataset/cls/2008_000002.mat").shape
    """
    import scipy.io  # an install requirement (setup.py)

    path = to_str(path)
    with file_errors("mask", path):
        content = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    if "GTcls" not in content:
        raise ValueError(f"mask '{path}' has no `GTcls` entry; is it an SBD cls/*.mat file?")
    labels = np.asarray(content["GTcls"].Segmentation)
    bad = None
    if labels.dtype.kind not in "biuf":
        bad = f"holds {labels.dtype} values"
    elif labels.size:
        whole = labels == np.round(labels) if labels.dtype.kind == "f" else True
        valid = whole & (((labels >= 0) & (labels < SBD_CLASSES)) | (labels == IGNORE_LABEL))
        if not np.all(valid):
            bad = f"holds the value {labels[~valid].flat[0].item()!r}"
    if bad:
        raise ValueError(f"mask '{path}' {bad}: SBD class masks hold whole class ids 0 to "
                         f"{SBD_CLASSES - 1} (or {IGNORE_LABEL}, void).")
    return labels.astype(np.uint8)


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
        read_mask("camvid/trainannot/0001TP_006690.png").shape
    """
    check_choice("mask_format", mask_format, MASK_FORMATS)
    if mask_format == "index":
        return read_index_png(path).astype(np.int32)
    if mask_format == "sbd_mat":
        return read_sbd_mat(path).astype(np.int32)
    from PIL import Image

    codes, labels = palette_to_table(palette)
    with file_errors("mask", path), Image.open(to_str(path)) as image:
        if image.format == "JPEG":
            raise ValueError(mask_file_format_message(path, "rgb", "a JPEG file"))
        rgb = np.asarray(image.convert("RGB"))
    mask, known = _map_colours_np(rgb, codes, labels, ignore_label)
    if unknown_color == "error" and not known.all():
        raise ValueError(unknown_colour_message(path, rgb, known))
    return mask.astype(np.int32)


# The mask files the tf.data decoder (`make_decode_fn`) reads, by mask format: name ->
# signatures (first bytes). PIL reads more (TIFF, GIF palettes...), which TF cannot decode as
# class ids; `validate_pairs` and the in-graph decoder refuse those naming the file. JPEG is
# refused too: it is lossy, so the values (or colours) near every edge are not those saved.
MASK_FILE_SIGNATURES = {
    "index": {"PNG": (b"\x89PNG\r\n\x1a\n",), "BMP": (b"BM",)},
    "rgb": {"PNG": (b"\x89PNG\r\n\x1a\n",), "BMP": (b"BM",), "GIF": (b"GIF87a", b"GIF89a"),
            "WebP": (b"RIFF",)},
}
JPEG_SIGNATURE = b"\xff\xd8\xff"


def mask_file_format_message(path, mask_format, found):
    """The message for a mask file the tf.data decoder cannot read in `mask_format`, or a
    JPEG (lossy) mask.

    Example:
        mask_file_format_message("m.tif", "index", "a TIFF file")
        # "mask 'm.tif' is a TIFF file; mask_format='index' masks must be PNG or BMP files
        #  (the formats make_dataset decodes); save it as PNG"
    """
    names = list(MASK_FILE_SIGNATURES[mask_format])
    allowed = ", ".join(names[:-1]) + " or " + names[-1]
    why = "the formats make_dataset decodes"
    if found == "a JPEG file":
        what = "class ids" if mask_format == "index" else "palette colours"
        why = (f"JPEG is lossy: near every edge its pixels are not the {what} that were "
               "saved")
    return (f"mask '{to_str(path)}' is {found}; mask_format={mask_format!r} masks must be "
            f"{allowed} files ({why}); save it as PNG")


def bad_value_message(path, mask, num_classes, ignore_label):
    """Returns a message naming the first invalid mask value, or None if all are valid.

    Example:
        >>> print(bad_value_message("m.png", np.array([[0, 37]]), 21, 255))
        mask 'm.png' has value 37 at (0, 1); expected 0..20 (num_classes=21) or ignore label 255
    """
    mask = np.asarray(mask)
    bad = (mask < 0) | (mask >= num_classes)
    bad &= mask != ignore_label
    if not bad.any():
        return None
    y, x = (int(i) for i in np.argwhere(bad)[0])
    return (
        f"mask '{to_str(path)}' has value {int(mask[y, x])} at ({y}, {x}); "
        f"expected 0..{num_classes - 1} (num_classes={num_classes}) or ignore label "
        f"{ignore_label}"
    )


def unknown_colour_message(path, rgb, known):
    """The message naming the first colour of `rgb` that is not in the palette.

    Example:
        message = unknown_colour_message("m.png", rgb, known)
    """
    y, x = (int(i) for i in np.argwhere(~known)[0])
    colour = tuple(int(c) for c in rgb[y, x])
    return (
        f"mask '{to_str(path)}' has colour {colour} at ({y}, {x}) that is not in the palette; "
        "add it to the palette, or map it to the ignore label: \"void_color\": "
        f"{list(colour)} in a folder data set's classes.json, or unknown_color='ignore' (every "
        "unknown colour) in the Python API"
    )


def size_mismatch_message(image_path, image_hw, mask_path, mask_hw):
    """The message naming an image and a mask of different sizes.

    Example:
        >>> size_mismatch_message("a.jpg", (2, 3), "a.png", (2, 4))
        "image 'a.jpg' is 2x3 (HxW) but mask 'a.png' is 2x4"
    """
    return (
        f"image '{to_str(image_path)}' is {image_hw[0]}x{image_hw[1]} (HxW) but mask "
        f"'{to_str(mask_path)}' is {mask_hw[0]}x{mask_hw[1]}"
    )


# What viewers do to a photo of each EXIF orientation (tag 0x0112; 1: nothing).
ORIENTATIONS = {2: "mirror it", 3: "turn it 180 degrees", 4: "flip it upside down",
                5: "transpose it", 6: "turn it 90 degrees clockwise", 7: "transverse it",
                8: "turn it 90 degrees counter-clockwise"}
ORIENTATION_TAG = 0x0112


def orientation_problem(path):
    """None, or a message when the JPEG file `path` carries an EXIF orientation (2-8): phone
    photos. Other files, and files PIL cannot read (named by the decoders), give None.

    Example:
        orientation_problem("phone.jpg")  # "image file 'phone.jpg' has EXIF orientation 6..."
    """
    from PIL import Image

    try:
        with Image.open(path) as image:  # a JPEG's EXIF is in its header; a PNG's may follow
            jpeg = image.format in ("JPEG", "MPO")  # its pixels (getexif would decode them)
            orientation = image.getexif().get(ORIENTATION_TAG, 1) if jpeg else 1
    except Exception:  # noqa: BLE001 - a damaged file: named by the decoders' own checks
        return None
    if orientation not in ORIENTATIONS:
        return None
    return (f"image file '{path}' has EXIF orientation {orientation} (viewers "
            f"{ORIENTATIONS[orientation]}): training and evaluation read its stored pixels, "
            "tools/predict.py the turned ones, and its mask matches one of the two only. Save "
            "it with the turn applied (PIL: ImageOps.exif_transpose(image).save(path)) if its "
            "mask was drawn on the photo as viewers show it, or without the tag if on the "
            "stored pixels")


_PROGRESS_MIN_FILES = 200  # a bar from this many files on (verbose='auto')


def map_with_progress(fn, items, num_workers=4, verbose="auto", unit="pair"):
    """``[fn(item) for item in items]`` on ``num_workers`` threads (file reads), in order, with
    a progress bar of ``unit``s when ``verbose`` is True, or "auto" and there are 200 or more.

    Example:
        >>> map_with_progress(len, ["a", "bc"], verbose=False)
        [1, 2]
    """
    show = len(items) >= _PROGRESS_MIN_FILES if verbose == "auto" else bool(verbose)
    bar = None
    if show:
        import keras

        bar = keras.utils.Progbar(len(items), unit_name=unit)
    results = []
    with concurrent.futures.ThreadPoolExecutor(max(1, num_workers)) as pool:
        for i, result in enumerate(pool.map(fn, items)):
            results.append(result)
            if bar is not None and ((i + 1) % 50 == 0 or i + 1 == len(items)):
                bar.update(i + 1)
    return results
