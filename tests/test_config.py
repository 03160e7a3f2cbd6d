"""Tests of keras_fcn.training.config: the four groups, the flags made from them, unset = None."""

import dataclasses
import warnings

import pytest

from absl import flags

from keras_fcn.training import config as config_lib
from keras_fcn.training.config import (
    FIELDS,
    GROUPS,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
)


def _other_value(field):
    """A valid value of a field that differs from its default."""
    kind, choices, default = field.metadata["kind"], field.metadata["choices"], field.default
    if choices:
        return next(c for c in choices if c != default)
    return {"size": (3, 5), "floats": (0.5, 2.0), "ints": (2, 3), "verbose": 1}.get(kind) or {
        str: "some_value", int: 7 if default != 7 else 8, float: 0.25,
        bool: not default}[field.type]


def _argv(flat):
    """The command line that sets each flat field to its value."""
    argv = ["prog"]
    for name, value in flat.items():
        if isinstance(value, bool):
            argv.append(f"--{name}" if value else f"--no{name}")
        elif isinstance(value, tuple):
            argv.append(f"--{name}=" + ",".join(str(v) for v in value))
        else:
            argv.append(f"--{name}={value}")
    return argv


def _parse(argv, **defaults):
    values = flags.FlagValues()
    config_lib.define_flags(values, **defaults)
    values(argv)
    return config_lib.config_from_flags(values)


def test_each_field_is_in_exactly_one_group_and_has_a_flag():
    grouped = [config_lib.flag_name(f) for cls in GROUPS.values() for f in dataclasses.fields(cls)]
    assert len(grouped) == len(set(grouped)) == len(FIELDS) == 63
    assert [f.name for f in dataclasses.fields(TrainConfig)] == list(GROUPS)
    assert {name: FIELDS[name][0] for name in ("dataset", "model", "epochs", "output_dir")} == {
        "dataset": "data", "model": "model", "epochs": "optim", "output_dir": "run"}
    assert FIELDS["model"][1].name == "variant"  # the flag --model is ModelConfig.variant
    values = flags.FlagValues()
    config_lib.define_flags(values)
    assert sorted(values) == sorted(FIELDS)
    for name in FIELDS:  # help without lost line continuations
        assert values[name].help and "  " not in values[name].help, name


def test_every_field_round_trips_through_its_flag():
    changed = TrainConfig().replace(**{name: _other_value(field)
                                       for name, (_, field) in FIELDS.items()})
    assert all(changed.flat()[n] != TrainConfig().flat()[n] for n in FIELDS)
    assert _parse(_argv(changed.flat())) == changed  # given on the command line
    assert _parse(["prog"], **changed.flat()) == changed  # given as a recipe's defaults
    assert _parse(["prog"]) == TrainConfig()  # no flag: the dataclass defaults


def test_unset_is_none_and_the_command_line_says_it_with_empty_none_or_zero():
    unset = [name for name, (_, field) in FIELDS.items() if field.default is None]
    assert {"widths", "fc_units", "learning_rate", "weights", "class_weights", "data_dir",
            "steps_per_epoch", "jit_compile"} <= set(unset)
    recipe_defaults = {name: _other_value(FIELDS[name][1]) for name in unset}
    given = set()
    for spelling in ("", "none", "0"):
        argv = ["prog"]
        for name in unset:
            field = FIELDS[name][1]
            number = field.type in (int, float) and field.metadata["kind"] is None
            if field.type is bool or number != (spelling == "0") or (
                    spelling == "0" and field.metadata["zero_is_value"]):
                continue  # a boolean is unset when left out; a number by 0, text by "" or none
            argv.append(f"--{name}={spelling}")
        flat = _parse(argv, **recipe_defaults).flat()
        for name in (arg[2:].split("=")[0] for arg in argv[1:]):
            assert flat[name] is None, (spelling, name)
            given.add(name)
    assert given == {n for n in unset if FIELDS[n][1].type is not bool
                     and not FIELDS[n][1].metadata["zero_is_value"]}
    # --dropout=0 is no dropout (it meant the trunk's 0.5); empty or none is the trunk's
    assert _parse(["prog", "--dropout=0"]).flat()["dropout"] == 0.0
    assert _parse(["prog", "--dropout=none"]).flat()["dropout"] is None
    assert _parse(["prog"]).run.jit_compile is None  # left out
    # A field whose default is a value keeps a given 0 or empty: it is not unset.
    flat = _parse(["prog", "--ignore_label=0", "--seed=0", "--photometric=0"],
                  ignore_label=255, seed=3, photometric=0.5).flat()
    assert (flat["ignore_label"], flat["seed"], flat["photometric"]) == (0, 0, 0.0)


def test_groups_replace_and_the_deprecated_flat_forms():
    config = TrainConfig(data=DataConfig(dataset="camvid"), model=ModelConfig(variant="staged"),
                         optim=OptimConfig(epochs=3), run=RunConfig(seed=4))
    assert (config.data.dataset, config.model.variant, config.optim.epochs, config.run.seed) == (
        "camvid", "staged", 3, 4)
    changed = config.replace(epochs=5, widths=(8, 8, 16, 16, 16), run=RunConfig(seed=9))
    assert (changed.optim.epochs, changed.model.widths, changed.run.seed) == (
        5, (8, 8, 16, 16, 16), 9)
    assert changed.data == config.data and config.optim.epochs == 3  # a copy
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.optim.epochs = 4

    with pytest.warns(DeprecationWarning, match=r"flat field names.*\['dataset', 'epochs', 'model', 'seed'\]"):
        old = TrainConfig(dataset="camvid", model="staged", epochs=3, seed=4)
    assert old == config
    with pytest.warns(DeprecationWarning, match=r"config.widths is deprecated: read "
                      r"config.model.widths"):
        assert changed.widths == (8, 8, 16, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the grouped reads do not warn
        assert changed.model.widths == (8, 8, 16, 16, 16)

    with pytest.raises(ValueError, match=r"No such TrainConfig field\(s\): \['epoch'\]"):
        config.replace(epoch=5)
    with pytest.raises(TypeError, match="must be a OptimConfig. Received: optim=3"):
        TrainConfig(optim=3)
    with pytest.raises(AttributeError, match="no attribute 'epoch'"):
        config.epoch  # noqa: B018
    with pytest.raises(ValueError, match=r"no such TrainConfig field\(s\) to define. "
                       r"Received: \['epoch'\]"):
        config_lib.define_flags(flags.FlagValues(), epoch=3)


def test_a_default_crop_larger_than_image_size_is_clipped_a_given_one_refused(capsys):
    """The CamVid walkthrough: examples/train_camvid.py --image_size=90,120 kept its default
    --crop_size=180,240, so the crops were mostly padding and void, silently."""
    from absl import flags as absl_flags

    from keras_fcn.training.checks import check_before_run
    from keras_fcn.training.config import config_from_flags, define_flags

    def parsed(*argv):
        values = absl_flags.FlagValues()
        define_flags(values, dataset="camvid", image_size="", crop_size="180,240")
        values(["train_camvid.py", *argv])
        return config_from_flags(values)

    assert parsed("--image_size=90,120").data.crop_size == (90, 120)
    assert capsys.readouterr().out == ("--crop_size=180,240 (the script's default) is larger "
                                       "than --image_size=90,120: cropping 90,120 instead.\n")
    assert parsed("--image_size=120,300").data.crop_size == (120, 240)
    assert parsed("--image_size=360,480").data.crop_size == (180, 240)  # fits: kept
    message = ("--crop_size=180,240 is larger than --image_size=90,120: the crops would be "
               "mostly padding and void. Pass --crop_size no larger than --image_size (e.g. "
               "--crop_size=90,120), or leave out --image_size.")
    with pytest.raises(ValueError) as error:
        parsed("--image_size=90,120", "--crop_size=180,240")
    assert str(error.value) == message
    with pytest.raises(ValueError) as error:  # the Python API: whether it was given is unknown
        check_before_run(TrainConfig().replace(image_size=(90, 120), crop_size=(180, 240)))
    assert str(error.value) == message
