"""keras_fcn: Fully Convolutional Networks for semantic segmentation in Keras.

Reference: Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic
Segmentation", CVPR 2015.

Example:
    >>> import keras_fcn
    >>> model = keras_fcn.build_fcn8s(num_classes=21)
"""

__version__ = "0.1.0"

from keras_fcn.layers import (  # noqa: F401
    FCN_MEAN_BGR,
    BilinearUpsampling,
    CaffePreprocessing,
    CropToReference,
    Scale,
    bilinear_kernel,
    preprocess_input,
)
from keras_fcn.models import (  # noqa: F401
    build_fcn,
    build_fcn8s,
    build_fcn16s,
    build_fcn32s,
    with_preprocessing,
)
from keras_fcn.weights import load_weights, read_weights, set_weights_by_name  # noqa: F401
from keras_fcn.convert import (  # noqa: F401
    convert_caffemodel,
    convert_torch_state_dict,
    load_npz,
    read_caffemodel,
    save_npz,
)
from keras_fcn.losses import (  # noqa: F401
    SparseCategoricalCrossentropyIgnore,
    class_pixel_counts,
    median_frequency_weights,
    sparse_categorical_crossentropy_ignore,
)
from keras_fcn.metrics import (  # noqa: F401
    ConfusionMatrixMetric,
    FrequencyWeightedIU,
    MeanAccuracy,
    MeanIU,
    PixelAccuracy,
    confusion_matrix,
    segmentation_metrics,
)
