"""Export trained FCNs for deployment: SavedModel and TFLite (float32, float16, int8).

Every exported model takes raw ``uint8`` RGB images (the preprocessing is inside the graph)
and carries its labels and details in a sidecar JSON file (:class:`keras_fcn.labels.ModelLabels`
format): ``<name>.json`` next to each ``.tflite`` and ``assets/keras_fcn.json`` in a SavedModel
folder.

Modules: ``saved_model`` (export_saved_model), ``tflite`` (convert_to_tflite, export_tflite),
``flatbuffer`` (op and shape checks), ``litert_runner`` (TFLiteRunner), ``quality`` (the
quality gate against the Keras model), ``images`` (calibration and check images), ``graph``
and ``metadata`` (what the exports share).

Example:
    model = keras.models.load_model("fcn8s_camvid.keras")
    export_saved_model(model, "export/fcn8s")
    export_tflite(model, "export/fcn8s_int8.tflite", input_size=(360, 480),
                  quantization="int8", representative_data="camvid/val")
"""

from keras_fcn.export.flatbuffer import check_tflite_ops, dynamic_tensors, tflite_ops  # noqa: F401
from keras_fcn.export.graph import load_model  # noqa: F401
from keras_fcn.export.images import (  # noqa: F401
    CalibrationFiles,
    calibration_images,
    check_calibration_images,
    check_pairs,
    colour_mask_palette,
    load_image,
    load_pair,
    read_list,
)
from keras_fcn.export.litert_runner import TFLiteRunner, median_seconds  # noqa: F401
from keras_fcn.export.metadata import export_labels  # noqa: F401
from keras_fcn.export.quality import (  # noqa: F401
    CONFIDENT_GAP,
    agreement_counts,
    check_masks,
    check_thresholds,
    compare_tflite,
    keras_predictor,
    rows_to_markdown,
    top2_gap,
)
from keras_fcn.export.saved_model import (  # noqa: F401
    SAVED_MODEL_METADATA,
    check_saved_model_target,
    export_saved_model,
)
from keras_fcn.export.tflite import (  # noqa: F401
    FULL_INT8,
    QUANTIZATIONS,
    convert_to_tflite,
    export_tflite,
    pin_input_range,
    save_tflite_graph,
)
# The deployable (raw RGB) model of an FCN (keras_fcn.models owns it), kept here for the
# public API of keras_fcn 0.1.0.
from keras_fcn.models.inspect import raw_rgb_model  # noqa: F401
