"""Dataset readers: (image, mask) path pairs plus class metadata, and TFDS adapters.

Every reader returns `(pairs, info)`: a list of (image path, mask path) and a `DatasetInfo`
whose `dataset_kwargs()` plug straight into `keras_fcn.data.make_dataset`:

```python
from keras_fcn import data, datasets

pairs, info = datasets.voc_pairs("~/data/VOCdevkit", "train")
ds = data.make_dataset(pairs, **info.dataset_kwargs(), crop_size=320, batch_size=8)
```

Readers: PASCAL VOC 2012 (`voc_pairs`), SBD (`sbd_pairs`), the FCN paper's validation split
seg11valid (`seg11valid_pairs`), CamVid list files (`camvid_pairs`), generic list files
(`list_file_pairs`) and folders matched by file stem (`folder_pairs`). For TFDS:
`voc_tfds_builder` (VOC/SBD from a manual_dir) and `from_tfds` (any TFDS data set with masks,
e.g. `oxford_iiit_pet`).
"""

import dataclasses
import functools
import logging
import os

import numpy as np
import tensorflow as tf

from keras_fcn import data as data_lib
from keras_fcn._checks import check_choice

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
MASK_EXTENSIONS = (".png", ".bmp", ".mat")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model and pipeline need to know about a data set.

    Attributes:
        name: data set name.
        num_classes: number of classes (not counting the ignore label).
        class_names: names by class id.
        palette: (r, g, b) colours by class id, for display or colour-coded masks; when the
            ignore label indexes into it, that entry is the void colour.
        ignore_label: the void label, ignored in loss and metrics.
        mean_rgb: mean pixel (RGB), used as padding colour.
        mask_format: mask file format for `make_dataset` ("index", "rgb" or "sbd_mat").
    """

    name: str
    num_classes: int
    class_names: tuple
    palette: tuple
    ignore_label: int = data_lib.IGNORE_LABEL
    mean_rgb: tuple = data_lib.MEAN_RGB
    mask_format: str = "index"

    def dataset_kwargs(self):
        """Returns the keyword arguments of `make_dataset` that this data set fixes."""
        return {
            "num_classes": self.num_classes,
            "ignore_label": self.ignore_label,
            "mask_format": self.mask_format,
            "palette": self.palette if self.mask_format == "rgb" else None,
            "mean_rgb": self.mean_rgb,
        }


# --------------------------------------------------------------------------------------------
# PASCAL VOC / SBD
# --------------------------------------------------------------------------------------------

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)


def voc_palette(num_colours=256):
    """Returns the PASCAL VOC colour map: bits of the index spread over R, G and B.

    Bit k of the index goes to bit (7 - k // 3) of R, G or B (k % 3 = 0, 1, 2).

    Args:
        num_colours: number of entries.

    Returns:
        Tuple of (r, g, b) tuples; entry 255 is the void colour (224, 224, 192).

    Example:
        >>> voc_palette()[:3]
        ((0, 0, 0), (128, 0, 0), (0, 128, 0))
    """
    colours = []
    for index in range(num_colours):
        rgb = [0, 0, 0]
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((index >> (3 * bit + channel)) & 1) << (7 - bit)
        colours.append(tuple(rgb))
    return tuple(colours)


VOC_INFO = DatasetInfo("voc2012", 21, VOC_CLASSES, voc_palette(), 255)
SBD_INFO = dataclasses.replace(VOC_INFO, name="sbd", mask_format="sbd_mat")

_SPLITS = ("train", "val", "trainval")


def _check_split(split, allowed=_SPLITS):
    if split not in allowed:
        raise ValueError(f"`split` must be one of {allowed}. Received: split={split!r}")


def _read_ids(path):
    """Reads one id (or one whitespace-separated record) per non-empty line."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"List file '{path}' does not exist")
    try:
        with open(path, encoding="utf-8") as file:
            return [line.strip() for line in file if line.strip()]
    except UnicodeDecodeError as error:
        raise ValueError(f"List file '{path}' is not UTF-8 text: {error}") from None


def _find_voc_root(root, year="2012"):
    """Accepts VOCdevkit/VOC20xx, VOCdevkit, or the folder that holds VOCdevkit."""
    root = os.path.expanduser(os.fspath(root))
    for candidate in (root, os.path.join(root, f"VOC{year}"),
                      os.path.join(root, "VOCdevkit", f"VOC{year}")):
        if os.path.isdir(os.path.join(candidate, "SegmentationClass")):
            return candidate
    raise FileNotFoundError(
        f"No VOC{year} layout (JPEGImages, SegmentationClass, ImageSets/Segmentation) found "
        f"under '{root}'"
    )


def _voc_pairs_for_ids(voc_root, ids):
    return [(os.path.join(voc_root, "JPEGImages", f"{i}.jpg"),
             os.path.join(voc_root, "SegmentationClass", f"{i}.png")) for i in ids]


def voc_pairs(root, split="train", year="2012"):
    """Reads the PASCAL VOC segmentation split (palette PNG masks, void 255).

    Args:
        root: `VOCdevkit/VOC2012`, `VOCdevkit` or the folder holding `VOCdevkit`.
        split: "train", "val" or "trainval" (ImageSets/Segmentation/{split}.txt).
        year: "2012" (or "2011" etc. for older releases with the same layout).

    Returns:
        (pairs, `VOC_INFO`).

    Example:
        >>> pairs, info = voc_pairs("~/data/VOCdevkit", "val")
        >>> len(pairs), info.num_classes
        (1449, 21)
    """
    _check_split(split)
    voc_root = _find_voc_root(root, year)
    ids = _read_ids(os.path.join(voc_root, "ImageSets", "Segmentation", f"{split}.txt"))
    return _voc_pairs_for_ids(voc_root, ids), VOC_INFO


def _find_sbd_root(root):
    """Accepts benchmark_RELEASE/dataset, benchmark_RELEASE, or the folder that holds it."""
    root = os.path.expanduser(os.fspath(root))
    for candidate in (root, os.path.join(root, "dataset"),
                      os.path.join(root, "benchmark_RELEASE", "dataset")):
        if os.path.isdir(os.path.join(candidate, "cls")):
            return candidate
    raise FileNotFoundError(f"No SBD layout (img, cls, train.txt, val.txt) found under '{root}'")


def sbd_pairs(root, split="train"):
    """Reads the Semantic Boundaries Dataset (Hariharan et al. 2011) split.

    Masks are `cls/{id}.mat` files (`GTcls.Segmentation`); read them with
    `mask_format="sbd_mat"` (set by `SBD_INFO.dataset_kwargs()`), which needs scipy.

    Args:
        root: `benchmark_RELEASE/dataset` (or a parent folder).
        split: "train" (8,498 images) or "val" (2,857).

    Returns:
        (pairs, `SBD_INFO`).
    """
    _check_split(split, ("train", "val"))
    sbd_root = _find_sbd_root(root)
    ids = _read_ids(os.path.join(sbd_root, f"{split}.txt"))
    pairs = [(os.path.join(sbd_root, "img", f"{i}.jpg"),
              os.path.join(sbd_root, "cls", f"{i}.mat")) for i in ids]
    return pairs, SBD_INFO


def seg11valid_ids():
    """Returns the 736 seg11valid ids: VOC2011 segmentation val images not in SBD train.

    The list is the one published with the reference FCN code (fcn.berkeleyvision.org,
    `data/pascal/seg11valid.txt`), shipped in `keras_fcn/resources/seg11valid.txt`.
    """
    path = os.path.join(os.path.dirname(__file__), "resources", "seg11valid.txt")
    return _read_ids(path)


def seg11valid_pairs(root):
    """Reads the paper's validation split from a VOC2012 (or VOC2011) folder.

    All seg11valid images are in VOC2011 val, and VOC2012 includes VOC2011, so either works.

    Args:
        root: `VOCdevkit/VOC2012`, `VOCdevkit` or the folder holding `VOCdevkit`.

    Returns:
        (736 pairs, `VOC_INFO`).
    """
    root = os.path.expanduser(os.fspath(root))
    try:
        voc_root = _find_voc_root(root, "2012")
    except FileNotFoundError:
        voc_root = _find_voc_root(root, "2011")
    return _voc_pairs_for_ids(voc_root, seg11valid_ids()), VOC_INFO


# --------------------------------------------------------------------------------------------
# CamVid and generic list files / folders
# --------------------------------------------------------------------------------------------

CAMVID_CLASSES = ("Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence",
                  "Car", "Pedestrian", "Bicyclist")
CAMVID_PALETTE = ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
                  (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0),
                  (0, 128, 192), (0, 0, 0))  # the last one is "Unlabelled" (void, id 11)
# Median-frequency balancing weights of classes 0-10 (from the data set's README).
CAMVID_CLASS_WEIGHTS = (0.2595, 0.1826, 4.5640, 0.1417, 0.9051, 0.3826, 9.6446, 1.8418, 0.6823,
                        6.2478, 7.3614)
CAMVID_INFO = DatasetInfo("camvid", 11, CAMVID_CLASSES, CAMVID_PALETTE, ignore_label=11)


def list_file_pairs(root, list_file):
    """Reads a list file of "image mask" lines, paths relative to `root`.

    Args:
        root: folder the paths are relative to.
        list_file: list file path (relative to `root` or absolute).

    Returns:
        List of (image path, mask path).

    Example:
        >>> list_file_pairs("/data/camvid", "train.txt")[0]
        ('/data/camvid/train/0001TP_006690.png', '/data/camvid/trainannot/0001TP_006690.png')
    """
    root = os.path.expanduser(os.fspath(root))
    path = os.path.join(root, list_file)
    pairs = []
    for number, line in enumerate(_read_ids(path), start=1):
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(
                f"Line {number} of '{path}' must be 'image mask' (2 paths); it is unpaired. "
                f"Received: {line!r}"
            )
        pairs.append(tuple(os.path.join(root, field) for field in fields))
    return pairs


def camvid_pairs(root, split="train"):
    """Reads the 11-class CamVid (SegNet version): `{split}.txt` of "image label" lines.

    Args:
        root: CamVid folder (train/, trainannot/, val/, valannot/, train.txt, val.txt).
        split: "train" (367 pairs), "val" (101) or "test" (233, when present).

    Returns:
        (pairs, `CAMVID_INFO`): single-channel masks, ignore label 11.
    """
    _check_split(split, ("train", "val", "test"))
    return list_file_pairs(root, f"{split}.txt"), CAMVID_INFO


def _files_by_stem(directory, extensions):
    files = {}
    for name in sorted(os.listdir(directory)):
        stem, ext = os.path.splitext(name)
        path = os.path.join(directory, name)
        if ext.lower() in extensions and os.path.isfile(path):  # not a folder named "x.png"
            files.setdefault(stem, path)
    return files


def folder_pairs(images_dir, masks_dir, *, on_unpaired="error", image_extensions=IMAGE_EXTENSIONS,
                 mask_extensions=MASK_EXTENSIONS):
    """Pairs images and masks of two folders by file stem (`a.jpg` <-> `a.png`).

    Args:
        images_dir: folder of images.
        masks_dir: folder of masks.
        on_unpaired: "error" raises `ValueError` naming the unpaired files, "warn" logs them
            and returns the matched pairs.
        image_extensions, mask_extensions: file extensions considered (lower case).

    Returns:
        List of (image path, mask path), sorted by stem.

    Example:
        >>> folder_pairs("data/images", "data/masks")
        [('data/images/a.jpg', 'data/masks/a.png')]
    """
    check_choice("on_unpaired", on_unpaired, ("error", "warn"))
    for directory in (images_dir, masks_dir):
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"Folder '{directory}' does not exist")
    images = _files_by_stem(images_dir, image_extensions)
    masks = _files_by_stem(masks_dir, mask_extensions)
    unpaired = sorted([images[s] for s in images.keys() - masks.keys()]
                      + [masks[s] for s in masks.keys() - images.keys()])
    if unpaired:
        message = (f"{len(unpaired)} unpaired file(s) (no image or mask with the same stem): "
                   + ", ".join(f"'{p}'" for p in unpaired[:10])
                   + (" ..." if len(unpaired) > 10 else ""))
        if on_unpaired == "error":
            raise ValueError(message)
        logger.warning(message)
    return [(images[s], masks[s]) for s in sorted(images.keys() & masks.keys())]


# --------------------------------------------------------------------------------------------
# TFDS
# --------------------------------------------------------------------------------------------

OXFORD_PET_REMAP = {1: 1, 2: 0, 3: 255}  # trimap: 1 pet, 2 background, 3 border -> void
OXFORD_PET_INFO = DatasetInfo("oxford_iiit_pet", 2, ("background", "pet"),
                              ((0, 0, 0), (128, 0, 0)), 255)


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

    Example:
        >>> remap_labels(tf.constant([[1, 2, 3]]), {1: 1, 2: 0, 3: 255}).numpy()
        array([[  1,   0, 255]], dtype=int32)
    """
    table = _remap_table(label_remap)
    mask = tf.cast(mask, tf.int32)
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
        >>> pets = tfds.load("oxford_iiit_pet", split="train")
        >>> ds = data.prepare_dataset(from_tfds(pets, label_remap=OXFORD_PET_REMAP),
        ...                           crop_size=256, batch_size=8, flip=True, seed=0)
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
    """`tfds.load(name, split)` then `from_tfds`. Downloads only when `download=True`."""
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
                return {s: self._generate_examples(sbd_pairs(root, s)[0], "sbd_mat")
                        for s in ("train", "val")}
            splits = {s: self._generate_examples(voc_pairs(root, s)[0], "index")
                      for s in ("train", "val")}
            splits["seg11valid"] = self._generate_examples(seg11valid_pairs(root)[0], "index")
            return splits

        def _generate_examples(self, pairs, mask_format):
            for image_path, mask_path in pairs:
                if not os.path.isfile(image_path):
                    continue  # seg11valid on a partial tree
                mask = data_lib.read_mask(mask_path, mask_format).astype(np.uint8)
                key = os.path.splitext(os.path.basename(image_path))[0]
                yield key, {"image": image_path, "segmentation_mask": mask[..., None],
                            "file_name": os.path.basename(image_path)}

    return FcnVocSegmentation


def voc_tfds_builder(config="voc2012", data_dir=None):
    """Returns the TFDS builder of VOC2012 (splits train, val, seg11valid) or SBD.

    Masks are stored as single-channel PNGs of class ids (palette indices for VOC, the
    `.mat` class maps for SBD), void 255.

    Args:
        config: "voc2012" or "sbd".
        data_dir: TFDS data folder.

    Returns:
        A `tfds.core.GeneratorBasedBuilder`; prepare it with the data in `manual_dir`.

    Example:
        >>> import tensorflow_datasets as tfds
        >>> builder = voc_tfds_builder("voc2012", data_dir="~/tfds")
        >>> builder.download_and_prepare(
        ...     download_config=tfds.download.DownloadConfig(manual_dir="~/data/VOCdevkit"))
        >>> ds = from_tfds(builder.as_dataset(split="val"))
    """
    check_choice("config", config, _TFDS_CONFIGS)
    return _voc_builder_class()(config=config, data_dir=data_dir)
