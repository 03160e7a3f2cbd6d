"""keras_fcn: Fully Convolutional Networks for semantic segmentation in Keras.

Reference: Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic
Segmentation", CVPR 2015.

This module only re-exports the public API; docs/architecture.md says which wing owns what.

Example:
    >>> import keras_fcn

    model = keras_fcn.build_fcn8s(num_classes=21)
"""

from keras_fcn import _backend_env

_backend_env.check()  # a KERAS_BACKEND Keras cannot load is named before Keras fails on it

from keras_fcn._version import __version__  # noqa: E402,F401
from keras_fcn.labels import IGNORE_LABEL, VOC_CLASSES, ModelLabels, voc_palette  # noqa: F401
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
    FCN,
    PadToMultiple,
    Trunk,
    backbone_of,
    coord_maps,
    derive_offsets,
    get_trunk,
    list_trunks,
    register_trunk,
    build_fcn,
    build_fcn8s,
    build_fcn16s,
    build_fcn32s,
    build_fcn_resnet50,
    build_fcn_resnet101,
    build_late_fusion_fcn,
    build_mobilenet_v2_fcn,
    build_rgbd_fcn,
    build_two_headed_fcn,
    normalization_of,
    raw_rgb_model,
    with_preprocessing,
)
from keras_fcn.weights import (  # noqa: F401
    convert_caffemodel,
    convert_torch_state_dict,
    fetch_mobilenet_v2_imagenet_weights,
    load_npz,
    load_weights,
    read_caffemodel,
    read_weights,
    save_npz,
    set_weights_by_name,
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
from keras_fcn.data import SegmentationPyDataset, make_pydataset  # noqa: F401
from keras_fcn.data.masks import read_mask  # noqa: F401
from keras_fcn.labels import MEAN_RGB  # noqa: F401
from keras_fcn.datasets import (  # noqa: F401
    CAMVID_INFO,
    VOC_INFO,
    DatasetInfo,
    camvid_drive,
    camvid_pairs,
    folder_pairs,
    group_folds,
    hha,
    list_file_pairs,
    nyud,
    sbd_pairs,
    seg11valid_pairs,
    siftflow,
    split_by_group,
    voc_pairs,
)
from keras_fcn.datasets.hha import compute_hha  # noqa: F401
from keras_fcn.datasets.shapes import make_shapes_dataset, shapes_pairs  # noqa: F401
from keras_fcn.presets import (  # noqa: F401
    from_preset,
    list_presets,
    preset_info,
    preset_labels,
    resolve_model,
)
from keras_fcn.inference.predict import predict  # noqa: F401  (tiles and TTA, every backend)
from keras_fcn.inference.temporal import TemporalSmoother, flicker_rate  # noqa: F401
from keras_fcn.inference.refine import refine_boundaries  # noqa: F401
from keras_fcn.inference.uncertainty import entropy, margin, mc_dropout  # noqa: F401
from keras_fcn.inference.visualize import (  # noqa: F401
    binary_mask,
    colorize,
    heatmap,
    overlay,
    overlay_with_legend,
)
from keras_fcn.training import (  # noqa: F401
    CaffeSGD,
    TrainConfig,
    compile_model,
    compile_two_headed,
    equivalent_learning_rate,
    evaluate_model,
    evaluate_segmentation,
    fit,
    make_optimizer,
    make_strategy,
    train_staged,
)
from keras_fcn import _tf  # noqa: E402

# The wings built on TensorFlow itself (tf.data pipelines, TFDS, SavedModel/TFLite export):
# imported where TensorFlow is installed; on a JAX or PyTorch machine without it, each name
# raises an ImportError that says so, with what to use instead. The core above (models,
# layers, losses, metrics, weights, the training fit path, predict) and the temporal
# smoothing run on every Keras 3 backend.
_DATA_INSTEAD = "keras_fcn.data.arrays.SegmentationPyDataset for input data"
_tf.import_names(globals(), {
    "keras_fcn.data": ("ValidationReport", "make_dataset", "prepare_dataset", "validate_pairs"),
    "keras_fcn.datasets": ("from_tfds", "load_split", "voc_tfds_builder"),
    "keras_fcn.datasets.shapes": ("shapes_tf_dataset",),
    "keras_fcn.export": ("TFLiteRunner", "check_tflite_ops", "compare_tflite",
                         "convert_to_tflite", "export_saved_model", "export_tflite",
                         "tflite_ops"),
}, instead={
    "keras_fcn.data": _DATA_INSTEAD,
    "keras_fcn.datasets": _DATA_INSTEAD,
    "keras_fcn.datasets.shapes": _DATA_INSTEAD,
    "keras_fcn.export": "model.save('model.keras') here and export that file where "
                        "TensorFlow is installed (a .keras file loads on every backend)",
})

# Modules of keras_fcn 0.1.0 that users reached as attributes of the package.
from keras_fcn import training as train  # noqa: F401,E402
from keras_fcn.inference import video  # noqa: F401,E402
from keras_fcn.models import mobilenet_v2 as mobilenet  # noqa: F401,E402

# The public names, for `from keras_fcn import *` and a look at the API (functions, classes and
# constants above; TensorFlow-built ones only where TensorFlow is installed; no submodules).
__all__ = sorted(name for name, value in globals().items()
                 if not name.startswith("_") and not isinstance(value, type(_tf)))
