"""The configuration of a training run: four groups of fields, and the absl flags made from them.

`TrainConfig` holds a `DataConfig` (``config.data``), a `ModelConfig` (``config.model``), an
`OptimConfig` (``config.optim``) and a `RunConfig` (``config.run``), all frozen dataclasses.
Each field is a flag of the recipes in ``examples/`` with the same name (one exception:
``ModelConfig.variant`` is ``--model``); its help text is in the field's metadata. These flag
names are also the *flat names* of `TrainConfig.replace` and `TrainConfig.flat`.

Unset is None in Python (the recipe picks: the paper's widths, the default learning rate, ...).
On the command line a flag left out is unset, and so is an empty value (``--widths=``,
``--holdout=``) or ``none``, or 0 for a number whose default is unset (``--fc_units=0``).
Sizes are ``'H,W'`` (or ``'S'`` for a square) and lists are comma-separated.

Example:
    >>> config = TrainConfig(data=DataConfig(dataset="camvid"), optim=OptimConfig(epochs=3))
    >>> config.replace(epochs=5, widths=(8, 8, 16, 16, 16)).optim.epochs
    5

A recipe script: ``define_flags(dataset="sbd", model="staged")``, then
``app.run(lambda argv: run(config_from_flags()))``.
"""

import dataclasses
import numbers
import warnings

from keras_fcn.models import BACKBONES
from keras_fcn.training.consistency import DEFAULT_KIND as CONSISTENCY_DEFAULT
from keras_fcn.training.consistency import KINDS as CONSISTENCY_KINDS
from keras_fcn.training.distribute import STRATEGIES
from keras_fcn.training.flag_parsing import (
    UNSET_TEXT,
    optional_number_parser,
    parse_floats,
    parse_size,
)
from keras_fcn.training.flag_parsing import parse_ints as _parse_ints
from keras_fcn.training.flag_parsing import parse_verbose as _parse_verbose
from keras_fcn.training.optimizers import (
    LOSS_REDUCTIONS,
    LR_SCHEDULES,
    OPTIMIZERS,
    PAPER_MOMENTUM,
    PAPER_WEIGHT_DECAY,
)

# The paper's variants, "dilated" (the FCN-ResNets: --backbone=resnet50|resnet101) and the
# paper's staged 32s->16s->8s. Which a backbone has is its trunk's (Trunk.variants).
MODELS = ("fcn32s", "fcn16s", "fcn8s", "fcn8s_at_once", "dilated", "staged")


# Field kinds: (absl DEFINE_* suffix, parser of the flag value or None).
_KINDS = {
    str: ("string", None), int: ("integer", None), float: ("float", None), bool: ("bool", None),
    "size": ("string", parse_size), "floats": ("string", parse_floats),
    "ints": ("string", _parse_ints), "verbose": ("string", _parse_verbose),
}


def _flag(default, help, kind=None, choices=None, flag=None, zero_is_value=False):
    """A config field and its flag; ``zero_is_value``: a given 0 is kept (a number field
    whose default is unset otherwise takes 0 for unset)."""
    return dataclasses.field(default=default, metadata={"help": help, "kind": kind,
                                                        "choices": choices, "flag": flag,
                                                        "zero_is_value": zero_is_value})


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What the model learns from: the data set, its splits and the augmentation."""

    dataset: str = _flag("shapes", "shapes|camvid|voc|sbd|folder|tfds:<name>.")
    data_dir: str = _flag(None, "Data folder (shapes: empty = generated in memory).")
    val_data_dir: str = _flag(None, "sbd: a VOC folder for the seg11valid validation split.")
    val_split: str = _flag(None, "tfds: validation split (empty: test).")
    holdout: str = _flag(None, "camvid/folder: comma-separated groups to validate on (camvid: "
                         "drives, e.g. 0006R0); train+val are pooled and split by group "
                         "(docs/camvid.md).")
    group_by: str = _flag(None, "folder: regex on image file names; its first group (or whole "
                          "match) is a frame's group for --holdout.")
    num_classes: int = _flag(None, "folder/tfds: number of classes.")
    ignore_label: int = _flag(255, "folder/tfds: void label.")
    val_batch_size: int = _flag(1, "Validation batch size (with --image_size; else 1).")
    crop_size: tuple = _flag(None, "Random crop 'H,W' (empty: whole images).", kind="size")
    image_size: tuple = _flag(None, "Resize to 'H,W' first (reduced resolution; masks nearest).",
                              kind="size")
    scale_range: tuple = _flag(None, "Random scale 'lo,hi' (empty: none).", kind="floats")
    flip: bool = _flag(True, "Random left-right flips.")
    photometric: float = _flag(
        0.0, "Colour augmentation strength in (0, 1] (0: off): brightness shift up to 64 * S "
        "of 255, contrast and saturation 1 +- S/2, hue up to S/10 of a turn (images only).")
    blur: float = _flag(0.0, "Largest std in pixels of a random Gaussian blur of half the "
                        "training images (0: off; e.g. 1.5).")
    unlabelled_video_dir: str = _flag(
        None, "With --temporal_consistency: a folder of videos (or of folders of frames) whose "
        "consecutive frames, with OpenCV's optical flow (pip install keras_fcn[flow]), are "
        "consistency pairs too; needs --image_size and no --crop_size.")
    unlabelled_pairs: int = _flag(500, "Most frame pairs read from --unlabelled_video_dir.")
    num_train: int = _flag(300, "shapes: training images.")
    num_val: int = _flag(50, "shapes: validation images.")
    shapes_size: int = _flag(64, "shapes: image side in pixels.")
    cache: bool = _flag(None, "Cache the decoded data in memory (default: shapes and camvid).")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The network: FCN variant (``--model``), backbone, initial weights and size."""

    variant: str = _flag("fcn8s", "FCN variant (dilated: the FCN-ResNet of --backbone="
                         "resnet50|resnet101), or staged 32s->16s->8s.", choices=MODELS,
                         flag="model")
    backbone: str = _flag("vgg16", "Backbone.", choices=BACKBONES)
    weights: str = _flag(None, "imagenet|none|path of initial weights (none: random).")
    widths: tuple = _flag(None, "Trunk widths, e.g. VGG16's block widths 16,32,64,64,64 "
                          "(empty: the trunk's, VGG16's 64,128,256,512,512); a trunk without "
                          "them refuses them.", kind="ints")
    fc_units: int = _flag(None, "fc6/fc7 width (0: the paper's 4096; VGG16 and AlexNet only).")
    dropout: float = _flag(None, "Dropout after fc6/fc7, or in the ResNets' head (0: none; "
                           "empty or none: the trunk's: the paper's 0.5; ResNets: "
                           "torchvision's 0.1).", zero_is_value=True)
    trainable_upsampling: bool = _flag(
        False, "Train the bilinear upsampling layers (the paper keeps them fixed).")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """How it learns: epochs, batch, optimizer, learning rate, loss and its terms."""

    epochs: int = _flag(10, "Epochs (per stage for --model=staged).")
    steps_per_epoch: int = _flag(None, "Train steps per epoch (0: one pass over the data).")
    batch_size: int = _flag(1, "Global batch size.")
    optimizer: str = _flag("sgd", "sgd (momentum) or adam(w).", choices=OPTIMIZERS)
    learning_rate: float = _flag(None, "0: recipe default (SGD: the paper's rates, times the "
                                 "pixels per image with --loss_reduction=mean; Adam: 1e-3).")
    stage_lr_factors: tuple = _flag(None, "Staged: per-stage learning-rate factors, e.g. "
                                    "1,0.01,0.001.", kind="floats")
    momentum: float = _flag(PAPER_MOMENTUM, "SGD momentum.")
    weight_decay: float = _flag(PAPER_WEIGHT_DECAY, "Weight decay of kernels.")
    bias_lr_multiplier: float = _flag(2.0, "SGD bias rate factor.")
    lr_schedule: str = _flag("constant", "Learning-rate decay over the run's steps (per stage): "
                             "constant, poly ((1 - t/T)^0.9, DeepLab) or cosine.",
                             choices=LR_SCHEDULES)
    warmup_epochs: float = _flag(0.0, "Linear learning-rate warm-up over this many epochs "
                                 "(0: none), then --lr_schedule.")
    ema_decay: float = _flag(0.0, "Keep an exponential moving average of the weights with this "
                             "decay (e.g. 0.999; 0: off); validation, best.keras and the final "
                             "model use the averaged weights.")
    label_smoothing: float = _flag(0.0, "Label smoothing e of the loss: targets (1 - e) one-hot "
                                   "+ e / classes (0: off; void pixels stay ignored).")
    loss_reduction: str = _flag("mean", "mean over valid pixels, or sum per image (the paper).",
                                choices=LOSS_REDUCTIONS)
    class_weights: str = _flag(None, "none|median|sqrt_median|path of a JSON list or text of "
                               "floats (median: median-frequency weights; sqrt_median: their "
                               "square roots, a milder balance).")
    temporal_consistency: float = _flag(
        0.0, "Weight of the temporal-consistency loss (0: off): each training image is also "
        "seen moved by a small random camera warp, and the two predictions must agree "
        "(docs/temporal.md).")
    temporal_loss: str = _flag(
        CONSISTENCY_DEFAULT, "With --temporal_consistency: kl (symmetric KL of the two "
        "softmaxes), ce (cross-entropy against the labels of the moved first prediction, a "
        "pseudo-label) or kl+ce (their sum).", choices=CONSISTENCY_KINDS)
    temporal_warp: tuple = _flag(
        None, "With --temporal_consistency: the largest camera move of a training pair, "
        "'shift,zoom,rotation' (pixels, relative scale change, degrees; default 2,0.01,0.5). "
        "Match it to your footage's motion between frames, e.g. 2,0.01,0.5.", kind="floats")
    max_minutes_per_stage: float = _flag(
        None, "Stop a model's training after this many minutes (0: no limit).")
    budget_clock: str = _flag("wall", "What --max_minutes_per_stage counts: wall (wall-clock "
                              "minutes) or cpu (CPU minutes of the process, all threads).",
                              choices=("wall", "cpu"))


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Where and how it runs: run folder, resume, seed, precision, devices, evaluation
    and export."""

    output_dir: str = _flag("runs/run", "Run directory.")
    resume: bool = _flag(False, "Continue the run in the run directory.")
    overwrite: bool = _flag(False, "Replace an existing run directory (only a folder of a "
                            "run's files; tools/evaluate.py's best.eval.json and "
                            "model.eval.json of its models are removed with them).")
    seed: int = _flag(0, "Random seed.")
    strategy: str = _flag("default", "Distribution strategy.", choices=STRATEGIES)
    precision: str = _flag(
        "float32", "float32|bfloat16|float16|auto: compute precision (logits, loss and the FCN "
        "head stay float32). auto: bfloat16 on CPUs with AMX or AVX512-BF16 and on "
        "GPUs from Ampere under JAX/PyTorch, float16 on older GPUs and under TensorFlow, float32 "
        "elsewhere (keras_fcn.runtime).", choices=("float32", "bfloat16", "float16",
                                                           "auto"))
    mixed_precision: bool = _flag(False, "The 0.1.0 flag: mixed precision of the device "
                                  "(a GPU's as --precision=auto picks it, bfloat16 on a CPU).")
    jit_compile: bool = _flag(None, "XLA-compile the train step (default: the faster path for "
                              "this CPU and model, keras_fcn.runtime.fast_path: on JAX always; "
                              "off on JAX runs op by op; refused on PyTorch; "
                              "KERAS_FCN_JIT=0/1 also overrides it).")
    conv_matmul: bool = _flag(None, "Run the large-kernel convolutions (fc6) as one matrix "
                              "multiply (TensorFlow backend only; default: on a CPU, "
                              "keras_fcn.runtime.fast_path; KERAS_FCN_CONV_MATMUL=0/1 also "
                              "overrides it).")
    validation_steps: int = _flag(None, "Validation steps per epoch (0: all validation data).")
    flip_eval: bool = _flag(False, "Flip TTA in the final evaluation.")
    eval_scales: tuple = _flag(None, "Multi-scale TTA in the final evaluation: image scales "
                               "whose softmax is averaged, e.g. 0.75,1,1.25 (empty: 1).",
                               kind="floats")
    export: bool = _flag(False, "Export a float16 TFLite model after training.")
    tensorboard: bool = _flag(False, "Write TensorBoard logs (needs the tensorboard package).")
    verbose: str = _flag("auto", "Progress output: auto (bars on a terminal; otherwise 2), "
                         "0, 1 (bars) or 2 (a line per epoch and one a minute within it).",
                         kind="verbose")


GROUPS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "run": RunConfig}


def flag_name(field):
    """The flag (and flat name) of a group's field: its name, or ``--model`` for ``variant``."""
    return field.metadata["flag"] or field.name


# Flat name (= flag name) -> (group, field): each field is in exactly one group.
FIELDS = {flag_name(field): (group, field)
          for group, cls in GROUPS.items() for field in dataclasses.fields(cls)}


def _grouped(changes):
    """{flat name: value} -> {group: {field name: value}}; an unknown name is an error."""
    unknown = sorted(set(changes) - set(FIELDS))
    if unknown:
        raise ValueError(f"No such TrainConfig field(s): {unknown}. Expected flag names such as "
                         f"'epochs' or 'widths' (keras_fcn.training.config.FIELDS).")
    grouped = {group: {} for group in GROUPS}
    for name, value in changes.items():
        group, field = FIELDS[name]
        grouped[group][field.name] = value
    return grouped


@dataclasses.dataclass(frozen=True, init=False)
class TrainConfig:
    """Everything a training run needs, in four groups; ``examples/train.py`` fills it from flags.

    Args:
        data: a `DataConfig` (default: its defaults); likewise model (`ModelConfig`), optim
            (`OptimConfig`) and run (`RunConfig`).
        **flat: deprecated (DeprecationWarning): fields by flat name, as in 0.1
            (``TrainConfig(epochs=5)``); write ``TrainConfig().replace(epochs=5)``.

    Sizes are (height, width) tuples or None. ``optim.batch_size`` is the global batch (split
    across replicas); ``optim.learning_rate=None`` picks ``default_learning_rate``. Reading a
    field by its flat name (``config.widths``) still works and warns (DeprecationWarning), except
    ``config.model``: that is the `ModelConfig` (the variant is ``config.model.variant``).

    Example:
        >>> config = TrainConfig(model=ModelConfig(variant="staged"))
        >>> config.model.variant, config.optim.learning_rate
        ('staged', None)
    """

    data: DataConfig
    model: ModelConfig
    optim: OptimConfig
    run: RunConfig

    def __init__(self, data=None, model=None, optim=None, run=None, **flat):
        if isinstance(model, str):  # TrainConfig(model="staged") of 0.1: the variant
            flat["model"], model = model, None
        for group, value in {"data": data, "model": model, "optim": optim, "run": run}.items():
            cls = GROUPS[group]
            if value is None:
                value = cls()
            elif not isinstance(value, cls):
                raise TypeError(f"TrainConfig({group}=...) must be a {cls.__name__}. Received: "
                                f"{group}={value!r}")
            object.__setattr__(self, group, value)
        if flat:
            warnings.warn("TrainConfig(name=value) with flat field names is deprecated: use the "
                          "groups or TrainConfig().replace(name=value). Received: "
                          f"{sorted(flat)}", DeprecationWarning, stacklevel=2)
            for group, changes in _grouped(flat).items():
                object.__setattr__(self, group,
                                   dataclasses.replace(getattr(self, group), **changes))

    def __getattr__(self, name):  # only for names that are not attributes: the flat reads
        if name not in FIELDS:
            raise AttributeError(f"'TrainConfig' object has no attribute {name!r}")
        group, field = FIELDS[name]
        warnings.warn(f"config.{name} is deprecated: read config.{group}.{field.name}.",
                      DeprecationWarning, stacklevel=2)
        return getattr(getattr(self, group), field.name)

    def replace(self, **changes):
        """A copy with some fields changed, by flat name, or with whole groups replaced.

        Example:
            >>> model = TrainConfig().replace(widths=(8, 8, 16, 16, 16), model="staged").model
            >>> model.variant, model.widths, model.fc_units
            ('staged', (8, 8, 16, 16, 16), None)
        """
        groups = {group: getattr(self, group) for group in GROUPS}
        for group in GROUPS:
            if isinstance(changes.get(group), GROUPS[group]):
                groups[group] = changes.pop(group)
        for group, fields in _grouped(changes).items():
            if fields:
                groups[group] = dataclasses.replace(groups[group], **fields)
        return TrainConfig(**groups)

    def flat(self):
        """{flat name: value} of every field, the names being the flags'."""
        return {name: getattr(getattr(self, group), field.name)
                for name, (group, field) in FIELDS.items()}


# Numbers with a minimum: flat name -> (minimum, what the value is).
# --epochs=0 is legitimate: no training step, the initial weights are saved and evaluated (the
# NYUDv2 recipe converts its data that way; a --resume with no epochs left re-evaluates).
# --steps_per_epoch and --validation_steps may be 0: unset (one pass; all validation data).
MINIMUMS = {
    "epochs": (0, "0: no training, the initial weights are saved and evaluated"),
    "steps_per_epoch": (0, "train steps per epoch; 0: one pass over the data"),
    "validation_steps": (0, "validation steps per epoch; 0: all validation data"),
    "batch_size": (1, "images per batch"),
    "val_batch_size": (1, "images per validation batch"),
    "num_train": (1, "shapes: training images"),
    "num_val": (1, "shapes: validation images"),
    "shapes_size": (1, "shapes: image side in pixels"),
}


def check_numbers(config):
    """Checks the numbers of `MINIMUMS`: a ValueError names the first flag below its minimum
    (or not an integer). `config_from_flags` and `keras_fcn.training.run` call it, so a bad
    value stops a run before any data is read.

    Returns:
        `config`, with a `steps_per_epoch` or `validation_steps` of 0 made None (unset), as on
        the command line.

    Example:
        >>> check_numbers(TrainConfig().replace(steps_per_epoch=-2))
        Traceback (most recent call last):
        ValueError: --steps_per_epoch must be an integer >= 0 (train steps per epoch; 0: one
        pass over the data). Received: steps_per_epoch=-2
    """
    flat = config.flat()
    for name, (minimum, meaning) in MINIMUMS.items():
        value = flat[name]
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
            raise ValueError(f"--{name} must be an integer >= {minimum} ({meaning}). "
                             f"Received: {name}={value!r}")
    unset = {name: None for name in ("steps_per_epoch", "validation_steps") if flat[name] == 0}
    return config.replace(**unset) if unset else config


def checked_optim(flag_values):
    """The `OptimConfig` of a script that defines only --epochs, --steps_per_epoch (0: unset)
    and --batch_size of the shared flags (the SIFT Flow and NYUDv2 recipes), checked as
    `check_numbers` checks examples/train.py's."""
    return check_numbers(TrainConfig().replace(
        epochs=flag_values.epochs, steps_per_epoch=flag_values.steps_per_epoch,
        batch_size=flag_values.batch_size)).optim


def refuse_synthetic_extras(flag_values, replaced):
    """Refuses the flags named in `replaced` when given with --synthetic (which trains a tiny
    random model on fake files and would silently ignore them), naming them."""
    given = [name for name in replaced if flag_values[name].present]
    if given:
        raise ValueError(
            f"--synthetic trains a tiny random model on fake files: it does not use "
            f"{', '.join('--' + name for name in given)}. Leave them out, or leave out "
            f"--synthetic. Received: "
            + ", ".join(f"{name}={flag_values[name].value!r}" for name in given))


def _kind(field):
    return _KINDS[field.metadata["kind"] or field.type]


def _flag_value(field, value):
    """A config value as its flag's default (tuples -> "a,b"; None stays None: unset)."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value) if _kind(field)[0] == "string" else value


def define_flags(flag_values=None, fields=None, **defaults):
    """Defines one flag per `TrainConfig` field (of every group) on ``absl.flags.FLAGS``.

    Args:
        flag_values: the ``absl.flags.FlagValues`` to define them on (default the global
            ``FLAGS``).
        fields: flat names of the fields to define (default all); a recipe with its own loop
            (``examples/train_nyud.py``) takes the few it needs.
        **defaults: other defaults, by flat name, in the flag's format (``widths="8,16"``)
            or the config's (``widths=(8, 16)``).

    Example:
        >>> from absl import flags
        >>> values = flags.FlagValues()
        >>> define_flags(values, dataset="camvid", widths=(8, 16, 32, 32, 32))
        >>> values(["train.py", "--fc_units=0", "--epochs=3"])[0]
        'train.py'
        >>> config = config_from_flags(values)
        >>> config.data.dataset, config.model.widths, config.model.fc_units, config.optim.epochs
        ('camvid', (8, 16, 32, 32, 32), None, 3)
    """
    from absl import flags

    names = list(fields or FIELDS)
    unknown = sorted(name for name in set(defaults) | set(names) if name not in FIELDS
                     or name not in names)
    if unknown:
        raise ValueError(f"define_flags: no such TrainConfig field(s) to define. Received: "
                         f"{unknown}")
    for name in names:
        field = FIELDS[name][1]
        default = _flag_value(field, defaults.get(name, field.default))
        help_text, choices = field.metadata["help"], field.metadata["choices"]
        where = {"flag_values": flags.FLAGS if flag_values is None else flag_values}
        if choices:
            flags.DEFINE_enum(name, default, list(choices), help_text, **where)
        elif field.default is None and _kind(field)[0] in ("float", "integer"):
            # An unset number: empty and none unset it too (absl's parsers refuse them).
            flags.DEFINE(optional_number_parser(_kind(field)[0]), name, default, help_text,
                         **where)
        else:
            getattr(flags, f"DEFINE_{_kind(field)[0]}")(name, default, help_text, **where)


def _unset(field, value):
    """Whether a flag value means unset: for a field that may be None, empty, none or 0."""
    if field.default is not None or isinstance(value, bool):
        return False
    return (value is None or value in UNSET_TEXT
            or (value == 0 and not field.metadata.get("zero_is_value")))


def config_from_flags(flag_values=None):
    """Builds a `TrainConfig` from the flags of `define_flags` (after absl parsed them).

    Args:
        flag_values: the parsed ``absl.flags.FlagValues`` (default the global ``FLAGS``).

    Raises:
        ValueError: a flag value cannot be parsed, or a number is out of range
            (`check_numbers`), or a given --crop_size is larger than --image_size
            (`checks.check_crop_size`; a default one is clipped); the message names the flag.
    """
    from absl import flags

    from keras_fcn.training.checks import check_crop_size  # it imports this module

    values = flags.FLAGS if flag_values is None else flag_values
    flat = {}
    for name, (_, field) in FIELDS.items():
        value = getattr(values, name)
        parse = _kind(field)[1]
        if parse is not None:
            value = parse(value, name)
        elif _unset(field, value):
            value = None
        flat[name] = value
    config = check_numbers(TrainConfig().replace(**flat))
    crop_given = "crop_size" in values and values["crop_size"].present
    return check_crop_size(config, crop_given) if "crop_size" in values else config
