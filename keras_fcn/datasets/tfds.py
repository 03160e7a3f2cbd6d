"""TensorFlow Datasets: segmentation data sets with masks (e.g. `oxford_iiit_pet`) as
(image, mask) elements, and a TFDS builder of VOC 2012 / SBD read from a manual folder.

Example:
    >>> import tensorflow_datasets as tfds

    pets = from_tfds(tfds.load("oxford_iiit_pet", split="train"),
                     label_remap=OXFORD_PET_REMAP)
"""

import functools
import os

import numpy as np
import tensorflow as tf

from keras_fcn._checks import check_choice
from keras_fcn.data.masks import read_mask
from keras_fcn.datasets.base import DatasetInfo
from keras_fcn.datasets.voc import sbd_pairs, seg11valid_pairs, voc_pairs
from keras_fcn.labels import IGNORE_LABEL

OXFORD_PET_REMAP = {1: 1, 2: 0, 3: IGNORE_LABEL}  # trimap: 1 pet, 2 background, 3 border -> void
OXFORD_PET_INFO = DatasetInfo("oxford_iiit_pet", 2, ("background", "pet"),
                              ((0, 0, 0), (128, 0, 0)), IGNORE_LABEL)


def _remap_table(label_remap):
    """Dense lookup table: value v -> label_remap.get(v, v)."""
    size = max(label_remap) + 1
    table = np.arange(size, dtype=np.int32)
    for key, value in label_remap.items():
        if key < 0:
            raise ValueError(f"label_remap keys must be >= 0. Received: {key}")
        table[key] = value
    return tf.constant(table)


def remap_labels(mask, label_remap):
    """Replaces mask values by `label_remap` (a dict); values not in it are kept.

    Negative mask values are refused (an InvalidArgumentError saying so): the keys of
    `label_remap` are >= 0, and a negative id is neither a class nor the void label.

    Example:
        >>> remap_labels(tf.constant([[1, 2, 3]]), {1: 1, 2: 0, 3: 255}).numpy()
        array([[  1,   0, 255]], dtype=int32)
    """
    table = _remap_table(label_remap)
    mask = tf.cast(mask, tf.int32)
    with tf.control_dependencies([tf.debugging.assert_non_negative(
            mask, message="remap_labels: the mask has negative values; class ids and the "
                          "void label are >= 0")]):
        mask = tf.identity(mask)
    inside = mask < tf.shape(table)[0]
    return tf.where(inside, tf.gather(table, tf.clip_by_value(mask, 0, tf.shape(table)[0] - 1)),
                    mask)


def from_tfds(dataset, *, label_remap=None, image_key="image", mask_key="segmentation_mask"):
    """Turns a TFDS segmentation data set of feature dicts into (image, mask) elements.

    The result has the structure `keras_fcn.data.prepare_dataset` takes (image uint8
    (H, W, 3), mask int32 (H, W)), so augmentation and batching are the same as for files.

    Args:
        dataset: `tf.data.Dataset` of dicts (e.g. from `tfds.load("oxford_iiit_pet")`).
        label_remap: optional dict old value -> new label (e.g. `OXFORD_PET_REMAP`).
        image_key: key of the image feature.
        mask_key: key of the mask feature ((H, W) or (H, W, 1)).

    Returns:
        `tf.data.Dataset` of (image, mask).

    Example:
        >>> import tensorflow_datasets as tfds

        pets = tfds.load("oxford_iiit_pet", split="train")
        ds = data.prepare_dataset(from_tfds(pets, label_remap=OXFORD_PET_REMAP),
                                  crop_size=256, batch_size=8, flip=True, seed=0)
    """

    def to_pair(features):
        image = features[image_key]
        mask = tf.cast(features[mask_key], tf.int32)
        if mask.shape.rank == 3:
            mask = mask[..., 0]
        if label_remap:
            mask = remap_labels(mask, label_remap)
        return image, mask

    return dataset.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE)


def load_tfds(name, split, *, data_dir=None, label_remap=None, image_key="image",
              mask_key="segmentation_mask", download=False):
    """`tfds.load(name, split)` then `from_tfds`. Downloads only when `download=True`.

    Example:
        pets = load_tfds("oxford_iiit_pet", "test", label_remap=OXFORD_PET_REMAP)
    """
    import tensorflow_datasets as tfds

    dataset = tfds.load(name, split=split, data_dir=data_dir, download=download)
    return from_tfds(dataset, label_remap=label_remap, image_key=image_key, mask_key=mask_key)


_TFDS_CONFIGS = ("voc2012", "sbd")


@functools.lru_cache(maxsize=None)
def _voc_builder_class():
    """Defines the TFDS builder on first use (TFDS is imported and registered lazily)."""
    import tensorflow_datasets as tfds

    class FcnVocSegmentation(tfds.core.GeneratorBasedBuilder):
        """PASCAL VOC 2012 segmentation and SBD, read from `manual_dir`."""

        VERSION = tfds.core.Version("1.0.0")
        # Nothing is downloaded, so there is no checksums file next to the code to look for
        # (and looking for it needs the optional `importlib_resources`).
        code_path = None
        BUILDER_CONFIGS = [
            tfds.core.BuilderConfig(name="voc2012", description="VOC2012 train/val + seg11valid"),
            tfds.core.BuilderConfig(name="sbd", description="SBD train/val (cls .mat masks)"),
        ]
        MANUAL_DOWNLOAD_INSTRUCTIONS = (
            "Put VOCdevkit/VOC2012 (voc2012 config) or benchmark_RELEASE/dataset (sbd config) "
            "in manual_dir."
        )

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                description="PASCAL VOC 2012 / SBD semantic segmentation (21 classes, void 255).",
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "segmentation_mask": tfds.features.Image(shape=(None, None, 1)),
                    "file_name": tfds.features.Text(),
                }),
                supervised_keys=("image", "segmentation_mask"),
            )

        def _split_generators(self, dl_manager):
            root = dl_manager.manual_dir
            if self.builder_config.name == "sbd":
                return {s: self._generate_examples(sbd_pairs(root, s)[0], "sbd_mat", s)
                        for s in ("train", "val")}
            splits = {s: self._generate_examples(voc_pairs(root, s)[0], "index", s)
                      for s in ("train", "val")}
            # seg11valid lists VOC2011 val images: a partial VOC2012 tree may lack some.
            splits["seg11valid"] = self._generate_examples(
                seg11valid_pairs(root)[0], "index", "seg11valid", skip_missing=True)
            return splits

        def _generate_examples(self, pairs, mask_format, split, skip_missing=False):
            for image_path, mask_path in pairs:
                if not os.path.isfile(image_path):
                    if skip_missing:
                        continue
                    raise FileNotFoundError(
                        f"Image '{image_path}' (mask '{mask_path}') is listed in the "
                        f"{self.builder_config.name} {split!r} split but does not exist; the "
                        "TFDS data set would be built without it. Restore the file or remove "
                        "its line from the split list.")
                mask = read_mask(mask_path, mask_format).astype(np.uint8)
                key = os.path.splitext(os.path.basename(image_path))[0]
                yield key, {"image": image_path, "segmentation_mask": mask[..., None],
                            "file_name": os.path.basename(image_path)}

    return FcnVocSegmentation


def voc_tfds_builder(config="voc2012", data_dir=None):
    """Returns the TFDS builder of VOC2012 (splits train, val, seg11valid) or SBD.

    Masks are stored as single-channel PNGs of class ids (palette indices for VOC, the
    `.mat` class maps for SBD), void 255. An image listed in a train or val split that is not
    in `manual_dir` is a FileNotFoundError naming it; only seg11valid skips missing images
    (a partial VOC2012 tree lacks some of its VOC2011 images).

    Args:
        config: "voc2012" or "sbd".
        data_dir: TFDS data folder.

    Returns:
        A `tfds.core.GeneratorBasedBuilder`; prepare it with the data in `manual_dir`.

    Example:
        >>> import tensorflow_datasets as tfds
        >>> builder = voc_tfds_builder("voc2012", data_dir="~/tfds")

        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir="~/data/VOCdevkit"))
        ds = from_tfds(builder.as_dataset(split="val"))
    """
    check_choice("config", config, _TFDS_CONFIGS)
    return _voc_builder_class()(config=config, data_dir=data_dir)
