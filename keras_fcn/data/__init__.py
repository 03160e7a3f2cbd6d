"""tf.data input pipelines for semantic segmentation: mask reading, validation, decoding,
seeded augmentation and batching.

Example:
    >>> from keras_fcn import data

    ds = data.make_dataset(pairs, num_classes=21, crop_size=320, batch_size=8, seed=0)
"""

from keras_fcn import _tf  # noqa: E402

from keras_fcn.data.masks import (  # noqa: F401
    MASK_FORMATS,
    UNKNOWN_COLOR_MODES,
    palette_to_table,
    read_index_png,
    read_mask,
    read_sbd_mat,
)
from keras_fcn.data.arrays import SegmentationPyDataset, make_pydataset  # noqa: F401
from keras_fcn.data.jitter import photometric_ranges  # noqa: F401  (NumPy: no TensorFlow)
from keras_fcn.labels import IGNORE_LABEL, MEAN_RGB  # noqa: F401  (keras_fcn.IGNORE_LABEL)

# Built on TensorFlow (tf.data, TFLite): imported where it is installed; without it each
# name raises an ImportError that says so (keras_fcn._tf).
_tf.import_names(globals(), {
    "keras_fcn.data.augment": (
        "fill_padding",
        "gaussian_blur",
        "make_element_fn",
        "random_color_jitter",
        "random_flip",
        "random_scale",
        "with_element_seeds",
    ),
    "keras_fcn.data.decode": (
        "make_decode_fn",
    ),
    "keras_fcn.data.pipeline": (
        "make_dataset",
        "prepare_dataset",
    ),
    "keras_fcn.data.validate": (
        "ValidationReport",
        "validate_pairs",
    ),
    "keras_fcn.data.warp": (
        "add_warped_pairs",
        "affine_flow",
        "camera_path",
        "random_affine",
        "step_flow",
        "warp_images",
        "warp_limits",
    ),
}, instead='keras_fcn.data.arrays.SegmentationPyDataset')
