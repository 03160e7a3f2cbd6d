"""Images for calibration and for the quality gate: a folder of images, a folder of the data
set layout (``images/`` and ``masks/`` paired by file stem), or a list file of ``image [mask]``
lines, read at the exported model's input size.

Example:
    pairs = read_list("camvid/val.txt")
    pairs = read_list("data/mine/val")                     # val/images + val/masks
    image = load_image(pairs[0][0], size=(360, 480))      # uint8 (360, 480, 3)
    next(calibration_images("camvid/train.txt", (360, 480))).shape
"""

import os

import numpy as np
import tensorflow as tf

from keras_fcn._checks import check_positive_int, pixel_value_problem
from keras_fcn.data.arrays import read_image
from keras_fcn.data.masks import (bad_value_message, file_errors, read_index_png, read_mask,
                                  size_mismatch_message)
from keras_fcn.datasets.folder import MASK_EXTENSIONS, folder_pairs
from keras_fcn.datasets.pairs import CLASSES_FILE, folder_info
from keras_fcn.io import IMAGE_EXTENSIONS

_EXPECTED = ("expected a folder of images or a list file of 'image [mask]' lines, or a folder "
             "with images/ and masks/ (paired by file stem)")
# The masks load_mask reads (a .mat mask of SBD is not one): others are named as unpaired.
_MASK_FILES = tuple(ext for ext in MASK_EXTENSIONS if ext != ".mat")


def _image_names(folder):
    return sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS)
                  and os.path.isfile(os.path.join(folder, n)))


def _read_folder(path, calibration=False):
    """The pairs of a folder: its images (no masks); else those of its ``images/`` subfolder,
    paired by file stem with ``masks/`` when it has one
    (:func:`keras_fcn.datasets.folder.folder_pairs`, as ``--dataset=folder`` pairs them)."""
    names = _image_names(path)
    if names:
        return [(os.path.join(path, n), None) for n in names]
    images, masks = os.path.join(path, "images"), os.path.join(path, "masks")
    if os.path.isdir(images) and os.path.isdir(masks):
        return folder_pairs(images, masks, mask_extensions=_MASK_FILES)
    if os.path.isdir(images) and _image_names(images):
        return [(os.path.join(images, n), None) for n in _image_names(images)]
    splits = sorted(n for n in os.listdir(path) if os.path.isdir(os.path.join(path, n, "images")))
    if splits:  # a data set's root: which split is meant is for the user to say
        example = "train" if calibration else "val"
        example = example if example in splits else splits[0]
        why = (" (calibrate on training images: calibrating on the images the quality gate "
               "checks, e.g. val, would flatter int8 there)" if calibration else "")
        raise ValueError(f"Folder {path!r} holds no images but the splits {splits} of a data "
                         f"set ({{split}}/images and {{split}}/masks); pass one of them, e.g. "
                         f"{os.path.join(path, example)!r}{why}")
    raise ValueError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) in folder {path!r}; "
                     f"{_EXPECTED}.")


def read_list(path, *, calibration=False):
    """Reads a folder of images, a folder of the data set layout (``images/`` and ``masks/``
    subfolders, e.g. ``data/mine/val``: paired by file stem as ``--dataset=folder`` pairs them;
    ``images/`` alone: its images) or a list file of ``image [mask]`` lines (relative paths are
    relative to the list file's folder). A folder's images come in file name order, a list
    file's in its line order. ``calibration``: the images are for int8 calibration, so a data
    set's root suggests its ``train`` split (else ``val``, for the quality gate).

    Returns:
        A list of ``(image_path, mask_path or None)``.

    Raises:
        FileNotFoundError: ``path``, or a file that a line of it names, does not exist.
        ValueError: ``path`` is an image, not a text file of ``image [mask]`` lines, a folder
            without images (a data set's root: the message names its splits), or an image or
            mask of ``images/`` and ``masks/`` has no partner.

    Example:
        read_list("camvid/val.txt")[0]
        read_list("data/mine/val")[0]  # ('data/mine/val/images/a.jpg', '.../masks/a.png')
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        return _read_folder(path, calibration)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Image folder or list file not found: {path!r}")
    if path.lower().endswith(IMAGE_EXTENSIONS):
        raise ValueError(f"{path!r} is an image; {_EXPECTED} (one image per line).")
    root = os.path.dirname(os.path.abspath(path))
    pairs = []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as error:
        raise ValueError(f"{path!r} is not a text file ({error}); {_EXPECTED}.") from None
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) > 2:
            raise ValueError(f"{path}:{number}: expected 'image [mask]'. Received: {line!r}")
        paths = [p if os.path.isabs(p) else os.path.join(root, p) for p in fields]
        for kind, listed in zip(("image", "mask"), paths):
            if not os.path.isfile(listed):
                raise FileNotFoundError(
                    f"{path}:{number}: {kind} file not found: {listed!r} ({_EXPECTED}; "
                    "relative paths are relative to the list file's folder)")
        pairs.append((paths[0], paths[1] if len(paths) > 1 else None))
    if not pairs:
        raise ValueError(f"List file {path!r} has no entries; {_EXPECTED}.")
    return pairs


def _resized(array, size, resample):
    """``array`` (an image or a mask) resized by PIL to ``size=(h, w)`` if it is not that size."""
    from PIL import Image

    if size is None or array.shape[:2] == tuple(size):
        return array
    return np.asarray(Image.fromarray(array).resize((size[1], size[0]), resample))


def load_image(path, size=None):
    """Reads an RGB image as uint8 ``(H, W, 3)``, resized (bilinear) to ``size=(h, w)``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is damaged or not an image (the message names it).
    """
    from PIL import Image

    # The training pipelines' reader: a 16-bit grey photo keeps its high byte, not PIL's clip.
    return _resized(read_image(path), size, Image.BILINEAR)


def load_mask(path, size=None, *, palette=None):
    """Reads an index mask (single-channel, 1-bit or palette image: its values are the class
    ids) as int32 ``(H, W)``, resized (nearest) to ``size=(h, w)``; with ``palette`` (colours by
    class id, from :func:`colour_mask_palette`) a colour mask, mapped to class ids.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is damaged or not an index mask, or a colour mask has a colour
            that is not in ``palette`` (the message names it).
    """
    from PIL import Image

    if palette is not None:
        mask = read_mask(os.fspath(path), "rgb", palette)
    else:
        mask = read_index_png(os.fspath(path))
    return _resized(mask, size, Image.NEAREST).astype(np.int32)


def colour_mask_palette(path):
    """The colours of the masks of the pairs :func:`read_list` reads from ``path``, for a data
    set of colour masks: a ``classes.json`` with ``"mask_format": "rgb"`` (as
    ``--dataset=folder`` reads it) in the folder or list file's folder, or one folder up
    (``data/mine/classes.json`` for ``data/mine/val``).

    Returns:
        ``(palette, classes_json)``: the colours by class id (the void colour last, as the
        ignore label ``len(classes)``) and the file's path; ``(None, path)`` for index masks;
        ``(None, None)`` without a ``classes.json``.

    Raises:
        ValueError: a bad ``classes.json`` (:func:`keras_fcn.datasets.pairs.folder_info`).
    """
    path = os.path.abspath(os.fspath(path))
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    for candidate in (folder, os.path.dirname(folder)):
        classes = os.path.join(candidate, CLASSES_FILE)
        if os.path.isfile(classes):
            info = folder_info(candidate)
            return (list(info.palette) if info.mask_format == "rgb" else None), classes
    return None, None


def check_pairs(pairs, *, num_classes=None, ignore_label=None, palette=None):
    """Checks, from the file headers only (fast), that every image of ``pairs`` (from
    :func:`read_list`) can be opened and has its mask's size: what :func:`load_pair` would
    refuse later, found before a slow export. With ``num_classes``, the masks are also read
    and their values checked (class ids or ``ignore_label``; colour masks with ``palette``,
    see :func:`load_mask`).

    Raises:
        ValueError: a file is not an image, an image and its mask differ in size, or a mask
            value is neither a class id nor ``ignore_label`` (the message names the file).
    """
    from PIL import Image

    def header_size(kind, path):
        with file_errors(kind, path), Image.open(path) as image:
            return image.size[::-1]

    for image_path, mask_path in pairs:
        image_hw = header_size("image", image_path)
        if mask_path is not None:
            mask_hw = header_size("mask", mask_path)
            if image_hw != mask_hw:
                raise ValueError(size_mismatch_message(image_path, image_hw, mask_path,
                                                       mask_hw))
            if num_classes is not None:
                message = bad_value_message(mask_path, load_mask(mask_path, palette=palette),
                                            num_classes, ignore_label)
                if message:
                    raise ValueError(message)


def load_pair(image_path, mask_path, size=None, *, num_classes=None, ignore_label=None,
              palette=None):
    """Reads an image and its mask (a colour mask with ``palette``, see :func:`load_mask`),
    checked as the dataset loader checks them, and resizes both to ``size=(h, w)`` (the image
    bilinear, the mask nearest).

    Raises:
        ValueError: the image and the mask differ in size ("image 'a.png' is 32x32 (HxW) but
            mask 'a_mask.png' is 16x16"), a mask value is neither a class id (below
            ``num_classes``) nor ``ignore_label``, or a file is damaged; the message names
            the file.

    Example:
        image, mask = load_pair("val/a.png", "val/a_mask.png", (360, 480), num_classes=11)
    """
    from PIL import Image

    image, mask = load_image(image_path), load_mask(mask_path, palette=palette)
    if image.shape[:2] != mask.shape:
        raise ValueError(size_mismatch_message(image_path, image.shape[:2], mask_path,
                                               mask.shape))
    if num_classes is not None:
        message = bad_value_message(mask_path, mask, num_classes, ignore_label)
        if message:
            raise ValueError(message)
    return _resized(image, size, Image.BILINEAR), _resized(mask, size, Image.NEAREST)


# PIL modes of single-channel images: label masks (index or palette PNGs) or grey photos.
MASK_MODES = ("1", "L", "LA", "P", "PA", "I", "I;16", "I;16B", "I;16L", "F")
# The grey ones: one grey level per pixel. A palette ("P") image is grey only when the colours
# its pixels use are.
GREY_MODES = ("L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
# An image with at most this many distinct values (single-channel) or colours (RGB) is taken for
# a label mask (class ids or class colours: a CamVid mask has ~11, an ADE20K one rarely 40); a
# grey photo has hundreds of grey levels and is read as RGB, as training, evaluate and predict
# read it, and a colour photo has thousands of colours.
MASK_MAX_VALUES = 64
_PHOTOS = "representative_data must be RGB photos with raw pixel values 0..255"
_RULE = (f"one with at most {MASK_MAX_VALUES} (keras_fcn.export.images.MASK_MAX_VALUES) is "
         "taken for a label mask")


def _single_channel(path):
    """The distinct values of the single channel (palette indices, grey levels) of the image
    at ``path``, and its palette (flat RGB list; None unless a palette image)."""
    from PIL import Image

    with file_errors("image", path), Image.open(path) as image:
        palette = image.getpalette() if image.mode in ("P", "PA") else None
        values = np.asarray(image)
    if values.ndim == 3:  # grey or palette plus alpha: the alpha is not the content
        values = values[..., 0]
    return np.unique(values), palette


def _grey_palette(values, palette):
    """Whether the palette colours of the indices ``values`` are all grey (R = G = B)."""
    colours = np.asarray(palette or [], np.int64).reshape(-1, 3)
    used = colours[values[values < len(colours)].astype(np.int64)]
    return bool((used == used[:, :1]).all())


def _distinct_colours(image):
    """How many distinct RGB colours a uint8 ``(H, W, 3)`` image holds."""
    rgb = image.astype(np.int32)
    return np.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]).size


def _mode(path):
    from PIL import Image

    with file_errors("image", path), Image.open(path) as image:
        return image.mode


def is_grey_photo(path):
    """True if the image at ``path`` is a grey photo: single-channel grey (:data:`GREY_MODES`),
    or a palette image whose colours are grey, with more than :data:`MASK_MAX_VALUES` distinct
    values (fewer: a label mask). A palette image of colours is a colour photo.

    Example:
        is_grey_photo("data/mine/train/masks/a.png")  # False: 11 class ids
    """
    path = os.fspath(path)
    mode = _mode(path)
    if mode not in (*GREY_MODES, "P", "PA"):
        return False
    values, palette = _single_channel(path)
    return values.size > MASK_MAX_VALUES and (palette is None or _grey_palette(values, palette))


def load_calibration_image(path, size=None):
    """:func:`load_image` for int8 calibration, refused when it looks like a label mask: a
    single-channel or palette image with at most :data:`MASK_MAX_VALUES` distinct values, or
    a colour image with at most that many distinct colours (a colour mask: a photo has
    thousands); a grey photo (more values) is read as RGB, as training reads it. The image is
    fully decoded: a truncated file fails here.

    Raises:
        ValueError: the file is damaged, not an image or a label mask (named, with its count of
            values or colours and the rule).

    Example:
        load_calibration_image("data/mine/train/images/grey.png", (90, 120)).shape  # (90, 120, 3)
    """
    from PIL import Image

    path = os.fspath(path)
    mode = _mode(path)
    if mode in MASK_MODES:
        count = _single_channel(path)[0].size
        if count <= MASK_MAX_VALUES:
            raise ValueError(
                f"image file {path!r} is a single-channel (mode {mode!r}) image, like a label "
                f"mask: {count} distinct value(s), and {_RULE} (a grey photo has hundreds); "
                f"{_PHOTOS}: pass the photos, not their masks (a low-contrast grey photo: save "
                "it as RGB).")
    image = read_image(path)
    if mode not in MASK_MODES:
        count = _distinct_colours(image)
        if count <= MASK_MAX_VALUES:
            raise ValueError(
                f"image file {path!r} is a colour (mode {mode!r}) image with only {count} "
                f"distinct colour(s), like a colour label mask: {_RULE} (a photo has "
                f"thousands); {_PHOTOS}: pass the photos (e.g. the images/ folder beside "
                "masks/), not the masks.")
    return _resized(image, size, Image.BILINEAR)


def check_calibration_images(paths):
    """Decodes every calibration image of ``paths`` (:func:`load_calibration_image`): what
    int8 calibration would refuse, found before anything is written.

    Returns:
        The grey photos among them (single-channel, read as RGB), for a note.

    Example:
        check_calibration_images(["a.png", "grey.png"])  # ['grey.png']
    """
    grey = []
    for path in paths:
        load_calibration_image(path)
        if is_grey_photo(path):
            grey.append(path)
    return grey


def _check_calibration_array(image, index):
    """Refuses what is plainly not RGB 0..255 images: a dict, a 2-D image, another channel
    count, negative values (already preprocessed), float data in 0..1, values above 255
    (:func:`keras_fcn._checks.pixel_value_problem`; uint8 images, as the files give, pass
    at once)."""
    if isinstance(image, dict):
        raise ValueError(f"representative_data yields dicts (keys {sorted(image)}); expected "
                         "images or (image, mask) tuples: map a dataset of dicts to its images, "
                         "e.g. dataset.map(lambda d: d['image']).")
    image = np.asarray(image)
    if image.ndim not in (3, 4) or image.shape[-1] != 3 or image.size == 0:
        raise ValueError(f"representative_data item {index} has shape {image.shape}; expected "
                         "an RGB image (H, W, 3) or a batch (N, H, W, 3).")
    problem, low, high = (pixel_value_problem(image, refuse_unit_floats=True)
                          or (None, None, None))
    if problem == "dtype":
        raise ValueError(f"representative_data item {index} has dtype {image.dtype}; expected "
                         "uint8 or float RGB 0..255.")
    if problem is not None:  # out of range, normalized, NaN or infinite
        raise ValueError(f"{_PHOTOS}, as the exported model takes them (not normalized or "
                         f"preprocessed). Received: representative_data item {index} of dtype "
                         f"{image.dtype} with values in [{float(low) + 0.0:g}, "
                         f"{float(high) + 0.0:g}]")  # + 0.0: no -0
    return image


def _resize_images(images, size):
    images = tf.convert_to_tensor(images)
    if images.shape.rank == 3:
        images = images[None]
    images = tf.cast(images, tf.float32)
    if tuple(images.shape[1:3]) != tuple(size):
        # antialiased, as training's --image_size resize (training.inputs.resize_pair)
        images = tf.image.resize(images, size, method="bilinear", antialias=True)
    return tf.clip_by_value(images, 0.0, 255.0)


def calibration_images(data, input_size, num_images=100):
    """Yields float32 ``(1, H, W, 3)`` raw RGB images (0..255) for int8 calibration.

    Args:
        data: a ``tf.data.Dataset`` of images (``(H, W, 3)`` or batched, RGB 0..255, or
            ``(image, mask)`` tuples), a folder of images, a list file (see
            :func:`read_list`), a list of image file paths, an ``(N, H, W, 3)`` array, an
            iterable of arrays, or a function returning such an iterable (the TFLite
            converter's ``representative_dataset`` convention; ``[image]`` items are taken).
        input_size: ``(height, width)``; images are resized (bilinear) to it.
        num_images: how many images to use at most (>= 1).

    Raises:
        ValueError: ``num_images`` < 1, or the data is plainly not RGB photos 0..255: a single
            ``(H, W, 3)`` array, 2-D images, dicts, float data in 0..1, negative values,
            label mask image files (single-channel, few values: a grey photo is read as RGB);
            the message names ``representative_data``.

    Example:
        next(calibration_images("camvid/val", (360, 480))).shape
    """
    num_images = check_positive_int("num_images", num_images)
    if isinstance(data, (str, os.PathLike)):
        items = (load_calibration_image(p, input_size)
                 for p, _ in read_list(os.fspath(data), calibration=True))
    elif isinstance(data, tf.data.Dataset):
        items = data.as_numpy_iterator()
    elif callable(data) and not hasattr(data, "__iter__"):  # the converter's own convention
        items = iter(data())
    elif isinstance(data, (list, tuple)) and data and all(
            isinstance(p, (str, os.PathLike)) for p in data):  # image files
        items = (load_calibration_image(os.fspath(p), input_size) for p in data)
    else:
        if isinstance(data, (np.ndarray, tf.Tensor)) and data.ndim != 4:
            raise ValueError("representative_data must be a batch of images (N, H, W, 3) or "
                             "an iterable of (H, W, 3) images; for one image pass [image]. "
                             f"Received: representative_data of shape {tuple(data.shape)}")
        items = iter(data)
    count = 0
    for index, item in enumerate(items):
        image = item[0] if isinstance(item, (tuple, list)) else item
        for one in _resize_images(_check_calibration_array(image, index), input_size).numpy():
            yield one[None]
            count += 1
            if count >= num_images:
                return
    if count == 0:
        raise ValueError(f"The representative data gave no images. Received: data={data!r}")


# Fewer calibration images than this: the int8 activation ranges may miss what photos hold.
FEW_CALIBRATION_IMAGES = 10


class CalibrationFiles:
    """Calibration image files read at ``size`` (:func:`load_calibration_image`) as they are
    fed to the converter, with a progress bar (``keras.utils.Progbar``; a line every 10 s
    when stdout is not a terminal): an iterable for ``representative_data``.

    Example:
        files = CalibrationFiles([p for p, _ in read_list("data/mine/train")][:100], (90, 120))
        export_tflite(model, "m_int8.tflite", input_size=(90, 120), quantization="int8",
                      representative_data=files, num_calibration_images=len(files))
    """

    def __init__(self, paths, size, progress=True):
        self.paths, self.size, self.progress = list(paths), size, progress

    def __len__(self):
        return len(self.paths)

    def __iter__(self):
        import sys

        import keras

        bar = (keras.utils.Progbar(len(self.paths), unit_name="image",
                                   interval=0.05 if sys.stdout.isatty() else 10.0)
               if self.progress else None)
        for done, path in enumerate(self.paths, start=1):
            image = load_calibration_image(path, self.size)
            if bar is not None:  # counted as read: the converter may stop after the last one
                bar.update(done)
            yield image

