"""The data of a recipe where TensorFlow is not installed: file pairs in `keras.utils.PyDataset`s.

On a JAX or PyTorch machine without TensorFlow, `keras_fcn.training.run` reads the same
(image, mask) file pairs as the tf.data path (`keras_fcn.datasets.file_pairs`) into
`keras_fcn.data.arrays.SegmentationPyDataset`s: decoding, resizing, random scale, crop, flip,
blur and photometric colour jitter. The "shapes" data set is written to PNG files first
(`make_shapes_dataset`, seeded as the in-memory one). With `steps_per_epoch`, the training
batches are an `EpochStream`: the data's epochs end to end, cut into epochs of that many steps
(tf.data's `repeat()`). Options built on tf.data only (temporal consistency, TFDS) are refused
up front, naming the option.

Example:
    train_ds, val_ds, eval_ds, info, counts = load_pipelines(TrainConfig().replace(epochs=1))
"""

import atexit
import json
import math
import os
import shutil
import tempfile

import keras
import numpy as np

from keras_fcn import io
from keras_fcn import losses as losses_lib
from keras_fcn._checks import check_positive_int
from keras_fcn.data.arrays import make_pydataset
from keras_fcn.data.masks import read_mask
from keras_fcn.datasets import shapes
from keras_fcn.datasets.census import check_orientations, check_training_labels
from keras_fcn.datasets.pairs import file_pairs
from keras_fcn.training.run_dir import CLASS_WEIGHTS_FILE

# Options whose implementation is tf.data's, with their "off" value.
TF_DATA_OPTIONS = {"temporal_consistency": 0.0, "unlabelled_video_dir": None}


def check_options(config):
    """Raises a ValueError naming the first option that needs the tf.data pipeline."""
    for name, off in TF_DATA_OPTIONS.items():
        value = config.flat()[name]
        if value not in (off, None):
            raise ValueError(f"--{name} needs the tf.data pipeline (install TensorFlow); "
                             f"without it leave it off. Received: {name}={value!r}")
    if config.data.dataset.startswith("tfds:"):
        raise ValueError("TFDS data sets need TensorFlow. Received: "
                         f"dataset={config.data.dataset!r}")


def _shapes_dir(config):
    """A folder holding the shapes data set as files: `data_dir`, else one written now."""
    if config.data.data_dir is not None:
        return config.data.data_dir
    directory = tempfile.mkdtemp(prefix="keras_fcn_shapes_")
    # The datasets read these files until the process ends: removed then, not left in /tmp.
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    data = config.data
    shapes.make_shapes_dataset(directory, num_train=data.num_train, num_val=data.num_val,
                               size=data.shapes_size, seed=config.run.seed)
    return directory


def split_pairs(config, split, data_dir):
    """(pairs, `DatasetInfo`) of one split of `config.data.dataset`."""
    return file_pairs(config.data.dataset, split, data_dir, val_data_dir=config.data.val_data_dir,
                      num_classes=config.data.num_classes, ignore_label=config.data.ignore_label,
                      holdout=config.data.holdout, group_by=config.data.group_by)


def read_weights_file(path, num_classes):
    """Class weights from a JSON list or a text file of numbers, one per class."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        parsed = json.loads(text)
        if isinstance(parsed, dict):  # float() over a dict's keys: names, not weights
            raise TypeError("a JSON object")
        weights = [float(w) for w in parsed]
    except (ValueError, TypeError):
        try:
            weights = [float(w) for w in text.replace(",", " ").split()]
        except ValueError:
            weights = None
    if weights is None or not all(math.isfinite(w) and w >= 0 for w in weights):
        raise ValueError(f"--class_weights file '{path}' must hold a JSON list or "
                         f"whitespace/comma-separated finite numbers >= 0, one per class. "
                         f"Received: {text[:200]!r}")
    if len(weights) != num_classes:
        raise ValueError(f"--class_weights file '{path}' has {len(weights)} weights; "
                         f"{num_classes} classes. Received: {weights}")
    return weights


def class_weights_of(config, info, pairs, run_dir):
    """The loss class weights of ``--class_weights`` ("none", "median", "sqrt_median" or a
    file), the median ones counted over the training masks (cached in the run folder, as the
    tf.data path does)."""
    choice = config.optim.class_weights or "none"
    if choice == "none":
        return None
    if choice not in ("median", "sqrt_median"):
        if not os.path.isfile(choice):
            raise ValueError("--class_weights must be 'none', 'median', 'sqrt_median' or a "
                             f"file. Received: class_weights={choice!r}")
        return read_weights_file(choice, info.num_classes)
    path = os.path.join(run_dir, CLASS_WEIGHTS_FILE)
    if os.path.exists(path):
        weights = io.read_json(path, "Class weights")
    else:
        masks = (read_mask(mask, mask_format=info.mask_format, palette=info.palette,
                           ignore_label=info.ignore_label) for _, mask in pairs)
        counts = losses_lib.class_pixel_counts(masks, info.num_classes, info.ignore_label)
        weights = [float(w) for w in losses_lib.median_frequency_weights(counts)]
        io.write_json(path, weights)
    return weights if choice == "median" else [math.sqrt(w) for w in weights]


def pixels_per_image(config, pairs, info):
    """Pixels of a training image: the crop, else the resize, else the mean of 20 masks."""
    for size in (config.data.crop_size, config.data.image_size):
        if size:
            return int(size[0] * size[1])
    sizes = [read_mask(mask, mask_format=info.mask_format, palette=info.palette).size
             for _, mask in pairs[:20]]
    return int(np.mean(sizes))


MAX_WORKERS = 8  # reader threads of a run's PyDatasets, at most (tf.data's AUTOTUNE's role)


def data_workers():
    """Threads that read a run's PyDatasets: one per CPU core this process may use, at most
    `MAX_WORKERS`. Batches are pure functions of (seed, epoch, index), so any number of
    workers gives the same batches; on 2 cores, 2 threads read CamVid's augmented images at
    1.5x one thread's rate (benchmarks/results/array_pipeline.md).

    Example:
        >>> 1 <= data_workers() <= MAX_WORKERS
        True
    """
    return max(1, min(usable_cores(), MAX_WORKERS))


def usable_cores():
    """The CPU cores this process may run on (its affinity; all of them where there is none).

    Example:
        >>> usable_cores() >= 1
        True
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def load_pipelines(config, run_dir=None, num_replicas=1):
    """The train, validation and final-evaluation `SegmentationPyDataset`s of a run.

    Returns:
        (train_ds, val_ds, eval_ds, info, (train count, val count), class_weights, pixels):
        train is augmented (scale, crop, flip, blur, photometric) and shuffled per epoch with
        ``config.run.seed`` (an `EpochStream` of ``config.optim.steps_per_epoch`` batches per
        epoch when set);
        val has masks at the training resolution (``image_size``); eval has images at the
        training resolution and masks at full size, batch 1, for the final figures.

    Raises:
        ValueError: an option that needs tf.data, or a bad data set argument (named).
    """
    check_options(config)
    data_dir = _shapes_dir(config) if config.data.dataset == "shapes" else config.data.data_dir
    train_pairs, info = split_pairs(config, "train", data_dir)
    val_pairs, _ = split_pairs(config, "val", data_dir)
    if config.data.dataset == "folder":  # one's own files: EXIF turns, nothing to learn
        check_orientations(train_pairs + val_pairs)
        check_training_labels(train_pairs, info)
    common = dict(num_classes=info.num_classes, ignore_label=info.ignore_label,
                  mask_format=info.mask_format, palette=info.palette, mean_rgb=info.mean_rgb)
    size, workers = config.data.image_size, data_workers()
    train_ds = make_pydataset(train_pairs, batch_size=config.optim.batch_size,
                              crop_size=config.data.crop_size, image_size=size,
                              scale_range=config.data.scale_range, flip=config.data.flip,
                              blur=config.data.blur, photometric=config.data.photometric,
                              shuffle=True, seed=config.run.seed,
                              drop_remainder=num_replicas > 1, workers=workers, **common)
    val_ds = make_pydataset(val_pairs, batch_size=config.data.val_batch_size if size else 1,
                            image_size=size, workers=workers, **common)
    eval_ds = FullSizeMasks(make_pydataset(val_pairs, image_size=size, **common),
                            val_pairs, info) if size else val_ds
    if run_dir is None:  # the median weights are cached in a folder removed with the process
        run_dir = tempfile.mkdtemp(prefix="keras_fcn_weights_")
        atexit.register(shutil.rmtree, run_dir, ignore_errors=True)
    weights = class_weights_of(config, info, train_pairs, run_dir)
    if config.optim.steps_per_epoch is not None:
        train_ds = EpochStream(train_ds, config.optim.steps_per_epoch)
    return (train_ds, val_ds, eval_ds, info, (len(train_pairs), len(val_pairs)), weights,
            pixels_per_image(config, train_pairs, info))


def evaluation_data(config, split, image_size=None, max_images=0):
    """The images of one split for a final evaluation without TensorFlow (`tools/evaluate.py`):
    batch 1, images resized to ``image_size`` (None: native size), masks at full size.

    Returns:
        (batches, `DatasetInfo`, image count).

    Example:
        batches, info, count = evaluation_data(TrainConfig().replace(dataset="shapes"), "val")
    """
    check_options(config)
    data_dir = _shapes_dir(config) if config.data.dataset == "shapes" else config.data.data_dir
    pairs, info = split_pairs(config, split, data_dir)
    if config.data.dataset == "folder":
        check_orientations(pairs)
    if max_images:
        pairs = pairs[:max_images]
    dataset = make_pydataset(pairs, image_size=image_size, num_classes=info.num_classes,
                             ignore_label=info.ignore_label, mask_format=info.mask_format,
                             palette=info.palette, mean_rgb=info.mean_rgb)
    return FullSizeMasks(dataset, pairs, info), info, len(pairs)


class FullSizeMasks:
    """The batches of an unshuffled batch-1 ``dataset`` (resized images) with their masks read
    at full size: the final evaluation at label resolution."""

    def __init__(self, dataset, pairs, info):
        self.dataset, self.pairs, self.info = dataset, pairs, info

    def __len__(self):
        return len(self.dataset)

    def __iter__(self):
        for index in range(len(self.dataset)):
            images, _ = self.dataset[index]
            mask = read_mask(self.pairs[index][1], mask_format=self.info.mask_format,
                             palette=self.info.palette, ignore_label=self.info.ignore_label)
            yield images, np.asarray(mask, "int32")[None]


class EpochStream(keras.utils.PyDataset):
    """Epochs of `steps_per_epoch` batches cut from the endless stream of ``dataset``'s epochs
    (a `keras_fcn.data.arrays.SegmentationPyDataset`), as tf.data's ``repeat()`` feeds
    ``fit(steps_per_epoch=...)``: epoch ``e`` reads batches ``e * steps`` to ``(e + 1) * steps
    - 1`` of the stream, each batch of the stream batch ``b`` of the dataset's epoch ``d``
    (its order and draws). Keras alone keeps one iterator of a PyDataset across epochs and
    ends an epoch early when it runs out; here every epoch has its steps, the order and draws
    depend on (seed, epoch, step) only, and a resume moves the stream on by its ``epoch``
    counter like any keras_fcn PyDataset. With ``steps_per_epoch`` equal to the dataset's
    batches, the stream reads what the dataset reads.

    Example:
        stream = EpochStream(train_ds, steps_per_epoch=50)
        model.fit(stream, epochs=10, shuffle=False)
    """

    def __init__(self, dataset, steps_per_epoch):
        steps_per_epoch = check_positive_int("steps_per_epoch", steps_per_epoch)
        if len(dataset) < 1:
            raise ValueError(f"The data has no batch to stream. Received: {len(dataset)} "
                             "batches")
        self.dataset, self.steps_per_epoch, self.epoch = dataset, steps_per_epoch, 0
        super().__init__(workers=dataset.workers, use_multiprocessing=dataset.use_multiprocessing,
                         max_queue_size=dataset.max_queue_size)

    def __len__(self):
        return self.steps_per_epoch

    def on_epoch_end(self):
        """Moves to the next epoch's steps of the stream."""
        self.epoch += 1

    def epoch_order(self, epoch=None):
        """The (dataset epoch, dataset batch) of each step of `epoch` (default: the current)."""
        epoch = self.epoch if epoch is None else epoch
        first = epoch * self.steps_per_epoch
        return [divmod(step, len(self.dataset))
                for step in range(first, first + self.steps_per_epoch)]

    def __getitem__(self, index):
        if not 0 <= index < self.steps_per_epoch:
            raise IndexError(f"Step {index} is out of range: an epoch has "
                             f"{self.steps_per_epoch} steps.")
        data_epoch, batch = divmod(self.epoch * self.steps_per_epoch + index, len(self.dataset))
        return self.dataset.batch(batch, data_epoch)
