"""tf.data input pipelines for semantic segmentation: mask reading, validation, decoding,
seeded augmentation and batching.

Example:
    >>> from keras_fcn import data
    >>> ds = data.make_dataset(pairs, num_classes=21, crop_size=320, batch_size=8, seed=0)
"""

from keras_fcn.data.augment import (  # noqa: F401
    MEAN_RGB,
    fill_padding,
    gaussian_blur,
    make_element_fn,
    photometric_ranges,
    random_color_jitter,
    random_flip,
    random_scale,
    with_element_seeds,
)
from keras_fcn.data.decode import make_decode_fn  # noqa: F401
from keras_fcn.data.masks import (  # noqa: F401
    MASK_FORMATS,
    UNKNOWN_COLOR_MODES,
    palette_to_table,
    read_index_png,
    read_mask,
    read_sbd_mat,
)
from keras_fcn.data.pipeline import make_dataset, prepare_dataset  # noqa: F401
from keras_fcn.data.validate import ValidationReport, validate_pairs  # noqa: F401
from keras_fcn.data.warp import (  # noqa: F401
    add_warped_pairs,
    affine_flow,
    camera_path,
    random_affine,
    step_flow,
    warp_images,
    warp_limits,
)
from keras_fcn.labels import IGNORE_LABEL  # noqa: F401  (keras_fcn.IGNORE_LABEL comes from here)
