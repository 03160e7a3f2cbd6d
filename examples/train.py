r"""Trains an FCN: the general recipe (all data sets, all variants, one flag set).

With no flags it trains a small FCN-8s on the procedural "shapes" data set, offline, in a few
minutes on a CPU, then prints the validation table:

    python examples/train.py

CamVid at reduced resolution, staged 32s -> 16s -> 8s:

    python examples/train.py --dataset=camvid --data_dir=/data/camvid --model=staged \
        --image_size=180,240 --optimizer=adam --class_weights=median --output_dir=runs/camvid

Resume a killed run with the same command plus --resume. See keras_fcn/training/optimizers.py for
the learning-rate conventions (lr_mean = lr_sum * pixels) and weight decay.
"""

import os

# TensorFlow's C++ start-up errors (cuInit on CPU-only machines) are not our output; a
# TF_CPP_MIN_LOG_LEVEL set by the user wins. Set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import flags

from keras_fcn import training as train
from keras_fcn.training import config as train_config

# The no-flag command: a narrow VGG16 FCN-8s (random init: no download) on 64x64 shapes.
train.define_flags(
    dataset="shapes", model="fcn8s", weights="none", widths="8,16,32,32,32", fc_units=64,
    dropout=0.1, optimizer="adam", learning_rate=3e-3, weight_decay=1e-4, epochs=15,
    batch_size=8, num_train=300, num_val=50, export=True, output_dir="runs/shapes_fcn8s")
# --help lists the shared flags (defined in keras_fcn.training.config), not only this script's.
flags.adopt_module_key_flags(train_config)


def demo_widths_note(config, flag_values):
    """A note when a real data set trains with this script's demo widths (a 224k-parameter
    VGG16 FCN, not the paper's 134M), or None."""
    model = config.model
    if (config.data.dataset == "shapes" or model.backbone != "vgg16"
            or flag_values["widths"].present or flag_values["fc_units"].present):
        return None
    return (f"note: --dataset={config.data.dataset} trains this script's small demo VGG16 "
            f"(widths {','.join(map(str, model.widths))}, fc {model.fc_units}); for the "
            "paper's widths add --widths= --fc_units=0 (or use examples/train_camvid.py / "
            "examples/train_voc.py).")


def backbone_widths(config, flag_values):
    """This script's demo widths are VGG16's: another backbone keeps its own unless --widths or
    --fc_units are given (a trunk refuses an option it does not have)."""
    model = config.model
    if model.backbone == "vgg16":
        return config
    return config.replace(
        widths=model.widths if flag_values["widths"].present else None,
        fc_units=model.fc_units if flag_values["fc_units"].present else None)


def main(argv):
    del argv
    config = backbone_widths(train.config_from_flags(), flags.FLAGS)
    note = demo_widths_note(config, flags.FLAGS)
    if note:
        print(note, flush=True)
    train.run(config)


if __name__ == "__main__":
    train.run_main(main)
