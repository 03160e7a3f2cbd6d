"""One entry point for every supported data set: `load_split(name, split, ...)`.

It returns decoded, unbatched (image, mask) elements, ready for
`keras_fcn.data.prepare_dataset`, with the data set's `DatasetInfo` and its size:

```python
from keras_fcn import data, datasets

decoded, info, count = datasets.load_split("camvid", "train", data_dir="~/data/camvid")
ds = data.prepare_dataset(decoded, ignore_label=info.ignore_label, batch_size=8, flip=True)
# Validate on a drive the model never saw (train+val pooled, split by drive):
val, info, count = datasets.load_split("camvid", "val", data_dir="~/data/camvid",
                                       holdout="0006R0")
```
"""

import collections
import os
import re

import tensorflow as tf

from keras_fcn._checks import check_positive_int

from keras_fcn.data.decode import make_decode_fn
from keras_fcn.data.validate import validate_pairs
from keras_fcn.datasets import shapes
from keras_fcn.datasets.census import check_orientations, check_training_labels
from keras_fcn.datasets.folder import subfolders_note
from keras_fcn.datasets.pairs import (  # noqa: F401  (re-exported)
    DATASETS,
    HOLDOUT_DATASETS,
    check_files_exist,
    check_holdout,
    custom_info,
    file_pairs,
)
from keras_fcn.datasets.tfds import OXFORD_PET_INFO, OXFORD_PET_REMAP, load_tfds
from keras_fcn.labels import IGNORE_LABEL

# In-memory shapes sizes when `shapes_count` is not given (the training defaults).
SHAPES_COUNTS = {"train": 300, "val": 50}
# The (pairs, info) of each split `decode_pairs` made a pipeline of in this process. A file
# the pipeline cannot decode stops it with a TensorFlow error that has no file name (a TF
# decode error cannot be caught inside the graph, and naming each file there costs ~6% of
# the decoding: docs/reliability.md); `undecodable_file_message` then finds the file here.
_READ_SPLITS = collections.deque(maxlen=8)
# "Invalid PNG data, size 141655": the size in bytes of the input the decoder refused.
_DATA_SIZE = re.compile(r"\bsize (\d+)\b")
# The errors of TensorFlow's image decoders (no other error sends it looking for a file).
_DECODE_ERROR = re.compile(r"PNG|JPEG|GIF|BMP|image|Input is empty|decod", re.IGNORECASE)


def decode_pairs(pairs, info):
    """Reads (image path, mask path) pairs into decoded (image, mask) elements.

    Example:
        decoded = decode_pairs(*datasets.camvid_pairs("~/data/camvid", "val"))
    """
    pairs = [(str(image), str(mask)) for image, mask in pairs]
    if not any(read[0] == pairs for read in _READ_SPLITS):
        _READ_SPLITS.append((pairs, info))
    paths = tf.data.Dataset.from_tensor_slices(([p[0] for p in pairs], [p[1] for p in pairs]))
    kwargs = info.dataset_kwargs()
    decode = make_decode_fn(num_classes=kwargs["num_classes"],
                            ignore_label=kwargs["ignore_label"],
                            mask_format=kwargs["mask_format"], palette=kwargs["palette"])
    return paths.map(decode, num_parallel_calls=tf.data.AUTOTUNE)


def _file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def undecodable_file_message(error):
    """For a TensorFlow error that stopped a pipeline of `decode_pairs` on a file it cannot
    decode ("Invalid PNG data", "Input is empty", ...): a message naming the bad file(s),
    found by validating the pairs of the last 8 splits read in this process (those of the
    file size the error names first, then all, newest split first, with a progress bar from
    200 pairs); None for another error or when every file decodes.

    Example:
        try:
            model.fit(make_pipelines(...))
        except tf.errors.InvalidArgumentError as error:
            raise ValueError(undecodable_file_message(error) or str(error)) from error
    """
    text = getattr(error, "message", None) or ""
    if not isinstance(error, tf.errors.OpError) or not _DECODE_ERROR.search(text):
        return None
    size = _DATA_SIZE.search(text)
    size = int(size.group(1)) if size else None
    for pairs, info in reversed(_READ_SPLITS):
        first = [pair for pair in pairs if size is not None and size in map(_file_size, pair)]
        for candidates in (first, pairs):
            if not candidates:
                continue
            kwargs = {key: value for key, value in info.dataset_kwargs().items()
                      if key != "mean_rgb"}
            try:
                validate_pairs(candidates, verbose="auto", **kwargs)
            except ValueError as found:
                return str(found)
    return None


def _tfds_split(tfds_name, split, *, data_dir, num_classes, ignore_label, tfds_val_split):
    remap, info = None, None
    if tfds_name.startswith("oxford_iiit_pet"):
        remap, info = OXFORD_PET_REMAP, OXFORD_PET_INFO
    info = info or custom_info(tfds_name, num_classes, ignore_label)
    tfds_split = "train" if split == "train" else (tfds_val_split or "test")
    decoded = load_tfds(tfds_name, tfds_split, data_dir=data_dir, label_remap=remap)
    return decoded, info, int(decoded.cardinality())


def load_split(name, split, *, data_dir=None, val_data_dir=None, num_classes=None,
               ignore_label=IGNORE_LABEL, tfds_val_split=None, shapes_count=None, shapes_size=64,
               seed=0, holdout=None, group_by=None):
    """Loads one split of a data set as decoded, unbatched (image, mask) elements.

    Args:
        name: one of `DATASETS`: "shapes" (in memory unless `data_dir` holds a copy written by
            `make_shapes_dataset`), "camvid", "voc", "sbd", "folder" or "tfds:<tfds name>".
        split: "train" or "val" ("val" is seg11valid for sbd when `val_data_dir` is a VOC
            folder, VOC val for voc, `tfds_val_split` or "test" for TFDS); voc also takes
            "trainval" and "seg11valid" (the paper's validation split, from `data_dir`).
        data_dir: the data set's folder (the TFDS data folder for "tfds:...").
        val_data_dir: VOC folder for sbd's seg11valid validation split.
        num_classes: number of classes of "folder" and TFDS data sets without metadata.
        ignore_label: their void label.
        tfds_val_split: TFDS split used as "val" (default "test").
        shapes_count: number of in-memory shapes examples (default 300 train, 50 val).
        shapes_size: side of the in-memory shapes images.
        seed: seed of the in-memory shapes data set.
        holdout: groups of frames to validate on, for "camvid" (drives: "0006R0",
            "0006R0,0001TP" or a sequence) and "folder" (with `group_by`). The train and val
            frames are pooled; "val" is then the frames of these groups, "train" the others,
            so no frame of a held-out group is trained on.
        group_by: "folder": a regex on the image file names whose first group (or whole
            match) is a frame's group (its video, drive or camera).

    Returns:
        (`tf.data.Dataset` of (image uint8 (H, W, 3), mask (H, W)), `DatasetInfo`,
        number of examples).

    Example:
        >>> decoded, info, count = load_split("shapes", "val", shapes_count=8)
        >>> count, info.num_classes
        (8, 4)

        load_split("camvid", "val", data_dir="~/data/camvid", holdout="0006R0")[2]
    """
    check_holdout(name, holdout, group_by)
    if name == "shapes" and not data_dir:
        count = SHAPES_COUNTS.get(split, SHAPES_COUNTS["val"]) if shapes_count is None \
            else shapes_count
        start = 0 if split == "train" else shapes.VAL_OFFSET
        check_positive_int("shapes_count", count)
        check_positive_int("shapes_size", shapes_size)
        images, masks = shapes.shapes_arrays(count, shapes_size, seed, start)
        return tf.data.Dataset.from_tensor_slices((images, masks)), shapes.SHAPES_INFO, count
    if name.startswith("tfds:"):
        return _tfds_split(name[len("tfds:"):], split, data_dir=data_dir,
                           num_classes=num_classes, ignore_label=ignore_label,
                           tfds_val_split=tfds_val_split)
    if not data_dir:
        raise ValueError(f"--dataset={name} needs --data_dir. Received: data_dir=None")
    pairs, info = file_pairs(name, split, data_dir, val_data_dir, num_classes, ignore_label,
                             holdout, group_by)
    if not pairs:
        folder = os.path.join(data_dir, split)
        note = subfolders_note(os.path.join(folder, "images"), os.path.join(folder, "masks"))
        raise ValueError(f"The {split!r} split of --dataset={name} has no image/mask pairs "
                         f"(data_dir={data_dir!r}); expected at least one{note}")
    check_files_exist(pairs, data_dir)
    if name == "folder":  # one's own files: photos turned by EXIF, masks with nothing to learn
        check_orientations(pairs)
        if split == "train":
            check_training_labels(pairs, info)
    return decode_pairs(pairs, info), info, len(pairs)
