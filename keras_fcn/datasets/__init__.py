"""Data set readers: (image, mask) path pairs plus class metadata, TFDS adapters, NYUDv2,
SIFT Flow, the synthetic shapes set, and one entry point, `load_split`.

Every pair reader returns `(pairs, info)`: a list of (image path, mask path) and a
`DatasetInfo` whose `dataset_kwargs()` plug straight into `keras_fcn.data.make_dataset`:

```python
from keras_fcn import data, datasets

pairs, info = datasets.voc_pairs("~/data/VOCdevkit", "train")
ds = data.make_dataset(pairs, **info.dataset_kwargs(), crop_size=320, batch_size=8)
decoded, info, count = datasets.load_split("camvid", "train", data_dir="~/data/camvid")
datasets.check("camvid", "~/data/camvid")  # counts and bad files of a local copy
# Validate on a whole drive never trained on (see docs/camvid.md):
val, info, count = datasets.load_split("camvid", "val", data_dir="~/data/camvid",
                                       holdout="0006R0")
```
"""

from keras_fcn import _tf  # noqa: E402

from keras_fcn.datasets.base import DatasetInfo  # noqa: F401
from keras_fcn.datasets.camvid import (  # noqa: F401
    CAMVID_CLASS_WEIGHTS,
    CAMVID_CLASSES,
    CAMVID_DRIVE_PATTERN,
    CAMVID_INFO,
    CAMVID_PALETTE,
    camvid_drive,
    camvid_pairs,
)
from keras_fcn.datasets.folder import (  # noqa: F401
    MASK_EXTENSIONS,
    folder_pairs,
    list_file_pairs,
    split_pairs,
)
from keras_fcn.datasets.groups import (  # noqa: F401
    group_counts,
    group_folds,
    regex_group,
    split_by_group,
)
from keras_fcn.datasets.voc import (  # noqa: F401
    SBD_INFO,
    VOC_INFO,
    sbd_pairs,
    seg11valid_ids,
    seg11valid_pairs,
    voc_pairs,
)
from keras_fcn.datasets.pairs import (  # noqa: F401
    DATASETS,
    HOLDOUT_DATASETS,
    custom_info,
    file_pairs,
    folder_info,
)
from keras_fcn.datasets import hha, nyud, shapes, siftflow  # noqa: F401
from keras_fcn.io import IMAGE_EXTENSIONS  # noqa: F401
from keras_fcn.labels import VOC_CLASSES, voc_palette  # noqa: F401

# Built on TensorFlow (tf.data, TFLite): imported where it is installed; without it each
# name raises an ImportError that says so (keras_fcn._tf).
_tf.import_names(globals(), {
    "keras_fcn.datasets.check": (
        "CHECK_SPLITS",
        "check",
        "check_split",
    ),
    "keras_fcn.datasets.loader": (
        "decode_pairs",
        "load_split",
    ),
    "keras_fcn.datasets.tfds": (
        "OXFORD_PET_INFO",
        "OXFORD_PET_REMAP",
        "from_tfds",
        "load_tfds",
        "remap_labels",
        "voc_tfds_builder",
    ),
}, instead='keras_fcn.data.arrays.SegmentationPyDataset over the pair readers')
