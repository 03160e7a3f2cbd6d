"""The presets as the builders' ``weights=``: ``build_fcn8s(weights="voc-fcn8s")``.

A preset fits a builder call that builds its architecture: the same variant, backbone, input
channels (3, or 4 for the RGB-D ``build_rgbd_fcn``), class count and heads (the SIFT Flow
presets fit ``build_two_headed_fcn``). The check runs before
anything is downloaded or built; then the weights come from :func:`from_preset` (download,
conversion and cache included). :func:`register_presets` puts every preset in the builders'
table (``keras_fcn.models.register_named_weights``); ``keras_fcn.presets`` calls it on import.

Example:
    >>> preset_architecture("voc-fcn8s-atonce")
    {'variant': '8s_at_once', 'backbone': 'vgg16', 'num_classes': 21, 'input_channels': 3, \
'two_headed': False, 'num_geometric': None}
    >>> builder_call("nyud-fcn32s-color-d")
    "build_rgbd_fcn('32s', num_classes=40, weights='nyud-fcn32s-color-d')"
"""

import functools

import keras

from keras_fcn.layers import FCN_MEAN_BGR
from keras_fcn.models import (build_fcn, build_rgbd_fcn, build_two_headed_fcn, get_trunk,
                              register_named_weights)
from keras_fcn.models.builders import canonical_option
from keras_fcn.presets.catalog import PRESETS, RAW_RGB, get_preset
from keras_fcn.presets.fetch import from_preset

# The builders whose weights= takes a preset, with the input channels of their presets.
BUILDER_CHANNELS = {build_fcn: 3, build_rgbd_fcn: 4, build_two_headed_fcn: 3}
# What a builder that leaves a key out of its architecture builds.
PLAIN = {"two_headed": False, "num_geometric": None}
VARIANT_BUILDERS = {"32s": "build_fcn32s", "16s": "build_fcn16s", "8s": "build_fcn8s",
                    "8s_at_once": "build_fcn8s"}


def preset_architecture(name):
    """What a builder call must build to take the preset's weights, or None when no builder
    with a ``weights=`` builds it (the late-fusion NYUDv2 preset)."""
    preset = get_preset(name)
    if preset.builder not in BUILDER_CHANNELS:
        return None
    kwargs = preset.build_kwargs
    two_headed = preset.builder is build_two_headed_fcn
    return {"variant": kwargs["variant"], "backbone": kwargs.get("backbone", "vgg16"),
            "num_classes": preset.num_classes,
            "input_channels": BUILDER_CHANNELS[preset.builder], "two_headed": two_headed,
            "num_geometric": kwargs["num_geometric"] if two_headed else None}


def builder_call(name):
    """The builder call that takes the preset's weights, as text (for error messages)."""
    wanted = preset_architecture(name)
    args = [f"weights={name!r}"]
    if wanted["two_headed"]:
        return f"build_two_headed_fcn({wanted['variant']!r}, {', '.join(args)})"
    if wanted["variant"] == "dilated":  # build_fcn_resnet50(...): the backbone is in the name
        return f"build_fcn_{wanted['backbone']}({', '.join(args)})"
    if wanted["backbone"] != "vgg16":
        args.insert(0, f"backbone={wanted['backbone']!r}")
    if wanted["variant"] == "8s_at_once":
        args.insert(0, "at_once=True")
    if wanted["num_classes"] != 21:
        args.insert(0, f"num_classes={wanted['num_classes']}")
    if wanted["input_channels"] == 4:
        return f"build_rgbd_fcn({wanted['variant']!r}, {', '.join(args)})"
    return f"{VARIANT_BUILDERS[wanted['variant']]}({', '.join(args)})"


def preset_trunk_options(name):
    """The trunk options (``widths``, ``fc_units``...) the preset's model is built with, its
    trunk's defaults filled in, and whether it has torchvision's auxiliary head (``aux``).

    Example:
        >>> preset_trunk_options("voc-fcn8s")
        {'widths': (64, 128, 256, 512, 512), 'fc_units': 4096, 'aux': False}
    """
    kwargs = get_preset(name).build_kwargs
    trunk = get_trunk(kwargs.get("backbone", "vgg16"))
    options = trunk.check_options(**{key: kwargs[key] for key in trunk.options if key in kwargs})
    return {**options, "aux": bool(kwargs.get("aux", False))}


def _check_trunk_options(name, architecture):
    """Refuses trunk options (narrow ``widths``, another ``fc_units``) or an ``aux`` head the
    preset's weights do not have: the weights would be downloaded (hundreds of MB) only to fail
    on the first layer shape. A builder that does not pass a key is not checked for it."""
    wanted = preset_trunk_options(name)
    given = {**architecture.get("options", {}), "aux": architecture.get("aux")}
    differ = [key for key in wanted if given.get(key) is not None
              and canonical_option(given[key]) != canonical_option(wanted[key])]
    if differ:
        has = ", ".join(f"{key}={wanted[key]!r}" for key in differ)
        received = ", ".join(f"{key}={given[key]!r}" for key in differ)
        raise ValueError(
            f"Preset {name!r} has {has}: its weights fit only that trunk and heads. Build it "
            f"with {has} (the builders' defaults), or use weights=None. Received: {received}")


def check_fits(name, architecture):
    """Raises a ``ValueError`` naming the difference when the preset's weights do not fit the
    ``architecture`` a builder was asked for (see ``keras_fcn.models.fetch_named_weights``;
    its trunk ``"options"`` and ``"aux"``, where the builder passes them, are checked too)."""
    preset = get_preset(name)
    wanted = preset_architecture(name)
    if wanted is None:
        raise ValueError(
            f"Preset {name!r} is a {preset.builder.__name__} model, which no builder's "
            f"weights= builds: get it with keras_fcn.from_preset({name!r}). "
            f"Received: weights={name!r}")
    given = architecture
    architecture = {**PLAIN, **architecture}
    differ = [key for key in wanted if architecture[key] != wanted[key]]
    if differ:
        has = ", ".join(f"{key}={wanted[key]!r}" for key in differ)
        received = ", ".join(f"{key}={architecture[key]!r}" for key in differ)
        surgery = (" For another class count, load all but the score layers: "
                   "keras_fcn.set_weights_by_name(model, keras_fcn.read_weights("
                   f"{builder_call(name)}), skip_mismatch=True)." if "num_classes" in differ
                   else "")
        raise ValueError(
            f"Preset {name!r} has {has}: build it with {builder_call(name)} or "
            f"keras_fcn.from_preset({name!r}).{surgery} Received: {received}")
    _check_trunk_options(name, given)  # the same trunk: are its widths the preset's?
    if not architecture["include_preprocessing"] or preset.build_kwargs.get(
            "include_preprocessing"):  # the preset's own model has the trunk's preprocessing
        return
    if preset.input != RAW_RGB:
        takes = f"takes {preset.input}"
    elif tuple(preset.mean_bgr) != tuple(FCN_MEAN_BGR):
        takes = f"takes RGB minus its own mean_bgr={preset.mean_bgr}"
    else:
        return
    raise ValueError(
        f"Preset {name!r} {takes}, not the RGB minus the VOC mean of include_preprocessing="
        "True: build it with include_preprocessing=False and feed preprocessed inputs, or use "
        f"keras_fcn.from_preset({name!r}), which preprocesses RGB itself. "
        "Received: include_preprocessing=True")


def preset_weights(name, architecture):
    """The preset's converted model, once it is checked to fit ``architecture``.

    Returns:
        The FCN with the weights by layer name (for a preset with its own mean, the model
        inside :func:`from_preset`'s preprocessing wrapper).
    """
    check_fits(name, architecture)
    model = from_preset(name)
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return nested[0] if nested else model


def register_presets():
    """Makes every preset a name the builders' ``weights=`` takes."""
    for name in PRESETS:
        register_named_weights(name, functools.partial(preset_weights, name))
