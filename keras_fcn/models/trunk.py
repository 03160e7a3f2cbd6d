"""The trunk contract: what every FCN backbone gives the heads, and the model that records it.

A :class:`Trunk` is one backbone (VGG16, MobileNetV2, AlexNet, GoogLeNet, ...): its feature
maps at strides 8, 16 and 32 with the crop offsets of the reference, its input preprocessing
(:class:`Preprocessing`) and its weights loader (``"imagenet"``, files, models). The one
builder, :func:`keras_fcn.models.build_fcn`, puts the heads of
:mod:`keras_fcn.models.heads` on any registered trunk, and returns an :class:`FCN`: a
functional ``keras.Model`` whose serialized config records the trunk's name and the variant,
so that preprocessing, export metadata and run labels read it instead of guessing.

A new trunk is one module that defines a ``Trunk`` and calls :func:`register_trunk`, imported
by ``keras_fcn/models/__init__.py``.

Example:
    >>> trunk = get_trunk("mobilenet_v2")
    >>> trunk.variants, trunk.preprocessing.kind
    (('32s', '16s', '8s', '8s_at_once'), 'scale')
    >>> model = keras_fcn.build_fcn8s(num_classes=3, weights=None, backbone="mobilenet_v2")
    >>> model.backbone, model.variant
    ('mobilenet_v2', '8s')
"""

import dataclasses
import difflib
from typing import Callable

import keras
import numpy as np

from keras_fcn._jax_guard import variables_kept
from keras_fcn.layers import FCN_MEAN_BGR, CaffePreprocessing, preprocess_input
from keras_fcn.models.heads import DEPTHS, HEAD_PREFIXES, SKIPS, depth_of
from keras_fcn.models.input_checks import (check_arrays, check_dataset_labels, check_image_list,
                                          check_no_class_weight)
from keras_fcn.runtime import detach_averaged_weights

# The paper's variants (heads fusing the strides 32, 16 and 8), and "dilated": a trunk whose
# last stages are dilated to output stride 8 with torchvision's FCNHead (FCN-ResNet).
VARIANTS = ("32s", "16s", "8s", "8s_at_once", "dilated")
PAPER_VARIANTS = VARIANTS[:4]


def all_layers(model):
    """Yields the layers of ``model`` and, depth first, of every model nested in it."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How a trunk wants its RGB 0..255 input: the same thing as a layer and on arrays.

    Attributes:
        kind: a short name, also the ``"type"`` of :meth:`normalization`.
        layer: ``layer(name=...)`` returns the preprocessing as a Keras layer taking RGB
            0..255 of any dtype (``include_preprocessing=True`` names it ``preprocess``).
        array: the same on numpy arrays (float32 out) or tensors.
        describe: ``describe(model)`` returns the dict written in export metadata and the
            labels sidecar (see :meth:`normalization`).
    """

    kind: str
    layer: Callable
    array: Callable
    describe: Callable

    def normalization(self, model=None):
        """The input normalization as a dict: ``{"type": kind, ..., "formula": ...}``."""
        return self.describe(model)


def _caffe_normalization(model):
    mean = FCN_MEAN_BGR if model is None else next(
        (layer.mean_bgr for layer in all_layers(model) if isinstance(layer, CaffePreprocessing)),
        FCN_MEAN_BGR)
    return {"type": "caffe_bgr_mean", "mean_bgr": [float(m) for m in mean],
            "formula": "RGB -> BGR, minus mean_bgr, no scaling"}


# The Caffe trunks (VGG16, AlexNet, GoogLeNet): BGR minus the ImageNet mean, no scaling.
CAFFE = Preprocessing("caffe_bgr_mean", CaffePreprocessing, preprocess_input,
                      _caffe_normalization)


@dataclasses.dataclass(frozen=True)
class Trunk:
    """One FCN backbone, as the heads and the tools need it.

    Attributes:
        name: the ``backbone=`` name, e.g. ``"vgg16"``; recorded in every model built on it.
        features: ``features(x, dropout, **options)`` applies the trunk to the preprocessed
            input ``x`` and returns ``(stride8, stride16, stride32)`` Keras tensors (``None``
            for a stride the trunk does not give: the 32s-only trunks); the stride-32 map is
            what ``score_fr`` scores, dropout included.
        offsets: the crop offsets of the heads, keyed by crop layer name (see
            :mod:`keras_fcn.models.heads`): ``"score"`` per depth, and ``score_pool4c``/
            ``score_pool3c`` (skip cropped) or ``upscore2c``/``upscore_pool4c`` (upsampled
            scores cropped).
        preprocessing: the :class:`Preprocessing` of the trunk's input.
        load_weights: ``load_weights(model, weights)`` for any ``weights`` other than None and
            a preset name: ``"imagenet"`` (this trunk's ImageNet classifier), a file or a
            ``keras.Model``; returns the names of the layers set.
        variants: the FCN variants this trunk has.
        dropout: the default dropout rate of its FCNs (the paper's 0.5; torchvision's FCNHead
            0.1).
        options: the trunk's own keyword options and their defaults (``widths``,
            ``fc_units``); :func:`check_options` rejects any other.
        check: ``check(**options)`` validates the options and returns them (may be None).
        input_channels: the channel count the trunk needs, or None for any.
        upsample_kernels: ``{layer name: kernel}`` where an upsampling is not ``2 * stride``
            (the reference's odd 63 of ``upscore`` for the 3x3-pool trunks).
        head_variants: ``{variant: variant of the heads}`` (MobileNetV2 builds the at-once
            FCN-8s as FCN-8s: batch-normalized features need no scaling).
        default_name: the model name, formatted with ``variant``.
    """

    name: str
    features: Callable
    offsets: dict
    preprocessing: Preprocessing
    load_weights: Callable
    variants: tuple = PAPER_VARIANTS
    dropout: float = 0.5
    options: dict = dataclasses.field(default_factory=dict)
    check: Callable = None
    input_channels: int = None
    upsample_kernels: dict = dataclasses.field(default_factory=dict)
    head_variants: dict = dataclasses.field(default_factory=dict)
    default_name: str = "fcn{variant}_{name}"

    def check_options(self, **options):
        """The trunk options with defaults filled in; unknown ones are a ValueError.

        Example:
            >>> get_trunk("vgg16").check_options(widths=(4, 4, 8, 8, 8))["fc_units"]
            4096
        """
        given = {key: value for key, value in options.items() if value is not None}
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            has = sorted(self.options) or "none"
            raise ValueError(
                f"The {self.name} trunk has no option {', '.join(unknown)} (its options: "
                f"{has}). Received: " + ", ".join(f"{k}={given[k]!r}" for k in unknown))
        merged = {**self.options, **given}
        return (self.check(**merged) if self.check else None) or merged

    def model_name(self, variant):
        """The default model name for ``variant`` (``"fcn8s"``, ``"fcn8s_mobilenet_v2"``)."""
        return self.default_name.format(variant=variant, name=self.name)


TRUNKS = {}
# The trunks keras_fcn registers when imported (tests/test_trunk_registry.py checks the list).
SHIPPED_TRUNKS = ("vgg16", "alexnet", "googlenet", "mobilenet_v2", "resnet50", "resnet101")


def register_trunk(trunk, *, replace=False):
    """Makes ``backbone=trunk.name`` work in this process: the builders, the Python recipes
    (``training.run``) and loading its models. The command-line tools know the shipped trunks
    only (a model with its preprocessing inside, ``include_preprocessing=True``, runs in them).
    Registering a name again replaces its trunk (a notebook cell run twice), except a shipped
    trunk's (every model and file of that backbone would get yours): ``replace=True``.

    Raises:
        TypeError: ``trunk`` is no :class:`Trunk`. ValueError: a shipped trunk's name, or a
            field that breaks the contract (named).

    Example:
        >>> register_trunk(Trunk("tiny", features, {...}, CAFFE, load))  # doctest: +SKIP
    """
    if not isinstance(trunk, Trunk):
        raise TypeError(f"register_trunk takes a Trunk. Received: {trunk!r}")
    name, old = trunk.name, TRUNKS.get(trunk.name)
    wrong = [(field, expected) for field, expected, ok in (
        ("name", "a non-empty string", isinstance(name, str) and name.strip()),
        ("features", "callable", callable(trunk.features)),
        ("load_weights", "callable", callable(trunk.load_weights)),
        ("check", "callable or None", trunk.check is None or callable(trunk.check)),
        ("preprocessing", "a Preprocessing", isinstance(trunk.preprocessing, Preprocessing)),
        ("offsets", "a dict keyed by crop layer name", isinstance(trunk.offsets, dict)),
        ("variants", f"some of {VARIANTS}",
         trunk.variants and all(v in VARIANTS for v in trunk.variants)),
        ("dropout", "in [0, 1)", isinstance(trunk.dropout, (int, float))
         and 0 <= trunk.dropout < 1)) if not ok]
    if wrong:
        field, expected = wrong[0]
        raise ValueError(f"Trunk {name!r}: {field} must be {expected}. Received: "
                         f"{field}={getattr(trunk, field)!r}")
    check_offsets(trunk)
    check_preprocessing(trunk)
    if name in SHIPPED_TRUNKS and old is not None and old is not trunk and not replace:
        raise ValueError(f"'{name}' is a trunk of keras_fcn: registering another under its name "
                         f"would give every model and file of backbone '{name}' yours. Choose "
                         f"another name, or pass replace=True. Received: Trunk(name={name!r})")
    TRUNKS[name] = trunk
    return trunk


def check_offsets(trunk):
    """Checks that ``trunk.offsets`` has a non-negative int crop for every crop its paper
    variants' heads make (:func:`keras_fcn.models.derive_offsets` computes them).

    Raises:
        ValueError: naming the variant and the crop it lacks, or the bad value.
    """
    hint = "keras_fcn.derive_offsets(trunk) gives them from the trunk's geometry"
    known = {"score"} | {skip.up_crop for skip in SKIPS} | {skip.skip_crop for skip in SKIPS}
    unknown = sorted(set(trunk.offsets) - known, key=str)
    both = [(skip.skip_crop, skip.up_crop) for skip in SKIPS
            if skip.skip_crop in trunk.offsets and skip.up_crop in trunk.offsets]
    if unknown or both:
        what = (f"no crop named {', '.join(map(repr, unknown))} (the crops: {sorted(known)})"
                if unknown else f"either {both[0][0]!r} or {both[0][1]!r}, not both (the "
                "skip or the upsampled scores cropped)")
        raise ValueError(f"Trunk {trunk.name!r}: the heads have {what}. Received: "
                         f"offsets={trunk.offsets!r}")
    for variant in trunk.variants:
        if variant not in PAPER_VARIANTS:
            continue
        depth = depth_of(variant, trunk)
        score = trunk.offsets.get("score")
        needed = [("score", score.get(depth) if isinstance(score, dict) else None,
                   f"'score': {{{depth!r}: offset}}")]
        for skip in SKIPS[:DEPTHS[depth][0]]:
            key = skip.up_crop if skip.up_crop in trunk.offsets else skip.skip_crop
            needed.append((key, trunk.offsets.get(key), f"{skip.skip_crop!r} or "
                           f"{skip.up_crop!r} (the skip or the upsampled scores cropped)"))
        for key, value, what in needed:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                found = "none" if value is None else repr(value)
                raise ValueError(
                    f"Trunk {trunk.name!r}: variant {variant!r} needs the crop offset {what}, "
                    f"a non-negative int ({hint}). Received: {found} in offsets="
                    f"{trunk.offsets!r}")


def check_preprocessing(trunk):
    """Checks that ``trunk.preprocessing.layer(name="preprocess")`` makes a Keras layer and that
    ``trunk.preprocessing.array`` turns a uint8 RGB batch into float32 of the same shape.

    Raises:
        ValueError: naming what the call raised or returned.
    """
    batch = np.zeros((1, 2, 2, 3), np.uint8)
    try:
        out = np.asarray(trunk.preprocessing.array(batch))
    except Exception as error:  # noqa: BLE001 (the user's function: named, not hidden)
        raise ValueError(f"Trunk {trunk.name!r}: preprocessing.array must take a uint8 RGB "
                         f"batch (N, H, W, 3). Calling it on one raised: {error!r}") from None
    if out.dtype != np.float32 or out.shape != batch.shape:
        raise ValueError(f"Trunk {trunk.name!r}: preprocessing.array must return float32 of "
                         f"its input's shape. Received: {out.dtype} of shape {out.shape} for a "
                         f"uint8 batch of shape {batch.shape}")
    try:
        layer = trunk.preprocessing.layer(name="preprocess")
    except TypeError as error:
        raise ValueError(f"Trunk {trunk.name!r}: preprocessing.layer must take name= and return "
                         f"a keras layer. Calling layer(name='preprocess') raised: {error}"
                         ) from None
    if not isinstance(layer, keras.layers.Layer) or layer.name != "preprocess":
        # a layer named otherwise is not found in the model: its input would be preprocessed
        # again by the tools (keras_fcn.models.has_preprocessing)
        raise ValueError(f"Trunk {trunk.name!r}: preprocessing.layer(name='preprocess') must "
                         f"return a keras layer of that name. Received: {layer!r}"
                         + (f" named {layer.name!r}" if isinstance(layer, keras.layers.Layer)
                            else ""))


def list_trunks():
    """The names of the registered trunks (``backbone=`` values).

    Example:
        >>> sorted(list_trunks())
        ['alexnet', 'googlenet', 'mobilenet_v2', 'resnet101', 'resnet50', 'vgg16']
    """
    return list(TRUNKS)


def get_trunk(name):
    """The :class:`Trunk` registered as ``name``.

    Raises:
        ValueError: unknown name; the message lists the trunks.

    Example:
        >>> get_trunk("alexnet").variants
        ('32s',)
    """
    if not isinstance(name, str) or name not in TRUNKS:
        raise ValueError(f"Unknown backbone. Expected one of {tuple(TRUNKS)} (a trunk of "
                         f"your own: in a process that registered it, keras_fcn."
                         f"register_trunk).{did_you_mean(name, TRUNKS)} Received: "
                         f"backbone={name!r}")
    return TRUNKS[name]


def did_you_mean(value, names):
    """`` Did you mean 'x'?`` (with a leading space) naming the entries of ``names`` closest to
    ``value`` (case ignored), or ``""`` when none is close or ``value`` is not a string.

    Example:
        >>> did_you_mean("VGG16", ["vgg16", "alexnet"])
        " Did you mean 'vgg16'?"
    """
    if not isinstance(value, str):
        return ""
    folded = {str(name).lower(): name for name in names}
    close = difflib.get_close_matches(value.lower(), list(folded), n=3, cutoff=0.6)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(folded[c]) for c in close) + "?"


def build_before_fit(model, data):
    """Builds a compiled ``model``'s loss and metrics from ``data[0]``, read directly, when
    ``data`` is a ``keras.utils.PyDataset`` with ``workers > 1`` and the backend is JAX or
    PyTorch; returns True if it did.

    Keras 3 (3.15 here) builds them in ``fit`` from one batch read through the
    dataset's worker queue, and keeps the batches the queue had fetched ahead for the first
    epoch: every epoch of that ``fit`` would then be shifted by one batch. Built here, ``fit``
    reads nothing before its first epoch. :class:`FCN` and ``keras_fcn.training.fit`` call
    this; call it before ``model.fit`` for a model of your own. It uses Keras' private
    ``Model._symbolic_build`` (as Keras' own ``train_on_batch`` does) and does nothing where
    that is missing; tests/test_arrays_fit_epochs.py fails if Keras changes.

    Example::

        ds = keras_fcn.data.arrays.make_pydataset(pairs, num_classes=11, workers=4)
        build_before_fit(model, ds)
        model.fit(ds, epochs=10, shuffle=False)
    """
    if (not isinstance(data, keras.utils.PyDataset) or data.workers <= 1
            or keras.backend.backend() not in ("jax", "torch")):
        return False
    build = getattr(model, "_symbolic_build", None)
    if build is None or getattr(model, "optimizer", None) is None:
        return False  # not compiled: fit raises its own error
    batch = data[0]
    build(data_batch=tuple(batch) if isinstance(batch, list) else batch)
    return True


def _public_optimizer_modules(config):
    """Rewrites, in place, the module of each Keras optimizer in a serialized optimizer config
    (a LossScaleOptimizer's inner one too) from its backend class's to ``keras.optimizers``,
    where every backend finds its own class of that name."""
    if not isinstance(config, dict):
        return
    module, name = config.get("module"), config.get("class_name")
    if isinstance(module, str) and module.startswith("keras.src.backend.") \
            and isinstance(getattr(keras.optimizers, str(name), None), type):
        config["module"], config["registered_name"] = "keras.optimizers", None
    for value in config.values():
        _public_optimizer_modules(value)


@keras.saving.register_keras_serializable(package="keras_fcn")
class FCN(keras.Model):
    """A functional FCN that knows its trunk and variant (saved in its config).

    Built by :func:`keras_fcn.models.build_fcn` and the other builders; behaves as any
    functional ``keras.Model``. ``model.backbone`` and ``model.variant`` survive
    ``save``/``load_model``, nesting in another model, and the clones of
    :func:`keras_fcn.runtime.with_precision`.

    Args:
        inputs, outputs, name: as ``keras.Model``.
        fcn: ``{"backbone": ..., "variant": ...}``.

    Example:
        >>> model = keras_fcn.build_fcn32s(num_classes=3, weights=None, backbone="alexnet")
        >>> type(model).__name__, model.backbone, model.variant
        ('FCN', 'alexnet', '32s')
    """

    def __init__(self, inputs, outputs, name=None, **kwargs):
        info = dict(kwargs.pop("fcn", None) or {})
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self.fcn_info = info

    @property
    def backbone(self):
        """The trunk's name (``"vgg16"``, ...), or None when not recorded."""
        return self.fcn_info.get("backbone")

    @property
    def variant(self):
        """The FCN variant (``"8s"``, ...), or None when not recorded."""
        return self.fcn_info.get("variant")

    def trunk_layers(self):
        """The layers of the trunk: every layer but the input and the heads (``score*``,
        ``upscore*``, ``fuse_*``, ``scale_pool*``, ``classifier*``, ``aux_classifier*``).

        Freeze the trunk to train the heads alone, then unfreeze it, recompiling after each
        change (Keras reads ``trainable`` when it compiles). Prefer this to
        ``model.trainable = True``, which also unfreezes the bilinear upsampling layers that
        the builders freeze (``trainable_upsampling=False``). A frozen ``BatchNormalization``
        (MobileNetV2, ResNet) runs in inference mode, as in Keras' transfer-learning guide.

        Example:
            >>> model = keras_fcn.build_fcn("8s", 3, weights=None, widths=(4, 4, 8, 8, 8),
            ...                             fc_units=8)
            >>> for layer in model.trunk_layers():
            ...     layer.trainable = False
            >>> sorted({w.path.split("/")[0] for w in model.trainable_weights})
            ['score_fr', 'score_pool3', 'score_pool4']
        """
        return [layer for layer in self.layers
                if not isinstance(layer, keras.layers.InputLayer)
                and not layer.name.startswith(HEAD_PREFIXES)]

    def copy_info_to(self, other):
        """Records this model's trunk and variant in ``other`` (a clone) and returns it."""
        if isinstance(other, FCN):
            other.fcn_info = dict(self.fcn_info)
        return other

    def fit(self, x=None, *args, **kwargs):
        """``keras.Model.fit``, after :func:`build_before_fit` (whole epochs from a
        ``keras.utils.PyDataset`` with workers on JAX and PyTorch).

        ``class_weight`` is refused (ValueError): Keras weighs one class per sample, and an
        FCN's sample is a label map. Per-class weights go to the loss:
        ``SparseCategoricalCrossentropyIgnore(class_weights=[...])``.
        """
        check_no_class_weight(kwargs.get("class_weight"))
        y = args[0] if args else kwargs.get("y")
        check_arrays(self, x, y)
        check_dataset_labels(self, x)
        validation = kwargs.get("validation_data")
        if isinstance(validation, (tuple, list)) and len(validation) >= 2:
            check_arrays(self, validation[0], validation[1], "validation_data")
        check_dataset_labels(self, validation, "validation_data")
        build_before_fit(self, x)
        with variables_kept(self, fitting=True):
            history = super().fit(x, *args, **kwargs)
        # fit ends by assigning the averages (use_ema): on JAX the weights then share their
        # buffers, which the next compiled step (evaluate) donates and deletes
        detach_averaged_weights(self)
        return history

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """``keras.Model.evaluate``, after :func:`check_arrays` on numpy inputs (and
        :func:`check_dataset_labels` on a `tf.data` set)."""
        check_arrays(self, x, y)
        check_dataset_labels(self, x)
        with variables_kept(self):
            return super().evaluate(x, y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        """``keras.Model.predict``, after :func:`check_arrays` on a numpy input; a list of
        images is refused, naming ``keras_fcn.predict`` (:func:`check_image_list`)."""
        check_image_list(self, x)
        check_arrays(self, x, None)
        with variables_kept(self):
            return super().predict(x, *args, **kwargs)

    def get_config(self):
        config = super().get_config()
        config["fcn"] = dict(self.fcn_info)
        return config

    def get_compile_config(self):
        """Keras' compile config with ``jit_compile`` saved as "auto": whether to compile the
        step is the choice of the machine and backend that trained the model (JAX: always),
        not of the model; a file trained on JAX ran under ``torch.compile`` when loaded on
        PyTorch (slower there, docs/gpu.md). Each backend that loads it takes its default.
        A Keras optimizer is saved under its public module (``keras.optimizers``): on PyTorch
        Keras records its backend class's (``keras.src.backend.torch.optimizers
        .torch_adamw``), and loading the file on TensorFlow or JAX imported PyTorch there (a
        crash where the two do not share a process)."""
        config = super().get_compile_config()
        if config and "jit_compile" in config:
            config["jit_compile"] = "auto"
        if config:
            _public_optimizer_modules(config.get("optimizer"))
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        info = config.pop("fcn", None) or {}
        model = super().from_config(config, custom_objects=custom_objects)
        model.fcn_info = dict(info)
        return model
