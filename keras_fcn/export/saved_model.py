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
from keras_fcn.export.graph import (check_input_size, class_ids, label_dtype, load_model,
                                    write_graph)
from keras_fcn.export.metadata import export_labels
from keras_fcn.models.inspect import num_classes_of, raw_rgb_model

SAVED_MODEL_METADATA = os.path.join("assets", "keras_fcn.json")


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
        overwrite: replace an existing ``export_dir``.

    Returns:
        The metadata dict, also written to ``export_dir/assets/keras_fcn.json``.

    Example:
        export_saved_model(model, "export/fcn8s")
        served = tf.saved_model.load("export/fcn8s").signatures["serving_default"]
        served(images=tf.zeros((1, 360, 480, 3), tf.uint8))["class_ids"].shape
    """
    height, width = check_input_size(input_size)
    source = load_model(model)
    labels = export_labels(source, labels, source=model, class_names=class_names,
                           palette=palette, ignore_label=ignore_label)
    io.check_writable(export_dir, overwrite)
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
    if include_probabilities:
        outputs["probabilities"] = "float32"
    metadata = labels.to_dict(extra={
        "artifact": "saved_model", "signature": "serving_default",
        "input": {"name": "images", "dtype": "uint8", "shape": [None, height, width, 3]},
        "outputs": outputs})

    def write(folder):
        write_graph(serve, [spec], net, folder)
        io.write_json(os.path.join(folder, SAVED_MODEL_METADATA), metadata)

    io.atomic_write_dir(export_dir, write, overwrite)
    return metadata
