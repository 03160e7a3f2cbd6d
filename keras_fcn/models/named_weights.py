"""Weights by name in the FCN builders: ``build_fcn8s(weights="voc-fcn8s")``; and the check
of what a trunk's own loader set (:func:`check_loaded`).

The released models are :mod:`keras_fcn.presets`, a wing above this one (it builds its models
with these builders), so the builders cannot import it. Instead the presets wing registers a
fetch function per name in one table here when it is imported; ``import keras_fcn`` imports
it, so the names are always there for users. The builders only look names up in the table.

Example:
    >>> from keras_fcn.models import build_fcn8s, weight_names
    >>> "voc-fcn8s" in weight_names()
    True
    >>> model = build_fcn8s(weights="voc-fcn8s")  # doctest: +SKIP
"""

import os

from keras_fcn.models.trunk import all_layers, did_you_mean
from keras_fcn.weights import read_weights, set_weights_by_name

# {name: fetch(architecture) -> a keras.Model (or a file) with the weights}, filled at import
# by keras_fcn.presets. ``architecture``: see :func:`fetch_named_weights`.
NAMED_WEIGHTS = {}


def register_named_weights(name, fetch):
    """Makes ``weights=name`` work in the builders.

    Args:
        name: the name users pass, e.g. ``"voc-fcn8s"``.
        fetch: ``fetch(architecture)`` checks that the weights fit the architecture the builder
            is asked for (a dict, see :func:`fetch_named_weights`; raise ``ValueError`` naming
            the difference) and returns a ``keras.Model`` or file with the weights by layer
            name.

    Example:
        >>> register_named_weights("my-fcn", lambda arch: "/models/my-fcn.keras")  # doctest: +SKIP
    """
    NAMED_WEIGHTS[name] = fetch


def weight_names():
    """The names the builders' ``weights=`` takes besides ``"imagenet"``: the presets.

    Example:
        >>> weight_names()[:2]
        ['voc-fcn32s', 'voc-fcn16s']
    """
    return list(NAMED_WEIGHTS)


def _looks_like_path(text):
    return os.sep in text or "/" in text or bool(os.path.splitext(text)[1])


def fetch_named_weights(weights, architecture):
    """The weights a registered name stands for, or None when ``weights`` is not a name.

    A registered name wins over a file of the same name (as ``keras_fcn.resolve_model``).

    Args:
        weights: the builders' ``weights`` argument.
        architecture: what the builder builds: ``{"variant", "backbone", "num_classes",
            "input_channels", "include_preprocessing", "options", "aux"}`` (``options``:
            the trunk's, e.g. ``widths``), plus ``"two_headed"`` and ``"num_geometric"``
            from the two-headed builder.

    Raises:
        ValueError: a string that is neither ``"imagenet"``, a name nor a file (the message
            lists the names), or weights that do not fit ``architecture``.
        FileNotFoundError: the same for a string that looks like a path.

    Example:
        >>> fetch_named_weights("imagenet", {}) is None
        True
    """
    if not isinstance(weights, str) or weights == "imagenet":
        return None
    if weights in NAMED_WEIGHTS:
        return NAMED_WEIGHTS[weights](architecture)
    if os.path.isfile(weights):
        return None
    allowed = ("'imagenet', None, a weights file, a keras.Model or a preset name of "
               f"keras_fcn.list_presets(): {weight_names()}")
    if _looks_like_path(weights):
        raise FileNotFoundError(f"Weights file not found: {weights!r}. weights= takes {allowed}.")
    raise ValueError(f"Unknown weights. Expected {allowed}."
                     f"{did_you_mean(weights, ['imagenet', *NAMED_WEIGHTS])} "
                     f"Received: weights={weights!r}")


def load_named_weights(model, name, source):
    """Copies every weighted layer of ``model`` from ``source`` by name; all must be there.

    Raises:
        ValueError: a layer missing from ``source`` or of another shape, naming ``name``.
    """
    required = [layer.name for layer in model.layers if layer.weights]
    try:
        return set_weights_by_name(model, read_weights(source), required=required)
    except ValueError as error:
        raise ValueError(f"weights={name!r} does not fit the model {model.name!r}: "
                         f"{error}") from None


def check_loaded(trunk, model, loaded, weights="imagenet"):
    """Checks what a trunk's loader says it set for ``weights`` (``"imagenet"``, a file, or a
    ``keras.Model`` such as the previous stage of a staged run): the names of some of
    ``model``'s layers. A loader of one's own trunk that ignores a model or a file would
    otherwise leave the trunk at its random initialization without a word.

    Raises:
        ValueError: no name, or names of no layer of the model.
    """
    names = {layer.name for layer in all_layers(model)}
    strange = sorted({str(name) for name in loaded or ()} - names)
    if loaded and not strange:
        return
    why = (f"returned names of no layer of the model: {strange[:5]}" if loaded else
           "set no layer")
    if isinstance(weights, str) and weights == "imagenet":
        given, must = "'imagenet'", "from its ImageNet classifier"
    else:
        given = (repr(os.fspath(weights)) if isinstance(weights, (str, os.PathLike))
                 else f"<{type(weights).__name__} {getattr(weights, 'name', '')!r}>")
        must = ("from the file or model given (a keras.Model: the layers of the same name, "
                "as keras_fcn.weights.load_weights does)")
    raise ValueError(
        f"Trunk {trunk.name!r}: load_weights(model, {given}) {why} (it must set the trunk's "
        f"layers {must} and return their names). Received: {str(loaded)[:200]}")
