r"""An FCN on a trunk of your own: Keras' EfficientNetB0 under the paper's FCN-8s heads.

The whole trunk contract in one script (docs/trunks.md explains each step):

1. ``features(x, dropout)`` returns the maps at strides 8, 16 and 32. EfficientNet's stride-2
   layers pad by the input size's parity, so the input is first padded to a multiple of 32
   (``keras_fcn.PadToMultiple``): its grids then sit at the same place for every image size.
2. ``keras_fcn.derive_offsets`` computes the heads' crop offsets from the trunk's geometry
   (Caffe's coord_map; the same function gives the paper's VGG16 offsets).
3. ``keras_fcn.register_trunk`` makes ``backbone="efficientnet_b0"`` work in this process;
   ``keras_fcn.coord_maps`` shows where the output pixels sit on the input.
4. A short fit on the procedural "shapes" data set, the mean IU, a save/load round trip, and
   a float16 TFLite export checked against Keras.

    python examples/own_trunk.py                      # random trunk, offline, ~1 minute
    python examples/own_trunk.py --weights=imagenet   # Keras' ImageNet EfficientNetB0 (online)

On JAX or PyTorch (``KERAS_BACKEND``) the export runs in a child process of this script on
Keras' TensorFlow backend (``--export_from``): it registers the trunk there too.
"""

import dataclasses
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras_fcn  # noqa: E402,I001  (first: it names a KERAS_BACKEND that Keras cannot load)
import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from keras_fcn.datasets.shapes import SHAPES_CLASSES, shapes_arrays  # noqa: E402
from keras_fcn.labels import IGNORE_LABEL  # noqa: E402
from keras_fcn.metrics import confusion_matrix, segmentation_metrics  # noqa: E402
from keras_fcn.training import cli  # noqa: E402

flags.DEFINE_enum("weights", "none", ["none", "imagenet"], "The trunk's initial weights.")
flags.DEFINE_integer("epochs", 4, "Training epochs.", lower_bound=1)
flags.DEFINE_integer("num_train", 192, "Training images.", lower_bound=1)
flags.DEFINE_integer("num_val", 32, "Validation images.", lower_bound=1)
flags.DEFINE_integer("image_size", 96, "Side of the square images.", lower_bound=32)
flags.DEFINE_string("output_dir", "runs/own_trunk", "Where the model is saved.")
flags.DEFINE_string("export_from", None, "Only export this saved model to TFLite and check it "
                    "(the TensorFlow child process of a run on JAX or PyTorch).")
FLAGS = flags.FLAGS
NUM_CLASSES = len(SHAPES_CLASSES)

BN_MOMENTUM = 0.9
# EfficientNetB0's last layer at each stride (block4 is the first at 16, block6 at 32).
FEATURE_LAYERS = ("block3b_add", "block5c_add", "top_activation")


def efficientnet_features(x, dropout):
    """EfficientNetB0's maps at strides 8, 16 and 32; ``x`` is RGB 0..255 (EfficientNet
    normalizes inside)."""
    x = keras_fcn.PadToMultiple(32)(x)
    net = keras.applications.EfficientNetB0(include_top=False, weights=None, input_tensor=x)
    for layer in net.layers:  # Keras' 0.99: moving statistics unusable after a short run
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    stride8, stride16, stride32 = (net.get_layer(name).output for name in FEATURE_LAYERS)
    return stride8, stride16, keras.layers.Dropout(dropout, name="drop_fr")(stride32)


def load_efficientnet_weights(model, weights):
    """``"imagenet"``: Keras' ImageNet EfficientNetB0, copied layer by layer (downloaded once
    by Keras); returns the names of the layers set."""
    if weights != "imagenet":
        raise ValueError(f"This trunk loads weights='imagenet' only. Received: {weights!r}")
    try:
        source = keras.applications.EfficientNetB0(include_top=False, weights="imagenet")
    except Exception as error:  # noqa: BLE001 (Keras raises a bare Exception when offline)
        raise OSError(f"Keras' ImageNet EfficientNetB0 could not be fetched (offline?): "
                      f"{error}") from None
    names = {layer.name for layer in model.layers}
    done = []
    for layer in source.layers:
        if layer.weights and layer.name in names:
            model.get_layer(layer.name).set_weights(layer.get_weights())
            done.append(layer.name)
    return done


def identity_layer(name="preprocess"):
    return keras.layers.Identity(name=name)


RAW_RGB = keras_fcn.models.Preprocessing(
    "rgb_0_255", identity_layer, lambda images: np.asarray(images, "float32"),
    lambda model=None: {"type": "rgb_0_255", "formula": "RGB 0..255 as it is (EfficientNet "
                        "normalizes inside)"})


def efficientnet_trunk():
    """The trunk, its crop offsets derived from its geometry."""
    trunk = keras_fcn.Trunk("efficientnet_b0", efficientnet_features, {}, RAW_RGB,
                            load_efficientnet_weights, variants=("32s", "16s", "8s"),
                            dropout=0.2)
    offsets = keras_fcn.derive_offsets(trunk)
    print(f"crop offsets derived from the trunk's geometry: {offsets}")
    return dataclasses.replace(trunk, offsets=offsets)


def main(argv):
    del argv
    keras.utils.set_random_seed(0)
    os.makedirs(FLAGS.output_dir, exist_ok=True)  # before training: a bad folder fails first
    keras_fcn.register_trunk(efficientnet_trunk())
    weights = None if FLAGS.weights == "none" else FLAGS.weights

    side = FLAGS.image_size
    images, masks = shapes_arrays(FLAGS.num_train + FLAGS.num_val, size=side)
    train, val = slice(0, FLAGS.num_train), slice(FLAGS.num_train, None)
    if FLAGS.export_from:
        export_and_check(keras.saving.load_model(FLAGS.export_from), images[val])
        return
    probe = keras_fcn.build_fcn8s(NUM_CLASSES, input_shape=(side, side, 3), weights=None,
                                  backbone="efficientnet_b0")
    for axis, label in ((0, "rows"), (1, "columns")):
        paths = ", ".join(f"{offset:+g} px" for _, offset in keras_fcn.coord_maps(probe, axis))
        print(f"where the output pixels sit on the input ({label}; one per path): {paths}")

    model = keras_fcn.build_fcn8s(NUM_CLASSES, weights=weights, backbone="efficientnet_b0")
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras_fcn.losses.SparseCategoricalCrossentropyIgnore(
                      num_classes=NUM_CLASSES, ignore_label=IGNORE_LABEL))
    model.fit(images[train].astype("float32"), masks[train], batch_size=16,
              epochs=FLAGS.epochs, verbose=2)

    logits = model.predict(images[val].astype("float32"), batch_size=16, verbose=0)
    confusion = confusion_matrix(masks[val], logits.argmax(-1), NUM_CLASSES, IGNORE_LABEL)
    print(f"validation mean IU: {100 * segmentation_metrics(confusion)['mean_iu']:.2f}%")

    path = os.path.join(FLAGS.output_dir, "fcn8s_efficientnet_b0.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    same = np.abs(loaded.predict(images[val][:4].astype("float32"), verbose=0)
                  - logits[:4]).max()
    print(f"saved {path} (backbone {loaded.backbone!r}, variant {loaded.variant!r}; "
          f"reloaded logits differ by {same:.1e})")

    if keras.backend.backend() == "tensorflow":
        export_and_check(model, images[val])
        return
    # The export traces a TensorFlow graph: Keras' TensorFlow backend, in a process of its own.
    print(f"exporting on TensorFlow in a child process (Keras runs on "
          f"{keras.backend.backend()} here)", flush=True)
    child = subprocess.run([sys.executable, os.path.abspath(__file__),
                            f"--export_from={path}", *sys.argv[1:]],
                           env=dict(os.environ, KERAS_BACKEND="tensorflow"), check=False)
    if child.returncode != 0:
        raise RuntimeError(f"the TFLite export (a child process on TensorFlow) failed with "
                           f"status {child.returncode}; the model is saved in {path}")


def export_and_check(model, images):
    """The float16 TFLite export of ``model`` and how often its labels equal Keras'."""
    from keras_fcn.export import TFLiteRunner, export_tflite

    side = FLAGS.image_size
    tflite = os.path.join(FLAGS.output_dir, "fcn8s_efficientnet_b0_float16.tflite")
    export_tflite(model, tflite, input_size=(side, side), quantization="float16",
                  class_names=SHAPES_CLASSES, overwrite=True)
    runner = TFLiteRunner(tflite)
    logits = model.predict(images.astype("float32"), batch_size=16, verbose=0)
    agree = np.mean([np.mean(runner.labels(image) == ids)
                     for image, ids in zip(images, logits.argmax(-1))])
    print(f"exported {tflite}: its labels equal Keras' on {100 * agree:.2f}% of the "
          "validation pixels")


if __name__ == "__main__":
    cli.run_main(main)
