"""The data of a training run: its splits, pipelines, pixel count and loss class weights.

Example:
    config = TrainConfig().replace(dataset="shapes", image_size=(48, 48))
    train_decoded, info, count = load_data(config, "train")
    val_decoded, _, _ = load_data(config, "val")
    train_ds, val_ds, eval_ds = make_pipelines(config, train_decoded, val_decoded, info)
"""

import math
import os

import numpy as np
import tensorflow as tf

from keras_fcn import data as data_lib
from keras_fcn import datasets as datasets_lib
from keras_fcn import io
from keras_fcn import losses as losses_lib
from keras_fcn.training import consistency, video_pairs
from keras_fcn.training.array_inputs import read_weights_file
from keras_fcn.training.run_dir import CLASS_WEIGHTS_FILE

CACHED_DATASETS = ("shapes", "camvid")  # small enough to cache decoded in memory


def load_data(config, split):
    """Loads one split of `config.data.dataset` with `keras_fcn.datasets.load_split`.

    Args:
        config: `TrainConfig` (dataset, data_dir, val_data_dir, num_classes, ...).
        split: "train" or "val".

    Returns:
        (`tf.data.Dataset` of decoded (image, mask), `DatasetInfo`, number of examples).

    Example:
        decoded, info, count = load_data(TrainConfig().replace(dataset="shapes"), "train")
    """
    data = config.data
    return datasets_lib.load_split(
        data.dataset, split, data_dir=data.data_dir, val_data_dir=data.val_data_dir,
        num_classes=data.num_classes, ignore_label=data.ignore_label,
        tfds_val_split=data.val_split, holdout=data.holdout, group_by=data.group_by,
        shapes_count=data.num_train if split == "train" else data.num_val,
        shapes_size=data.shapes_size, seed=config.run.seed)


def resize_pair(image, mask, size, resize_mask=True):
    """Resizes an image (bilinear, antialiased) and its mask (nearest) to `size`.

    Example:
        image, mask = resize_pair(image, mask, (180, 240))
    """
    image = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear", antialias=True)
    if resize_mask:
        mask = tf.image.resize(mask[..., tf.newaxis], size, method="nearest")[..., 0]
    return image, mask


def resize_images(decoded, size, resize_masks=True):
    """`decoded` (image, mask) elements resized with `resize_pair` (unchanged if `size` is
    None)."""
    if not size:
        return decoded
    return decoded.map(lambda i, m: resize_pair(i, m, size, resize_masks),
                       num_parallel_calls=tf.data.AUTOTUNE)


def check_temporal_options(config):
    """Checks the temporal-consistency options before anything is read or written: the warp
    limits, and that --temporal_warp, --temporal_loss and --unlabelled_video_dir come with
    --temporal_consistency > 0 (a ValueError names them).

    Example:
        >>> check_temporal_options(keras_fcn.training.TrainConfig().replace(
        ...     temporal_warp=(2.0, 0.01, 0.5)))
        Traceback (most recent call last):
        ValueError: temporal_warp and temporal_loss need temporal_consistency > 0. ...
    """
    optim = config.optim
    if optim.temporal_consistency:
        data_lib.warp_limits(optim.temporal_warp)
    elif optim.temporal_warp or optim.temporal_loss != consistency.DEFAULT_KIND:
        raise ValueError("temporal_warp and temporal_loss need temporal_consistency > 0. "
                         f"Received: temporal_consistency={optim.temporal_consistency!r}")
    elif config.data.unlabelled_video_dir:
        raise ValueError("unlabelled_video_dir needs temporal_consistency > 0. Received: "
                         f"temporal_consistency={optim.temporal_consistency!r}")


def make_pipelines(config, train_decoded, val_decoded, info, num_replicas=1):
    """Builds the train, validation and final-evaluation pipelines of a run.

    Returns:
        (train_ds, val_ds, eval_ds): train is augmented (crop, flip, scale, photometric,
        blur) and shuffled, repeated when `steps_per_epoch` is set; val has masks at the
        training resolution (for `val_mean_iu` during fit);
        with `temporal_consistency` the train batches are `keras_fcn.data.add_warped_pairs`
        pairs (plus `unlabelled_video_dir` pairs); eval has images at the training
        resolution and masks at full resolution, batch 1 (for the final figures).
    """
    size = config.data.image_size
    data = config.data
    cache = data.cache if data.cache is not None else data.dataset in CACHED_DATASETS
    common = dict(ignore_label=info.ignore_label, mean_rgb=info.mean_rgb)
    train_ds = data_lib.prepare_dataset(
        resize_images(train_decoded, size), batch_size=config.optim.batch_size,
        crop_size=data.crop_size, scale_range=data.scale_range, flip=data.flip,
        photometric=data.photometric, blur=data.blur, shuffle=True, seed=config.run.seed,
        cache=cache, drop_remainder=num_replicas > 1, **common)
    if config.optim.temporal_consistency:
        if num_replicas > 1:  # a replica would get originals and moved images of other pairs
            raise ValueError(f"temporal_consistency needs one replica. Received: "
                             f"{num_replicas} replicas (strategy={config.run.strategy!r})")
        train_ds = data_lib.add_warped_pairs(train_ds, seed=config.run.seed,
                                             **data_lib.warp_limits(config.optim.temporal_warp))
        if config.data.unlabelled_video_dir:
            train_ds = _with_video_pairs(config, train_ds)
    if config.optim.steps_per_epoch is not None:
        train_ds = train_ds.repeat()
    val_ds = data_lib.prepare_dataset(resize_images(val_decoded, size),
                                      batch_size=config.data.val_batch_size if size else 1,
                                      cache=cache, **common)
    eval_ds = data_lib.prepare_dataset(resize_images(val_decoded, size, resize_masks=False),
                                       batch_size=1, **common)
    return train_ds, val_ds, eval_ds


def _with_video_pairs(config, train_ds):
    if config.data.image_size is None or config.data.crop_size not in (None,
                                                                       config.data.image_size):
        raise ValueError("unlabelled_video_dir needs --image_size and no other --crop_size. "
                         f"Received: image_size={config.data.image_size}, "
                         f"crop_size={config.data.crop_size}")
    pairs = video_pairs.video_pair_dataset(
        config.data.unlabelled_video_dir, config.data.image_size,
        max_pairs=config.data.unlabelled_pairs)
    count = int(pairs.cardinality())
    cap = config.data.unlabelled_pairs
    print(f"Unlabelled video: {count} frame pairs read from {config.data.unlabelled_video_dir}"
          + (f" (--unlabelled_pairs={cap} at most)." if cap else "."), flush=True)
    # Every pair in the buffer (unlabelled_pairs=None reads them all; shuffle(None) failed).
    batches = pairs.shuffle(count, seed=config.run.seed).repeat().batch(
        config.optim.batch_size)
    return video_pairs.add_video_pairs(train_ds, batches)


def pixels_per_image(config, decoded):
    """Pixels of a training image: the crop, else the resize, else the mean of 20 images."""
    for size in (config.data.crop_size, config.data.image_size):
        if size:
            return int(size[0] * size[1])
    shapes = [tuple(image.shape[:2]) for image, _ in decoded.take(20)]
    return int(np.mean([h * w for h, w in shapes]))


def median_class_weights(info, train_decoded):
    """Median-frequency class weights (`keras_fcn.losses.median_frequency_weights`) of the
    masks of `train_decoded`, a list of `info.num_classes` floats (0 for absent classes).

    Example:
        median_class_weights(info, decoded)  # 50, 30, 15, 5 pixels in each mask
    """
    counts = losses_lib.class_pixel_counts(
        train_decoded.map(lambda i, m: m), info.num_classes, info.ignore_label)
    return [float(w) for w in losses_lib.median_frequency_weights(counts)]


def resolve_class_weights(config, info, train_decoded, run_dir):
    """Class weights of the loss: "none", "median" (median frequency over the training masks,
    cached in `run_dir/class_weights.json`), "sqrt_median" (their square roots: a milder
    balance) or a path to a JSON list / text file of floats.

    Returns:
        A list of floats or None.

    Example:
        resolve_class_weights(TrainConfig().replace(class_weights="none"), info, decoded, "runs/a")
    """
    choice = config.optim.class_weights or "none"
    if choice == "none":
        return None
    if choice in ("median", "sqrt_median"):
        path = os.path.join(run_dir, CLASS_WEIGHTS_FILE)  # the median weights, either way
        if os.path.exists(path):
            weights = io.read_json(path, "Class weights")
        else:
            weights = median_class_weights(info, train_decoded)
            io.write_json(path, weights)
        return weights if choice == "median" else [math.sqrt(w) for w in weights]
    if not os.path.isfile(choice):
        expected = ("expected 'none', 'median', 'sqrt_median' or the path of a JSON list / "
                    "text file of one weight per class")
        if os.path.isdir(choice):
            raise ValueError(f"--class_weights={choice!r} is a folder: {expected}.")
        if os.sep in choice or os.path.splitext(choice)[1]:
            raise FileNotFoundError(f"--class_weights={choice!r}: no such file ({expected}).")
        raise ValueError(f"--class_weights must be 'none', 'median', 'sqrt_median' or a file. "
                         f"Received: class_weights={choice!r}")
    return read_weights_file(choice, info.num_classes)
