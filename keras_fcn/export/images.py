"""Images for calibration and for the quality gate: a folder, or a list file of
``image [mask]`` lines, read at the exported model's input size.

Example:
    pairs = read_list("camvid/val.txt")
    image = load_image(pairs[0][0], size=(360, 480))      # uint8 (360, 480, 3)
    next(calibration_images("camvid/train.txt", (360, 480))).shape
"""

import os

import numpy as np
import tensorflow as tf

from keras_fcn.io import IMAGE_EXTENSIONS


def read_list(path):
    """Reads a folder of images or a list file of ``image [mask]`` lines (relative paths are
    relative to the list file's folder).

    Returns:
        A list of ``(image_path, mask_path or None)``.

    Example:
        read_list("camvid/val.txt")[0]
    """
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.lower().endswith(IMAGE_EXTENSIONS))
        if not names:
            raise ValueError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) in folder {path!r}")
        return [(os.path.join(path, n), None) for n in names]
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Image folder or list file not found: {path!r}")
    root = os.path.dirname(os.path.abspath(path))
    pairs = []
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) > 2:
                raise ValueError(f"{path}:{number}: expected 'image [mask]'. Received: {line!r}")
            paths = [p if os.path.isabs(p) else os.path.join(root, p) for p in fields]
            pairs.append((paths[0], paths[1] if len(paths) > 1 else None))
    if not pairs:
        raise ValueError(f"List file {path!r} has no entries.")
    return pairs


def load_image(path, size=None):
    """Reads an RGB image as uint8 ``(H, W, 3)``, resized (bilinear) to ``size=(h, w)``."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        if size is not None and image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.BILINEAR)
        return np.asarray(image, dtype=np.uint8)


def load_mask(path, size=None):
    """Reads an index mask as int32 ``(H, W)``, resized (nearest) to ``size=(h, w)``."""
    from PIL import Image

    with Image.open(path) as mask:
        if mask.mode not in ("L", "P", "I", "I;16"):
            raise ValueError(f"Mask {path!r} must be a single-channel index image. "
                             f"Received mode={mask.mode!r}")
        if size is not None and mask.size != (size[1], size[0]):
            mask = mask.resize((size[1], size[0]), Image.NEAREST)
        return np.asarray(mask, dtype=np.int32)


def _resize_images(images, size):
    images = tf.convert_to_tensor(images)
    if images.shape.rank == 3:
        images = images[None]
    images = tf.cast(images, tf.float32)
    if tuple(images.shape[1:3]) != tuple(size):
        images = tf.image.resize(images, size, method="bilinear")
    return tf.clip_by_value(images, 0.0, 255.0)


def calibration_images(data, input_size, num_images=100):
    """Yields float32 ``(1, H, W, 3)`` raw RGB images (0..255) for int8 calibration.

    Args:
        data: a ``tf.data.Dataset`` of images (``(H, W, 3)`` or batched, RGB 0..255, or
            ``(image, mask)`` tuples), a folder of images, a list file (see
            :func:`read_list`), or an iterable of arrays.
        input_size: ``(height, width)``; images are resized (bilinear) to it.
        num_images: how many images to use at most.

    Example:
        next(calibration_images("camvid/val", (360, 480))).shape
    """
    if isinstance(data, (str, os.PathLike)):
        items = (load_image(p, input_size) for p, _ in read_list(os.fspath(data)))
    elif isinstance(data, tf.data.Dataset):
        items = data.as_numpy_iterator()
    else:
        items = iter(data)
    count = 0
    for item in items:
        image = item[0] if isinstance(item, (tuple, list)) else item
        for one in _resize_images(image, input_size).numpy():
            yield one[None]
            count += 1
            if count >= num_images:
                return
    if count == 0:
        raise ValueError(f"The representative data gave no images. Received: data={data!r}")
