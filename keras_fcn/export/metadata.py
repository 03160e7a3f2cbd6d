"""The sidecar of an exported model: its :class:`keras_fcn.labels.ModelLabels` plus the
details of the artifact (input and output tensors, quantization, ops).

Example:
    labels = export_labels(model, class_names=["sky", "road", "car"], ignore_label=11)
    labels.to_dict(extra={"artifact": "tflite"})["class_names"]
"""

import json
import os

from keras_fcn.labels import check_palette
from keras_fcn.labels import IGNORE_LABEL, ModelLabels
from keras_fcn.models.inspect import normalization_of, num_classes_of


def export_labels(model, labels=None, *, source=None, class_names=None, palette=None,
                  ignore_label=None):
    """The labels written beside an exported ``model``.

    Args:
        model: the Keras FCN (for the class count, name and normalization).
        labels: a :class:`ModelLabels` to start from; default: those of ``source``
            (:meth:`ModelLabels.for_model`: the model's sidecar or its run folder's
            ``labels.json``), else ``class_0 ...`` names and the VOC palette.
        source: what ``model`` was loaded from: a ``.keras`` path (whose labels are found),
            or the model itself.
        class_names, palette, ignore_label: override the names by class id, the RGB colours
            by class id and the void label of the training data.

    Returns:
        A :class:`ModelLabels` with the model's name and normalization.

    Raises:
        ValueError: the names, palette or found labels do not have one entry per class, or
            the palette is not whole numbers in 0..255 (a float palette with every value in
            [0, 1] is on matplotlib's scale: refused, as by the overlays).

    Example:
        export_labels(model, source="runs/camvid/best.keras").class_names[:2]
    """
    num_classes = num_classes_of(model)
    if labels is None and isinstance(source, (str, os.PathLike)):
        labels = ModelLabels.for_model(os.fspath(source))
    if labels is None:
        # The default void label 255 is a class id of a model with more classes: none then.
        labels = ModelLabels(num_classes=num_classes,
                             ignore_label=IGNORE_LABEL if num_classes <= IGNORE_LABEL else None)
    if labels.num_classes != num_classes:
        raise ValueError(f"The labels name {labels.num_classes} classes but model "
                         f"{model.name!r} has {num_classes}. Received: labels={labels!r}")
    if palette is not None:  # a 0..1 palette: ModelLabels checks one colour at a time
        check_palette(palette, max_colours=None)
    changes = {"class_names": class_names, "palette": palette, "ignore_label": ignore_label}
    changes = {key: value for key, value in changes.items() if value is not None}
    return labels.with_updates(
        model_name=model.name, normalization=dict(normalization_of(model),
                                                  applied="inside the model"), **changes)


def exported_input_sizes(folder):
    """``{tflite file name: (height, width)}`` of the ``.tflite`` files in ``folder`` whose
    sidecar records their input (a run's own export, ``model_float16.tflite``): the size to
    export a model again at when it records no training size. Unreadable sidecars are left out.

    Example:
        exported_input_sizes("runs/mine")   # {'model_float16.tflite': (32, 40)}
    """
    sizes = {}
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
        if not name.endswith(".tflite"):
            continue
        try:
            with open(ModelLabels.sidecar_path(os.path.join(folder, name))) as file:
                shape = json.load(file)["input"]["shape"]
            sizes[name] = (int(shape[1]), int(shape[2]))
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            continue
    return sizes
