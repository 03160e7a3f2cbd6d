"""Unlabelled frame pairs from the user's own footage for the temporal-consistency loss.

Consecutive frames of the videos (or folders of frames) in a folder, resized to the training
size, with the backward optical flow between them from OpenCV's DIS routine
(``pip install keras_fcn[flow]``) and a forward-backward check that leaves occluded pixels out.

Example:
    pairs = video_pair_dataset("footage/", (180, 240), max_pairs=500)
    train_ds = add_video_pairs(add_warped_pairs(train_ds), pairs.repeat().batch(4))
"""

import os

import numpy as np
import tensorflow as tf

from keras_fcn import io
from keras_fcn._checks import as_size, check_positive_int
from keras_fcn.data import warp as warp_lib
from keras_fcn.data.arrays import read_image
from keras_fcn.inference import video

FLOW_TOLERANCE = 0.5  # pixels: forward then backward flow must come back this close


def _cv2():
    try:
        import cv2
    except ImportError as e:
        raise ImportError("--unlabelled_video_dir needs OpenCV's optical flow: "
                          "`pip install keras_fcn[flow]` (opencv-python-headless).") from e
    return cv2


def estimate_flow(first, second):
    """The backward flow from ``second`` to ``first`` and where it can be trusted.

    Args:
        first, second: RGB uint8 ``(H, W, 3)`` frames.

    Returns:
        (float32 ``(H, W, 2)`` flow: pixel ``p`` of ``second`` shows what ``p + flow[p]``
        (``(x, y)``) of ``first`` shows; bool ``(H, W)`` valid: inside ``first`` and passing the
        forward-backward check (occluded pixels fail it)).

    Example:
        flow, valid = estimate_flow(frame_a, frame_b)
    """
    cv2 = _cv2()
    first, second = np.asarray(first), np.asarray(second)
    if first.shape != second.shape or first.ndim != 3 or first.shape[-1] != 3 \
            or first.dtype != np.uint8 or second.dtype != np.uint8:
        # A float frame reached OpenCV, which blamed the frame size.
        raise ValueError(f"estimate_flow needs two uint8 RGB frames of one (H, W, 3) shape. "
                         f"Received: {first.shape} {first.dtype} and {second.shape} "
                         f"{second.dtype}")
    gray = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in (first, second)]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    try:
        backward = dis.calc(gray[1], gray[0], None)  # second(p) ~ first(p + backward(p))
    except cv2.error as e:  # e.g. frames under 12 pixels
        raise ValueError(f"OpenCV's DIS optical flow cannot run on frames of "
                         f"{gray[0].shape[1]}x{gray[0].shape[0]} pixels (a larger --image_size?): "
                         f"{str(e).strip().splitlines()[-1]}") from None
    forward = dis.calc(gray[0], gray[1], None)
    height, width = gray[0].shape
    source = warp_lib.pixel_grid(height, width).numpy() + backward
    returned = warp_lib.sample(forward[None], source[None]).numpy()[0]
    error = np.hypot(*np.moveaxis(backward + returned, -1, 0))
    limit = FLOW_TOLERANCE + 0.05 * (np.hypot(*np.moveaxis(backward, -1, 0))
                                     + np.hypot(*np.moveaxis(returned, -1, 0)))
    valid = warp_lib.inside(source, height, width).numpy() & (error <= limit)
    return backward.astype("float32"), valid


def _clips(folder):
    """Frame iterators of the videos and frame folders in ``folder``, in natural order
    (``frame_2`` before ``frame_10``: consecutive frames make the pairs)."""
    if not os.path.isdir(folder):
        raise ValueError(f"unlabelled_video_dir must be a folder. Received: {folder!r}")

    def frames_of(path):
        for name in sorted(os.listdir(path), key=io.natural_key):
            if name.lower().endswith(io.IMAGE_EXTENSIONS):
                yield read_image(os.path.join(path, name))

    for name in sorted(os.listdir(folder), key=io.natural_key):
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            yield frames_of(path)
        elif video.is_video_file(path):
            yield video.read_video(path)


def video_pairs(folder, size, *, step=1, max_pairs=None):
    """Yields ``(first, second, flow, valid)`` of consecutive frames (``step`` apart) of the
    clips in ``folder``, resized to ``size`` (H, W); see `estimate_flow`. A frame of another
    size than the one before it starts a new clip: the two are not one camera's consecutive
    frames.

    Example:
        first, second, flow, valid = next(video_pairs("footage/", (180, 240)))
    """
    # `index % step` with 0 divided by zero, a negative or fractional step skipped frames
    # its own way, and max_pairs=0 (falsy) read every pair.
    step = check_positive_int("step", step)
    max_pairs = check_positive_int("max_pairs", max_pairs, allow_none=True)
    size = as_size("size", size)
    count = 0
    for frames in _clips(folder):
        previous = previous_shape = None
        for index, frame in enumerate(frames):
            if index % step:
                continue
            if np.shape(frame) != previous_shape:
                previous, previous_shape = None, np.shape(frame)
            frame = tf.image.resize(frame, size, antialias=True).numpy()
            frame = np.clip(np.round(frame), 0, 255).astype("uint8")
            if previous is not None:
                yield (previous, frame, *estimate_flow(previous, frame))
                count += 1
                if max_pairs and count >= max_pairs:
                    return
            previous = frame


def video_pair_dataset(folder, size, *, step=1, max_pairs=None):
    """`video_pairs` as a cached ``tf.data.Dataset`` (the flow is estimated once).

    Raises:
        ValueError: ``folder`` holds no pair of frames.

    Example:
        pairs = video_pair_dataset("footage/", (180, 240)).repeat().batch(4)
    """
    pairs = list(video_pairs(folder, size, step=step, max_pairs=max_pairs))
    if not pairs:
        raise ValueError(f"unlabelled_video_dir holds no two consecutive frames (videos or "
                         f"folders of images). Received: {folder!r}")
    first, second, flow, valid = (np.stack(column) for column in zip(*pairs))
    return tf.data.Dataset.from_tensor_slices((first.astype("float32"),
                                               second.astype("float32"), flow, valid))


def add_video_pairs(warped_pairs, video_batches):
    """Adds batches of `video_pair_dataset` to the elements of
    `keras_fcn.data.warp.add_warped_pairs` (same image size), in the layout
    `keras_fcn.training.consistency` reads: ``(concat([images, first, moved, second]),
    (masks, concat([flow, video_flow]), concat([valid, video_valid])))``.

    Example:
        train_ds = add_video_pairs(add_warped_pairs(train_ds), pairs.repeat().batch(4))
    """
    images_spec, pairs_spec = warped_pairs.element_spec[0], video_batches.element_spec[0]
    sizes = [tuple(spec.shape[1:3]) for spec in (images_spec, pairs_spec)]
    if len(images_spec.shape) == len(pairs_spec.shape) == 4 and None not in sizes[0] + sizes[1] \
            and sizes[0] != sizes[1]:
        raise ValueError(f"The video pairs must have the training images' size (H, W) "
                         f"{sizes[0]}. Received: pairs of {sizes[1]} (make them with "
                         f"video_pair_dataset(folder, size={sizes[0]}))")

    def merge(element, pair):
        (both, (masks, flow, valid)), (first, second, video_flow, video_valid) = element, pair
        images, moved = tf.split(both, 2)
        # Sizes unknown until run time (data sets of any size): the same check, as the batch
        # comes, where tf.concat failed with "ConcatOp : Dimensions of inputs should match".
        with tf.control_dependencies([tf.debugging.assert_equal(
                tf.shape(first)[1:3], tf.shape(images)[1:3],
                message="The video pairs must have the size (H, W) of the training images "
                        "(make them with video_pair_dataset(folder, size=that size)); the (H, "
                        "W) of the pairs, then of the images")]):
            first, video_flow, video_valid = map(tf.identity, (first, video_flow, video_valid))
        return (tf.concat([images, first, moved, second], 0),
                (masks, tf.concat([flow, video_flow], 0), tf.concat([valid, video_valid], 0)))

    return tf.data.Dataset.zip(warped_pairs, video_batches).map(
        merge, num_parallel_calls=tf.data.AUTOTUNE)
