r"""Trains the CamVid recipe that transfers to a new street: a MobileNetV2 FCN-8s from random
init, validated on drive 0006R0, which it never trains on.

The defaults are what the held-out-drive ablations kept (full-resolution images in 180x240
crops at scales 0.5-2, square-root median-frequency class weights, blur, dropout 0.5, label
smoothing, Adam with poly decay); each one's measured gain, what lost, and the 1-hour results
are in docs/camvid.md#the-defaults-of-examplestrain_camvidpy-and-why.

    python examples/train_camvid.py --data_dir=../shared/data/camvid \
        --output_dir=runs/camvid_mnv2
    # a budget of CPU minutes (fair on a shared machine); set --epochs to what fits it
    python examples/train_camvid.py --data_dir=../shared/data/camvid --epochs=150 \
        --max_minutes_per_stage=60 --budget_clock=cpu --output_dir=runs/camvid_mnv2_1h
    # the paper's VGG16 (full widths here) with the same recipe, bfloat16 where the CPU has
    # it; a random trunk unless --weights=imagenet and the ImageNet file is there
    python examples/train_camvid.py --data_dir=../shared/data/camvid --backbone=vgg16 \
        --image_size=180,240 --learning_rate=5e-4 --precision=auto --epochs=6 \
        --output_dir=runs/camvid_vgg16

`--holdout=` (empty) trains on the usual train split and validates on the same-drive `val`.
Same flags as examples/train.py (shared through keras_fcn.training); only the defaults differ.
"""

import os

# TensorFlow's C++ start-up errors (cuInit on CPU-only machines) are not our output; a
# TF_CPP_MIN_LOG_LEVEL set by the user wins. Set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import flags

from keras_fcn import training as train
from keras_fcn.training import config as train_config

train.define_flags(
    dataset="camvid", data_dir="../shared/data/camvid", holdout="0006R0", model="fcn8s",
    backbone="mobilenet_v2", weights="none", image_size="", crop_size="180,240",
    scale_range="0.5,2", flip=True, blur=1.5, optimizer="adam", learning_rate=1e-3,
    lr_schedule="poly", class_weights="sqrt_median", batch_size=4, dropout=0.5,
    label_smoothing=0.1, epochs=30, output_dir="runs/camvid")
# --help lists the shared flags (defined in keras_fcn.training.config), not only this script's.
flags.adopt_module_key_flags(train_config)


def main(argv):
    del argv
    train.run(train.config_from_flags())


if __name__ == "__main__":
    train.run_main(main)
