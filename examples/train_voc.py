r"""The paper's recipe on PASCAL VOC: SBD train (8,498 images), seg11valid validation (736).

Defaults follow Long et al. (CVPR 2015) and the reference Caffe solvers: staged FCN-32s ->
FCN-16s -> FCN-8s (each stage initialized from the previous one), VGG16 ImageNet trunk, batch 1
at native image size, SGD with momentum 0.99, weight decay 5e-4 on kernels, doubled bias
learning rate, dropout 0.5, fixed learning rates 1e-10 / 1e-12 / 1e-13 for the *summed* loss.

The default loss here is the summed one, so those rates apply as published. With
`--loss_reduction=mean` the rates are multiplied by the pixels per image automatically
(lr_mean = lr_sum * pixels, see keras_fcn/training/optimizers.py), e.g. 1e-10 -> ~1.9e-5
for 500x375.

    python examples/train_voc.py --data_dir=~/data/benchmark_RELEASE \
        --val_data_dir=~/data/VOCdevkit --output_dir=runs/voc_staged
    python examples/train_voc.py ... --model=fcn8s_at_once    # one stage, lr 1e-10

Without --val_data_dir it validates on SBD val (2,857 images), and says so.

Same flags as examples/train.py (shared through keras_fcn.training); only the defaults differ.
The reference trains each stage for ~100k-300k iterations (tens of epochs of SBD); on a CPU
use --steps_per_epoch and --epochs to plan, and --resume to continue over days.
"""

import os

# TensorFlow's C++ start-up errors (cuInit on CPU-only machines) are not our output; a
# TF_CPP_MIN_LOG_LEVEL set by the user wins. Set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import flags

from keras_fcn import training as train
from keras_fcn.training import config as train_config

train.define_flags(
    dataset="sbd", model="staged", weights="imagenet", optimizer="sgd", momentum=0.99,
    weight_decay=5e-4, bias_lr_multiplier=2.0, loss_reduction="sum", learning_rate=0.0,
    stage_lr_factors="", batch_size=1, crop_size="", image_size="", flip=False, dropout=0.5,
    epochs=10, output_dir="runs/voc_fcn")
# --help lists the shared flags (defined in keras_fcn.training.config), not only this script's.
flags.adopt_module_key_flags(train_config)


def validation_note(config):
    """The line printed when --dataset=sbd validates on SBD val: without --val_data_dir there
    is no seg11valid, the split of the paper's (and this script's) figures. None otherwise."""
    if config.data.dataset != "sbd" or config.data.val_data_dir:
        return None
    return ("Validation: SBD val (2,857 images), not seg11valid (the paper's 736 VOC2011 val "
            "images, the split of its figures): pass --val_data_dir=<VOCdevkit> (a VOC2012 or "
            "VOC2011 folder) to validate on seg11valid.")


def main(argv):
    del argv
    config = train.config_from_flags()
    if note := validation_note(config):
        print(note, flush=True)
    train.run(config)


if __name__ == "__main__":
    train.run_main(main)
