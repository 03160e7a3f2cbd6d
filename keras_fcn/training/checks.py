"""The checks of a training run that need no data: `keras_fcn.training.run` makes them before
it creates the run folder, so a refused run leaves nothing behind and the corrected command
runs as given (no --overwrite needed).

Example:
    >>> from keras_fcn.training.config import TrainConfig
    >>> check_run_options(TrainConfig().replace(tensorboard=True), backend="torch",
    ...                   has_tensorflow=False)
    Traceback (most recent call last):
    ValueError: --tensorboard writes its logs with TensorFlow's summary writer
    (keras.callbacks.TensorBoard), and TensorFlow is not installed: install it, or leave
    --tensorboard off (history.json and curves.png hold the same curves). Received:
    tensorboard=True
"""

import importlib.util
import math
import numbers

import keras

from keras_fcn import _tf, io, runtime
from keras_fcn.training.config import check_numbers
from keras_fcn.training.evaluation import check_scales
from keras_fcn.training.optimizers import check_warmup


def check_run_options(config, *, backend=None, has_tensorflow=None, has_tensorboard=None,
                      environ=None):
    """Refuses the options this Keras backend or installation cannot run, before any folder is
    made: ``--tensorboard`` without TensorFlow (Keras' TensorBoard callback writes with
    ``tensorflow.summary``), and ``--jit_compile`` (or ``KERAS_FCN_JIT=1``) on the PyTorch
    backend (``torch.compile`` of the Keras train step fails with dynamo's defaults and was
    0.52x the eager speed on a CPU: docs/gpu.md, "Keras-torch under torch.compile").

    Args:
        config: `TrainConfig`.
        backend: the Keras backend (default: the one in use).
        has_tensorflow: whether TensorFlow is installed (default: `keras_fcn._tf`'s answer).
        has_tensorboard: whether the ``tensorboard`` package is installed (default: looked
            up); ``tf.summary`` writes nothing without it (TensorFlow 2.21 does not require it).
        environ: the environment of ``KERAS_FCN_JIT`` (default ``os.environ``).

    Raises:
        ValueError: one line naming the flag, why, and what to do.

    Example:
        >>> from keras_fcn.training.config import TrainConfig
        >>> check_run_options(TrainConfig().replace(jit_compile=True), backend="jax")
    """
    backend = keras.backend.backend() if backend is None else backend
    has_tensorflow = _tf.HAS_TENSORFLOW if has_tensorflow is None else has_tensorflow
    if config.run.tensorboard and not has_tensorflow:
        raise ValueError(
            "--tensorboard writes its logs with TensorFlow's summary writer "
            "(keras.callbacks.TensorBoard), and TensorFlow is not installed: install it, or "
            "leave --tensorboard off (history.json and curves.png hold the same curves). "
            "Received: tensorboard=True")
    if has_tensorboard is None:
        has_tensorboard = importlib.util.find_spec("tensorboard") is not None
    if config.run.tensorboard and not has_tensorboard:
        raise ValueError(
            "--tensorboard needs the tensorboard package (tensorflow.summary writes nothing "
            "without it: the run stopped at its first log): `pip install tensorboard`, or leave "
            "--tensorboard off (history.json and curves.png hold the same curves). Received: "
            "tensorboard=True")
    if backend not in TRAINING_BACKENDS:  # Keras' numpy backend runs no fit
        raise ValueError(f"Training needs Keras' {', '.join(TRAINING_BACKENDS)} backend. "
                         f"Received: KERAS_BACKEND={backend!r}")
    jit = config.run.jit_compile
    source = "--jit_compile"
    if jit is None:
        jit, source = runtime.env_switch(runtime.JIT_ENV, environ), f"{runtime.JIT_ENV}=1"
    check_torch_jit(jit, source, backend)


TRAINING_BACKENDS = ("tensorflow", "jax", "torch")


def check_torch_jit(jit, source, backend=None):
    """Refuses a compiled train step (``jit``) on the PyTorch backend, naming ``source`` (the
    flag, ``jit_compile=True`` or the environment variable that asked for it).

    Example:
        >>> check_torch_jit(True, "jit_compile=True", backend="jax")
    """
    backend = keras.backend.backend() if backend is None else backend
    if backend == "torch" and jit:
        raise ValueError(
            f"{source} is not supported on the PyTorch backend: it wraps the Keras train step "
            "in torch.compile, which with dynamo's defaults stops at its recompile limit and "
            "fails on dynamic shapes (and measured 0.52x the eager speed on a CPU; docs/gpu.md, "
            "'Keras-torch under torch.compile'). keras_fcn keeps the torch backend eager: leave "
            f"{source.split('=')[0]} off (or use KERAS_BACKEND=jax for XLA). Received: "
            f"{'jit_compile=True' if source.startswith('--') else source}, backend='torch'")


def size_compile_note(config, train_ds, jit_compile, backend=None):
    """A line for the log when the train step is XLA-compiled on JAX and the training images
    keep sizes of their own (a tf.data pipeline whose image shape has no fixed height or
    width; a ``PyDataset`` without ``--image_size`` or ``--crop_size``, the shapes data
    aside): XLA compiles the step again for every new size, silently (6 s a step on a tiny
    model against 1 s on TensorFlow; tens of seconds each for VGG16 on a GPU). None otherwise.

    Example:
        >>> from keras_fcn.training.config import TrainConfig
        >>> size_compile_note(TrainConfig(), None, True, backend="jax") is None  # shapes data
        True
    """
    backend = keras.backend.backend() if backend is None else backend
    if backend != "jax" or not jit_compile:
        return None
    spec = getattr(train_ds, "element_spec", None)
    if spec is not None:
        images = spec[0] if isinstance(spec, tuple) else spec
        shape = getattr(images, "shape", None)  # a dict of inputs: not looked into
        varying = shape is not None and shape.rank == 4 and None in (shape[1], shape[2])
    else:
        data = config.data
        varying = not (data.image_size or data.crop_size) and data.dataset != "shapes"
    if not varying:
        return None
    return ("Note: the training images keep their own sizes, and on JAX XLA compiles the "
            "train step again for every new size (tens of seconds each for VGG16 on a GPU); "
            "--crop_size or --image_size trains at one size.")


def check_temporal_weight(weight):
    """Refuses a ``--temporal_consistency`` weight that is not a finite number >= 0 (0: off),
    before any data is read (the consistency trainer refused it only after loading the data,
    naming no flag).

    Raises:
        ValueError: naming ``--temporal_consistency``, the expected range and the value.

    Example:
        >>> check_temporal_weight(-1.0)
        Traceback (most recent call last):
        ValueError: --temporal_consistency must be a finite number >= 0 (0: off; the weight of
        the temporal-consistency loss, e.g. 1 to 10). Received: temporal_consistency=-1.0
    """
    if weight is None:
        return
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) \
            or not math.isfinite(weight) or weight < 0:
        raise ValueError(
            "--temporal_consistency must be a finite number >= 0 (0: off; the weight of the "
            "temporal-consistency loss, e.g. 1 to 10). Received: "
            f"temporal_consistency={weight!r}")


def check_before_run(config):
    """Every check of `config` that needs no data, in the order a user meets them: numbers
    (`check_numbers`), a crop larger than ``--image_size`` (`check_crop_size`), a
    ``--num_classes`` that is not a fixed-class data set's (`check_fixed_classes`), the
    ``--temporal_consistency`` weight, warm-up, evaluation scales, ``--photometric``, the
    tf.data-only options (temporal consistency, TFDS), `check_run_options`, and an
    ``--output_dir`` that is a file.

    Returns:
        `config` as `check_numbers` returns it (a 0 of steps made None).

    Raises:
        ValueError: the first bad value, named (NotADirectoryError: ``--output_dir``).

    Example:
        >>> from keras_fcn.training.config import TrainConfig
        >>> check_before_run(TrainConfig().replace(photometric=2.0))
        Traceback (most recent call last):
        ValueError: `photometric` must be in (0, 1] (0: off). Received: photometric=2.0
    """
    config = check_crop_size(check_numbers(config))
    from keras_fcn.datasets.pairs import check_fixed_classes

    check_fixed_classes(config.data.dataset, config.data.num_classes)
    check_temporal_weight(config.optim.temporal_consistency)
    check_warmup(config.optim.warmup_epochs, config.optim.epochs)
    if config.run.eval_scales:  # checked now, not after hours of training
        check_scales(config.run.eval_scales)
    if config.data.photometric:
        from keras_fcn.data.jitter import photometric_ranges

        photometric_ranges(config.data.photometric)
    if _tf.HAS_TENSORFLOW:  # the temporal options are tf.data's
        from keras_fcn.training.inputs import check_temporal_options

        check_temporal_options(config)
    else:
        from keras_fcn.training.array_inputs import check_options

        check_options(config)
    check_run_options(config)
    io.expect_folder(config.run.output_dir, "--output_dir")
    return config


def check_crop_size(config, crop_given=True):
    """`config`, its ``--crop_size`` checked against ``--image_size``: a crop larger than the
    resized image in either side is mostly padding and void. A crop the user gave
    (``crop_given``) is refused, naming both; a script's default one is clipped to the image
    size, and that is printed.

    Raises:
        ValueError: ``crop_given`` and the crop is larger than ``--image_size``.

    Example:
        >>> from keras_fcn.training.config import TrainConfig
        >>> check_crop_size(TrainConfig().replace(image_size=(90, 120), crop_size=(180, 240)),
        ...                 crop_given=False).data.crop_size
        --crop_size=180,240 (the script's default) is larger than --image_size=90,120: \
cropping 90,120 instead.
        (90, 120)
    """
    crop, size = config.data.crop_size, config.data.image_size
    if not (crop and size) or all(c <= s for c, s in zip(crop, size)):
        return config
    clipped = tuple(min(c, s) for c, s in zip(crop, size))
    crop_text, size_text, clipped_text = (",".join(map(str, v)) for v in (crop, size, clipped))
    if crop_given:
        raise ValueError(
            f"--crop_size={crop_text} is larger than --image_size={size_text}: the crops would "
            f"be mostly padding and void. Pass --crop_size no larger than --image_size (e.g. "
            f"--crop_size={clipped_text}), or leave out --image_size.")
    print(f"--crop_size={crop_text} (the script's default) is larger than --image_size="
          f"{size_text}: cropping {clipped_text} instead.", flush=True)
    return config.replace(crop_size=clipped)
