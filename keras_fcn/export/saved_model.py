"""Export a trained FCN as a SavedModel that segments raw ``uint8`` RGB images.

The folder is written under a temporary name and swapped into place (:mod:`keras_fcn.io`),
with the permissions of the user's other outputs, and carries its sidecar in
``assets/keras_fcn.json``.

Example:
    export_saved_model("runs/fcn8s.keras", "export/fcn8s")
    served = tf.saved_model.load("export/fcn8s").signatures["serving_default"]
"""

import os

import tensorflow as tf

from keras_fcn import io
from keras_fcn.export.graph import (check_backend, check_input_size, class_ids, label_dtype,
                                    load_model, write_graph)
from keras_fcn.export.metadata import export_labels
from keras_fcn.models.inspect import num_classes_of, raw_rgb_model

SAVED_MODEL_METADATA = os.path.join("assets", "keras_fcn.json")
# What a SavedModel folder holds (the sidecar is in assets/): overwrite=True replaces only a
# folder with saved_model.pb and nothing else.
SAVED_MODEL_ENTRIES = ("saved_model.pb", "variables", "assets", "fingerprint.pb")


def check_saved_model_target(export_dir, overwrite, source=None):
    """Checks that ``export_dir`` may be written: it does not exist, or ``overwrite`` is set and
    it is an earlier SavedModel folder (``saved_model.pb`` and only SavedModel entries) that
    does not hold ``source`` (the ``.keras`` path being exported).

    Raises:
        FileExistsError: ``export_dir`` exists and ``overwrite`` is False.
        ValueError: ``export_dir`` is a file, not a SavedModel folder, holds other files
            (named), or is or holds the model file being exported.
    """
    export_dir = os.fspath(export_dir)
    if not os.path.lexists(export_dir):
        return  # nothing to replace (and no folder made for it yet)
    io.check_writable(export_dir, overwrite)
    if isinstance(source, (str, os.PathLike)) and io.is_inside(source, export_dir):
        raise ValueError(f"export_dir={export_dir!r} is or holds the model being exported "
                         f"({os.fspath(source)!r}); choose another export_dir.")
    if not os.path.isdir(export_dir) or os.path.islink(export_dir):
        raise ValueError(f"overwrite=True replaces only an earlier SavedModel folder, but "
                         f"export_dir={export_dir!r} is not a folder; choose another "
                         "export_dir.")
    entries = sorted(os.listdir(export_dir))
    foreign = [e for e in entries if e not in SAVED_MODEL_ENTRIES]
    if "saved_model.pb" not in entries or foreign:
        found = (f"it holds other entries {foreign}" if foreign
                 else "it has no saved_model.pb")
        raise ValueError(f"overwrite=True replaces only an earlier SavedModel folder "
                         f"(entries {list(SAVED_MODEL_ENTRIES)}), but {found}; choose another "
                         f"export_dir or move them away. Received: export_dir={export_dir!r}")


def export_saved_model(model, export_dir, *, input_size=None, include_probabilities=True,
                       labels=None, class_names=None, palette=None, ignore_label=None,
                       overwrite=False):
    """Writes a SavedModel whose ``serving_default`` signature segments uint8 RGB images.

    Signature: ``images`` uint8 ``(N, H, W, 3)`` -> ``class_ids`` ``(N, H, W)`` (uint8, or
    int32 for more than 256 classes) and, if ``include_probabilities``, ``probabilities``
    float32 ``(N, H, W, C)``. The preprocessing is inside the graph.

    Args:
        model: a trained FCN (``keras.Model`` or ``.keras`` path).
        export_dir: the SavedModel directory (written to a temporary one, then renamed).
        input_size: ``None`` for any image size, or ``(height, width)`` for a fixed size.
        include_probabilities: also return the softmax probabilities.
        labels, class_names, palette, ignore_label: the class names, colours and void label
            written to the sidecar (see :func:`keras_fcn.export.export_labels`; a ``.keras``
            path's own labels are found).
        overwrite: replace an existing ``export_dir``, which must be an earlier SavedModel
            folder (:func:`check_saved_model_target`): never a file, a folder with other
            files, or one that holds the model being exported.

    Returns:
        The metadata dict, also written to ``export_dir/assets/keras_fcn.json``.

    Example:
        export_saved_model(model, "export/fcn8s")
        served = tf.saved_model.load("export/fcn8s").signatures["serving_default"]
        served(images=tf.zeros((1, 360, 480, 3), tf.uint8))["class_ids"].shape
    """
    check_backend("SavedModel export")
    height, width = check_input_size(input_size)
    check_saved_model_target(export_dir, overwrite, model)
    source = load_model(model)
    labels = export_labels(source, labels, source=model, class_names=class_names,
                           palette=palette, ignore_label=ignore_label)
    net = raw_rgb_model(source)
    ids_dtype = label_dtype(num_classes_of(net))

    def serve(images):
        logits = net(tf.cast(images, tf.float32), training=False)
        outputs = {"class_ids": class_ids(logits, ids_dtype)}
        if include_probabilities:
            outputs["probabilities"] = tf.nn.softmax(logits, axis=-1)
        return outputs

    spec = tf.TensorSpec([None, height, width, 3], tf.uint8, name="images")
    outputs = {"class_ids": ids_dtype.name}
    output = f"class_ids (N, H, W) {ids_dtype.name}: the class id of each pixel"
    if include_probabilities:
        outputs["probabilities"] = "float32"
        output += "; probabilities (N, H, W, num_classes) float32: the softmax of the logits"
    metadata = labels.to_dict(extra={
        "artifact": "saved_model", "signature": "serving_default",
        "input": {"name": "images", "dtype": "uint8", "shape": [None, height, width, 3]},
        "output": output, "outputs": outputs})

    def write(folder):
        write_graph(serve, [spec], net, folder)
        io.write_json(os.path.join(folder, SAVED_MODEL_METADATA), metadata)

    io.atomic_write_dir(export_dir, write, overwrite)
    return metadata
