"""A model ready to predict files: its class names, colours, masks and uncertainty maps.

:class:`PredictOptions` holds what ``tools/predict.py``'s flags set; :class:`Predictor` loads the
model and its labels once and turns frames into probabilities and output maps
(``keras_fcn.inference.files`` writes them).

Example:
    predictor = Predictor(PredictOptions(model="fcn8s.keras", inputs=["photos/"],
                                         output_dir="out", classes=["person"]))
    probs = predictor.probabilities(image)
    predictor.mask_ids, predictor.mask_name(15)
"""

import dataclasses
import os
import re

import numpy as np

from keras_fcn import runtime
from keras_fcn.inference.forward import in_precision
from keras_fcn.inference.predict import check_predict_args, predict
from keras_fcn.inference.resolution import (describe, input_size, labels_file, to_image_size,
                                            to_model_size)
from keras_fcn.inference.uncertainty import cached_mc_model, entropy, margin, mc_dropout
from keras_fcn.labels import VOC_CLASSES, ModelLabels
from keras_fcn.models.inspect import check_rgb_input, check_single_output, num_classes_of
from keras_fcn.presets import list_presets, model_file
from keras_fcn.weights.io import load_model_file

UNCERTAINTIES = ("entropy", "margin", "mc_dropout")
# mp4: a grey matte; webm (VP9) and mov (ProRes 4444): the frame with the matte as alpha.
VIDEO_FORMATS = ("mp4", "webm", "mov")
# Label PNGs are 8-bit palette images: class ids 0..255.
MAX_CLASSES = 256

@dataclasses.dataclass
class PredictOptions:
    """What to predict and write; ``tools/predict.py``'s flags map one to one onto these."""

    model: str
    inputs: list
    output_dir: str
    classes: list = dataclasses.field(default_factory=list)
    uncertainty: list = dataclasses.field(default_factory=list)
    mc_samples: int = 10
    smooth_alpha: float = 1.0
    tile_size: int = "auto"  # "auto": tiles above 2048x2048 pixels; None: one pass
    tile_overlap: int = 64
    tta_flip: bool = False
    scales: tuple = (1.0,)
    alpha: float = 0.5
    video_format: str = "mp4"
    mask_margin: float = 0.1  # video masks: evidence margin of the hysteresis and soft edge
    mask_hold: int = 2  # video masks: frames the evidence must stay past the margin
    mask_feather: int = 4  # video masks: guided-filter radius of the alpha edges (0: none)
    overwrite: bool = False
    progress: bool = False
    precision: str = None  # None: the model's own; "float32", "bfloat16", "float16", "auto"
    jit_compile: bool = None  # None: keras_fcn.runtime.fast_path
    # The size the model sees (keras_fcn.inference.resolution.input_size): "auto" = the
    # training size in the model's labels, "native"/None = each frame's own, or (h, w).
    image_size: object = "auto"

    def check(self):
        """Raises ValueError naming the first bad option, before any work."""
        if not self.inputs:
            raise ValueError("Give at least one input.")
        if not self.output_dir:
            raise ValueError("output_dir is required.")
        if not self.model or not (os.path.isfile(self.model) or self.model in list_presets()):
            raise ValueError("model must be an existing model file or a preset name "
                             f"(keras_fcn.presets.list_presets()). Received: model={self.model!r}")
        bad = [u for u in self.uncertainty if u not in UNCERTAINTIES]
        if bad:
            raise ValueError(f"uncertainty (--uncertainty) accepts {UNCERTAINTIES}. "
                             f"Received: {bad}")
        if not 0.0 < self.smooth_alpha <= 1.0:
            raise ValueError("smooth_alpha (--smooth_alpha) must be in (0, 1]. "
                             f"Received: {self.smooth_alpha}")
        if "mc_dropout" in self.uncertainty and self.mc_samples < 2:
            raise ValueError(f"mc_samples (--mc_samples) must be >= 2. Received: {self.mc_samples}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) \
                or not 0.0 <= self.alpha <= 1.0:  # NaN fails the comparison too
            raise ValueError(f"alpha (--alpha, the opacity of the class colours) must be a number "
                             f"in [0, 1]. Received: {self.alpha!r}")
        if self.video_format not in VIDEO_FORMATS:
            raise ValueError(f"video_format (--video_format) must be one of {VIDEO_FORMATS}. "
                             f"Received: {self.video_format!r}")
        if not 0.0 <= self.mask_margin < 1.0 or self.mask_hold < 1 or self.mask_feather < 0:
            raise ValueError("mask_margin (--mask_margin) must be in [0, 1), mask_hold >= 1, "
                             f"mask_feather >= 0."
                             f" Received: {self.mask_margin}, {self.mask_hold}, "
                             f"{self.mask_feather}")
        check_predict_args(1, self.tile_size, self.tile_overlap, self.scales)
        input_size(self.image_size)  # a bad value raises ValueError naming it


def resolve_classes(classes, class_names, num_classes):
    """Maps class names (case-insensitive), ids, or the ``class<id>`` names that the masks of
    unnamed classes carry in their file names (:func:`mask_names`) to ids.

    Example:
        >>> resolve_classes(["person", "7"], VOC_CLASSES, 21)
        [15, 7]
        >>> resolve_classes(["class1", "2"], None, 3)
        [1, 2]
    """
    lookup = {str(n).lower(): i for i, n in enumerate(class_names or [])}
    unnamed = [i for i in range(num_classes) if _mask_base(i, class_names) == f"class{i}"]
    for i in unnamed:  # a class's own name wins
        lookup.setdefault(f"class{i}", i)
    ids = []
    for c in classes:
        key = str(c).strip()
        if key.lower() in lookup:
            ids.append(lookup[key.lower()])
        elif key.isdigit() and int(key) < num_classes:
            ids.append(int(key))
        else:
            raise ValueError(f"Unknown class. Received: {c!r}. Known: "
                             f"{_known_classes(class_names, num_classes, unnamed)}")
    return ids


def _known_classes(class_names, num_classes, unnamed):
    """The spellings :func:`resolve_classes` accepts, for its error message."""
    ids = f"ids 0..{num_classes - 1}"
    if len(unnamed) == num_classes:
        return f"{ids} or names class0..class{num_classes - 1}"
    names = [str(n) for i, n in enumerate(class_names) if i not in unnamed]
    return ", ".join(names + [f"class{i}" for i in unnamed]) + f" (names) or {ids}"


def uncertainty_names(uncertainty):
    """Names of the maps written per frame for the ``uncertainty`` option.

    Example:
        >>> uncertainty_names(["mc_dropout", "entropy"])
        ['entropy', 'mc_variance', 'mc_mutual_info']
    """
    names = [u for u in ("entropy", "margin") if u in uncertainty]
    if "mc_dropout" in uncertainty:
        names += ["mc_variance", "mc_mutual_info"]
    return names


def mask_prefix(base):
    """What the names of the masks of the outputs ``base`` start with (a class name follows).

    Example:
        >>> mask_prefix("out/a")
        'out/a_mask_'
    """
    return f"{base}_mask_"


def frame_output_names(base, mask_parts, maps, overlay_file=True):
    """Names of the files one frame writes, ``base`` and a suffix each: the label map, the
    overlay (unless ``overlay_file`` is False: a video's frames are overlaid in its video), a
    mask per name part of ``mask_parts`` (:func:`mask_prefix`) and a PNG and an NPY per map
    of ``maps`` (:func:`uncertainty_names`).

    Example:
        >>> frame_output_names("out/a", ["person"], ["entropy"])[1:]
        ['out/a_overlay.png', 'out/a_mask_person.png', 'out/a_entropy.png', 'out/a_entropy.npy']
    """
    names = [f"{base}_labels.png"] + ([f"{base}_overlay.png"] if overlay_file else [])
    names += [f"{mask_prefix(base)}{part}.png" for part in mask_parts]
    for name in maps:
        names += [f"{base}_{name}.png", f"{base}_{name}.npy"]
    return names


def safe_name(text):
    """A file-name-safe version of a class name: letters and digits of any script, ``_``,
    ``.`` and ``-`` are kept, runs of anything else become ``_``.

    Example:
        >>> safe_name("potted plant/2")
        'potted_plant_2'
        >>> safe_name("自行车")
        '自行车'
    """
    return re.sub(r"[^\w.-]+", "_", str(text)).strip("_.") or "class"


def _mask_base(class_id, class_names):
    """The name part of class ``class_id``'s masks before duplicates are told apart: its name
    made safe, or ``class<id>`` for a class without a usable name."""
    if class_names and class_id < len(class_names) and safe_name(class_names[class_id]) != "class":
        return safe_name(class_names[class_id])
    return f"class{class_id}"


def mask_names(class_ids, class_names):
    """``{class id: file name part}`` of the masks of ``class_ids``: the class name made safe
    (:func:`safe_name`), with ``_<id>`` added where two names would give one file (case
    aside: macOS and Windows folders ignore it); ``class<id>`` for unnamed classes.

    Raises:
        ValueError: two masks would still share a file name.

    Example:
        >>> mask_names([1, 2, 3], ["bg", "a/b", "a b", "car"])
        {1: 'a_b_1', 2: 'a_b_2', 3: 'car'}
    """
    bases = {c: _mask_base(c, class_names) for c in class_ids}
    counts = {}
    for name in bases.values():
        counts[name.casefold()] = counts.get(name.casefold(), 0) + 1
    names = {c: name if counts[name.casefold()] == 1 else f"{name}_{c}"
             for c, name in bases.items()}
    seen = {}
    for c, name in names.items():
        if name.casefold() in seen:
            raise ValueError(f"The masks of classes {seen[name.casefold()]} and {c} would both be "
                             f"written as '*_mask_{name}.png'; rename a class in the labels "
                             "file.")
        seen[name.casefold()] = c
    return names


class Predictor:
    """A loaded model with its class names, colours and options: frames in, output maps out.

    Class names and colours come from the model's labels sidecar
    (``keras_fcn.labels.ModelLabels.for_model``) when there is one; without one a 21-class
    model takes the PASCAL VOC names and any other model's classes are unnamed (masks
    ``*_mask_class<id>``, ``classes`` takes ids or those names), in the VOC colours.

    Example:
        predictor = Predictor(PredictOptions(model="fcn8s.keras", inputs=[], output_dir="."))
        predictor.class_names[:2]
    """

    def __init__(self, opts):
        if not isinstance(opts, PredictOptions):
            what = "a Keras model" if hasattr(opts, "predict_on_batch") else \
                f"a {type(opts).__name__}"
            raise TypeError(
                f"Predictor expects a keras_fcn.inference.PredictOptions (model=<.keras file "
                f"or preset name>, inputs, output_dir, ...). Received {what}: {opts!r:.80}. "
                "For a model already loaded use keras_fcn.inference.predict(model, image).")
        self.opts = opts
        path = model_file(opts.model, single_output="prediction")  # a preset: downloaded once
        self.model = check_single_output(load_model_file(path), "prediction")
        self.num_classes = num_classes_of(self.model)
        if self.num_classes > MAX_CLASSES:
            # Class ids past 255 would wrap in the 8-bit label PNGs, masks and overlays.
            raise ValueError(
                f"Model {opts.model!r} predicts {self.num_classes} classes; tools/predict.py "
                f"writes class ids as 8-bit palette PNGs, which hold at most {MAX_CLASSES} "
                "classes. Use keras_fcn.inference.predict for its int32 label maps.")
        labels = ModelLabels.for_model(path)
        if labels is not None and labels.num_classes != self.num_classes:
            raise ValueError(f"The labels of {opts.model!r} name {labels.num_classes} classes; "
                             f"the model has {self.num_classes}.")
        check_rgb_input(self.model, None if labels is None else labels.normalization,
                        what="tools/predict.py")
        names = None if labels is None else list(labels.class_names)
        if names is None and self.num_classes == len(VOC_CLASSES):
            names = list(VOC_CLASSES)
        self.class_names = names
        self.palette = None if labels is None else np.asarray(labels.palette)
        # The size frames are resized to for the model (None: their own); probabilities are
        # resized back to the frame, as tools/evaluate.py scores them.
        self.image_size = input_size(opts.image_size, labels)
        # ... and the precision it computes in (--precision=auto resolved: bfloat16 on CPUs
        # with AVX512-BF16 or AMX), as tools/evaluate.py says it
        computed = (runtime.resolve_precision(opts.precision, model=self.model)
                    if opts.precision else runtime.model_precision(self.model))
        self.input_note = (describe(self.image_size, opts.image_size, labels_file(path))
                           + f", computed in {computed}"
                           + (" (--precision=auto)" if opts.precision == "auto" else ""))
        # A class asked for twice gets one mask.
        self.mask_ids = list(dict.fromkeys(resolve_classes(opts.classes, names,
                                                           self.num_classes)))
        self._mask_names = mask_names(self.mask_ids, names)
        if "mc_dropout" in opts.uncertainty:
            # Refused now (no dropout), not after the first frame; made once, in the precision
            # that mc_dropout runs it in.
            cached_mc_model(in_precision(self.model, opts.precision))

    def mask_name(self, class_id):
        """The file name part of class ``class_id``'s masks (unique among the masks)."""
        if class_id in self._mask_names:
            return self._mask_names[class_id]
        return mask_names([class_id], self.class_names)[class_id]

    def probabilities(self, image):
        """The softmax ``(H, W, C)`` of one RGB image, with the tiling and TTA options: run
        at :attr:`image_size` (the image resized to it, the softmax resized back) when set."""
        _, probs = predict(self.model, to_model_size(image, self.image_size),
                           **self._predict_options())
        return to_image_size(probs, np.shape(image)[:2])

    def _predict_options(self):
        """The tiling, TTA and precision options of ``predict`` (and ``mc_dropout``)."""
        opts = self.opts
        return {"tile_size": opts.tile_size, "tile_overlap": opts.tile_overlap,
                "tta_flip": opts.tta_flip, "scales": tuple(opts.scales),
                "precision": opts.precision, "jit_compile": opts.jit_compile}

    def uncertainty_names(self):
        """Names of the uncertainty maps written per frame."""
        return uncertainty_names(self.opts.uncertainty)

    def uncertainty_maps(self, image, probs):
        """Returns ``{name: (array, vmin, vmax, cmap)}`` for the requested maps."""
        log_c = float(np.log(self.num_classes))
        maps = {}
        if "entropy" in self.opts.uncertainty:
            maps["entropy"] = (entropy(probs), 0.0, log_c, "inferno")
        if "margin" in self.opts.uncertainty:
            maps["margin"] = (margin(probs), 0.0, 1.0, "inferno_r")
        if "mc_dropout" in self.opts.uncertainty:
            # The same tiling and TTA as `probabilities`: the maps describe the labels' softmax.
            # At the labels' input size too, the maps resized back to the frame.
            mc = mc_dropout(self.model, to_model_size(image, self.image_size),
                            num_samples=self.opts.mc_samples, **self._predict_options())
            size = np.shape(image)[:2]
            maps["mc_variance"] = (to_image_size(mc["variance"], size), 0.0, None, "inferno")
            maps["mc_mutual_info"] = (to_image_size(mc["mutual_information"], size), 0.0,
                                      log_c, "inferno")
        return maps

    def frame_outputs(self, base, overlay_file=True):
        """Paths written for one frame whose outputs start with ``base``."""
        return frame_output_names(base, [self.mask_name(c) for c in self.mask_ids],
                                  self.uncertainty_names(), overlay_file)

    def image_outputs(self, item):
        """Paths written for an image item."""
        return self.frame_outputs(os.path.join(item.out_dir, item.stem))

    def video_frame_outputs(self, item, frames):
        """Paths of the per-frame files of the first ``frames`` frames of a video item."""
        folder = os.path.join(item.out_dir, item.stem)
        return [path for index in range(frames) for path in
                self.frame_outputs(os.path.join(folder, f"frame_{index:06d}"), False)]

    def video_outputs(self, item):
        """Paths of the videos written for a video item: the overlay, then a mask per class."""
        base = os.path.join(item.out_dir, item.stem)
        return [f"{base}_overlay.mp4"] + [
            f"{mask_prefix(base)}{self.mask_name(c)}.{self.opts.video_format}"
            for c in self.mask_ids]
