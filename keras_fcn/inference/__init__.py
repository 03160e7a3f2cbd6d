"""Inference with FCN models: prediction at any size, uncertainty, pictures, video, files.

Modules: ``forward`` (the one compiled prediction function), ``predict`` (batching, tiles,
multi-scale and flip averaging), ``resolution`` (the training size a model is run at, as
``tools/predict.py`` and ``tools/evaluate.py`` take it), ``uncertainty``, ``visualize``,
``temporal`` (smoothing and flicker), ``refine`` (guided-filter boundaries), ``video`` (PyAV
reading and writing) and ``files`` (images, folders and videos in, outputs on disk: what
``tools/predict.py`` runs).

Example:
    >>> from keras_fcn import inference

    labels, probs = inference.predict(model, image, tta_flip=True)
    rgb = inference.overlay(image, labels, alpha=0.5)
"""

from keras_fcn.inference import video  # noqa: F401
from keras_fcn.inference.forward import forward_batches, forward_fn, model_input  # noqa: F401
from keras_fcn.inference.masks import AlphaMasks, Hysteresis, feathered_alpha  # noqa: F401
from keras_fcn.inference.predict import predict  # noqa: F401  (every backend)
from keras_fcn.inference.predictor import PredictOptions, Predictor  # noqa: F401
from keras_fcn.inference.refine import refine_boundaries  # noqa: F401
from keras_fcn.inference.uncertainty import (  # noqa: F401
    entropy,
    margin,
    mc_dropout,
    mc_dropout_model,
)
from keras_fcn.inference.visualize import (  # noqa: F401
    binary_mask,
    classes_present,
    colorize,
    draw_legend,
    heatmap,
    overlay,
    overlay_with_legend,
    save_png,
)

# The files runner and the temporal smoothing run on every backend (numpy, PIL, PyAV);
# of them only the optical-flow measures (`flow_changes`, `flow_flicker_rate`) need
# TensorFlow, and say so when it is missing (keras_fcn._tf).
from keras_fcn.inference.files import Report, print_report, read_image, run  # noqa: F401
from keras_fcn.inference.temporal import (  # noqa: F401
    FlickerMeter,
    SmoothedSequence,
    TemporalSmoother,
    flicker_rate,
    flow_changes,
    flow_flicker_rate,
    smooth_probabilities,
)
