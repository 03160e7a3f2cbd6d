"""The resolution a model is run at: its training size, a given size, or each image's own.

A model trained with ``image_size=(h, w)`` (``--image_size`` of training) saw images resized to
``h x w``; fed a frame at another size it sees objects at another scale and predicts worse (a
CamVid model trained at 90x120 and run at 360x480 labels most pixels Pedestrian). The
``image_size`` option of ``tools/evaluate.py`` and ``tools/predict.py`` picks the size:

- ``"auto"`` (their default): the training size recorded in the model's labels
  (``keras_fcn.labels.ModelLabels.image_size``: ``<model>.labels.json`` or the ``labels.json``
  of its run folder), native size when none is recorded;
- ``"native"`` (or None, ``""``, ``"none"``): each image at its own size;
- ``"H,W"``, ``"HxW"``, ``"S"`` or an ``(h, w)`` pair: that size.

Images are resized to it as training resized them (bilinear, antialiased:
:func:`to_model_size`); the model's scores are resized back to the image's size (bilinear, as
``keras_fcn.training.evaluate_model`` does: :func:`to_image_size`), so label maps are always at
the image's resolution.

Example:
    >>> input_size("auto", ModelLabels(num_classes=2, image_size=(90, 120)))
    (90, 120)
    >>> input_size("native", ModelLabels(num_classes=2, image_size=(90, 120))) is None
    True
    >>> input_size("48x64")
    (48, 64)
"""

import os

import numpy as np

from keras_fcn._checks import as_size, size_from_text
from keras_fcn.labels import ModelLabels

AUTO = "auto"
NATIVE = "native"


def input_size(value, labels=None):
    """The ``(height, width)`` images are fed to the model at, or None for their own size.

    Args:
        value: ``"auto"``, ``"native"``, None, a size text (``"H,W"``, ``"HxW"``, ``"S"``;
            ``""`` and ``"none"`` mean native) or an ``(h, w)`` pair of positive ints.
        labels: the model's :class:`keras_fcn.labels.ModelLabels` (or None): ``"auto"`` takes
            its ``image_size``.

    Raises:
        ValueError: a value of none of these forms, naming it.

    Example:
        >>> input_size((90, 120))
        (90, 120)
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text == NATIVE:
            return None
        if text == AUTO:
            return None if labels is None else labels.image_size
        return size_from_text(value, "image_size")
    try:
        return as_size("image_size", value)
    except ValueError:
        raise ValueError("image_size must be 'auto', 'native', 'H,W' or an (h, w) pair of "
                         f"positive ints. Received: image_size={value!r}") from None


def labels_file(model_path):
    """The labels file :meth:`ModelLabels.for_model` reads for ``model_path``, or None.

    Example:
        >>> labels_file("no/such/model.keras") is None
        True
    """
    for path in (ModelLabels.sidecar_path(model_path),
                 os.path.join(os.path.dirname(os.fspath(model_path)), "labels.json")):
        if os.path.isfile(path):
            return path
    return None


def describe(size, value, labels_path=None):
    """One line saying what size the model is run at and why.

    Example:
        >>> describe((90, 120), "auto", "runs/a/labels.json")
        "model input 90x120 (--image_size=auto: the training size in runs/a/labels.json), ..."
        >>> describe(None, "auto")
        "model input at each image's own size (--image_size=auto: no training size recorded)"
    """
    if size is None:
        why = ("no training size recorded" if isinstance(value, str)
               and value.strip().lower() == AUTO else "no resizing")
        return f"model input at each image's own size (--image_size={value}: {why})"
    if isinstance(value, str) and value.strip().lower() == AUTO:
        why = f"the training size in {labels_path}" if labels_path else "the training size"
        text = f"--image_size=auto: {why}"
    else:
        text = f"--image_size={value if isinstance(value, str) else ','.join(map(str, value))}"
    return f"model input {size[0]}x{size[1]} ({text}), outputs at each image's size"


def to_model_size(image, size):
    """An ``(H, W, 3)`` image resized to ``size`` as training's ``image_size`` resizes it
    (bilinear, antialiased: ``keras_fcn.data.arrays.resize_image``), float32 clipped to
    [0, 255] (round-off);
    the image itself when it has that size already (or ``size`` is None).

    Example:
        >>> to_model_size(np.zeros((360, 480, 3), np.uint8), (90, 120)).shape
        (90, 120, 3)
    """
    from keras_fcn.data import arrays

    if size is None or tuple(np.shape(image)[:2]) == tuple(size):
        return image
    resized = arrays.resize_image(image, size, antialias=True)
    # Float round-off of the antialiasing weights can pass 255 by ~1e-5; predict refuses that.
    return np.clip(resized, 0.0, 255.0, out=resized)


def to_image_size(scores, size):
    """``(h, w, C)`` scores (or an ``(h, w)`` map) resized bilinearly to ``size`` = (H, W),
    float32: the resize ``keras_fcn.training.evaluate_model`` gives predictions made at
    reduced resolution (``keras.ops.image.resize``, no antialiasing).

    Example:
        >>> to_image_size(np.ones((90, 120, 11), np.float32), (360, 480)).shape
        (360, 480, 11)
    """
    from keras_fcn.inference.predict import resize_stack

    scores = np.asarray(scores, np.float32)
    if tuple(scores.shape[:2]) == tuple(size):
        return scores
    if scores.ndim == 2:
        return resize_stack(scores[None, ..., None], size)[0, ..., 0]
    return resize_stack(scores[None], size)[0]
