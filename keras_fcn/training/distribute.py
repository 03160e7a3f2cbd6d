"""Distribution and precision: strategies, the Keras 3 multi-worker workaround, the chief.

Example:
    >>> strategy = make_strategy("mirrored")

    with strategy.scope():
        model = build_fcn8s(num_classes=21)
"""

import contextlib
import json
import os
import re
import shutil
import sys

import keras
import numpy as np

from keras_fcn import _tf, runtime
from keras_fcn._checks import check_bool, check_choice

STRATEGIES = ("default", "mirrored", "multi_worker", "data_parallel")


class SingleDevice:
    """The strategy of a single device on JAX and PyTorch (no `tf.distribute` there): a
    no-op ``scope()`` and one replica. For several GPUs on JAX: ``"data_parallel"``."""

    num_replicas_in_sync = 1

    def scope(self):
        return contextlib.nullcontext()


class DataParallel(SingleDevice):
    """``"data_parallel"`` on JAX: `keras.distribution.DataParallel` over every device (set
    globally, so ``scope()`` does nothing); each batch is split across the devices, so it must
    divide by ``num_replicas_in_sync`` (the recipes drop the last incomplete training batch
    and pad validation batches with void images: :func:`pad_batches`)."""

    def __init__(self, devices):
        self.devices = list(devices)
        self.num_replicas_in_sync = len(self.devices)


def for_replicas(strategy, train_ds, val_ds, batch_size, ignore_label):
    """(train_ds, val_ds) for ``strategy``: on several replicas (:class:`DataParallel` on JAX,
    or a `tf.distribute` strategy such as "mirrored" or "multi_worker"), checks that
    ``batch_size`` divides among them (training drops its last incomplete batch) and pads
    the validation batches (:func:`pad_batches`): a replica given no image of a batch stops
    Keras ("Inputs to operation AddN ... must have the same size and shape"). Else both
    unchanged.

    Raises:
        ValueError: ``batch_size`` is not a multiple of the replicas, or there is no ignore
            label to pad validation batches with.
    """
    if getattr(strategy, "num_replicas_in_sync", 1) <= 1:
        return train_ds, val_ds
    _check_batch(strategy, batch_size)
    if val_ds is not None:
        val_ds = pad_batches(val_ds, strategy.num_replicas_in_sync, ignore_label)
    return train_ds, val_ds



def _check_batch(strategy, batch_size):
    count = strategy.num_replicas_in_sync
    if batch_size is None or not batch_size % count:
        return
    if isinstance(strategy, DataParallel):
        raise ValueError(f"strategy='data_parallel' splits each batch across {count} devices: "
                         f"batch_size must be a multiple of {count}. Received: "
                         f"batch_size={batch_size}")
    name = "multi_worker" if "MultiWorker" in type(strategy).__name__ else "mirrored"
    raise ValueError(f"strategy={name!r} splits each batch across its {count} replicas: "
                     f"batch_size must be a multiple of {count}. Received: "
                     f"batch_size={batch_size}")


def pad_batches(dataset, multiple, ignore_label):
    """``dataset``'s (images, masks) batches, each padded to a multiple of ``multiple`` images
    with void ones (zero images, masks all ``ignore_label``), which count in no loss term and
    no metric (Keras' validation loss weighs a padded batch as a full one). A tf.data set or a
    `keras.utils.PyDataset`.

    Example:
        >>> batches = pad_batches([(np.zeros((1, 2, 2, 3)), np.zeros((1, 2, 2)))], 2, 255)
        >>> [masks[:, 0, 0].tolist() for _, masks in batches]
        [[0.0, 255.0]]
    """
    if ignore_label is None:
        raise ValueError("Padding batches for several devices needs an ignore label (the "
                         "padded images must count nowhere). Received: ignore_label=None")
    if isinstance(dataset, (list, tuple)):
        return [_pad_numpy(*batch, multiple, ignore_label) for batch in dataset]
    if isinstance(dataset, keras.utils.PyDataset):
        return _PaddedBatches(dataset, multiple, ignore_label)
    import tensorflow as tf

    def pad(images, masks):
        extra = tf.math.floormod(-tf.shape(images)[0], multiple)
        return (tf.pad(images, [[0, extra]] + [[0, 0]] * (len(images.shape) - 1)),
                tf.pad(masks, [[0, extra]] + [[0, 0]] * (len(masks.shape) - 1),
                       constant_values=tf.cast(ignore_label, masks.dtype)))

    return dataset.map(pad)


def _pad_numpy(images, masks, multiple, ignore_label):
    extra = -len(images) % multiple
    return (np.concatenate([images, np.zeros((extra, *images.shape[1:]), images.dtype)]),
            np.concatenate([masks, np.full((extra, *masks.shape[1:]), ignore_label,
                                           masks.dtype)]))


class _PaddedBatches(keras.utils.PyDataset):
    """A `keras.utils.PyDataset`'s batches padded by :func:`pad_batches`."""

    def __init__(self, dataset, multiple, ignore_label):
        super().__init__()
        self.dataset, self.multiple, self.ignore_label = dataset, multiple, ignore_label

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        return _pad_numpy(*self.dataset[index], self.multiple, self.ignore_label)

    def on_epoch_end(self):
        self.dataset.on_epoch_end()


_OUR_DISTRIBUTION = []  # the keras.distribution that make_strategy set, to undo it later


def _set_data_parallel(name):
    """Sets (for "data_parallel") or clears (else, if it set it) keras.distribution."""
    current = keras.distribution.distribution()
    if name != "data_parallel":
        if current is not None and current in _OUR_DISTRIBUTION:
            keras.distribution.set_distribution(None)
        return None
    devices = keras.distribution.list_devices()
    distribution = keras.distribution.DataParallel(devices=devices)
    keras.distribution.set_distribution(distribution)
    _OUR_DISTRIBUTION[:] = [distribution]
    return DataParallel(devices)


def make_strategy(name="default", devices=None, batch_size=None):
    """Returns a `tf.distribute.Strategy` (`SingleDevice` on the JAX and PyTorch backends).

    Args:
        name: "default" (one device), "mirrored" (all local GPUs, or `devices`),
            "multi_worker" (`MultiWorkerMirroredStrategy`, cluster from the `TF_CONFIG`
            environment variable; create it before any other TensorFlow op), or on JAX
            "data_parallel" (`keras.distribution.DataParallel` over every device, set
            globally; "default" unsets it again).
        devices: optional device list for "mirrored", e.g. `["/cpu:0", "/cpu:1"]`.
        batch_size: the global batch size, if known: with "data_parallel" it must divide
            among the devices (checked here, before a run folder is made).

    Returns:
        The strategy. Build the model and optimizer inside `strategy.scope()`; the batch size
        of the data set is the global batch, split across replicas.

    Example:
        >>> strategy = make_strategy("mirrored")

        with strategy.scope():
            model = build_fcn8s(num_classes=21)
    """
    check_choice("strategy", name, STRATEGIES)
    if devices is not None and (name != "mirrored" or isinstance(devices, str) or not devices
                                or not all(isinstance(d, str) for d in devices)):
        # A string was split into one-letter "devices"; devices of another strategy ignored.
        raise ValueError(f"`devices` must be None or, with strategy='mirrored', a non-empty "
                         f"list of device names such as ['/gpu:0', '/gpu:1']. Received: "
                         f"strategy={name!r}, devices={devices!r}")
    if name == "data_parallel" and _tf.backend() != "jax":
        raise ValueError(
            "strategy='data_parallel' is keras.distribution's DataParallel, on the JAX backend "
            f"(now: {_tf.backend()}); on TensorFlow use strategy='mirrored' (Keras' PyTorch "
            "backend trains on one device). Received: strategy='data_parallel'")
    if _tf.backend() == "jax":
        parallel = _set_data_parallel(name)
        if parallel is not None:
            _check_batch(parallel, batch_size)
            return parallel
    if not _tf.on_tensorflow():
        if name != "default":
            raise ValueError(f"strategy={name!r} is a tf.distribute strategy and needs the "
                             f"TensorFlow backend (now: {_tf.backend()}); on JAX use "
                             "strategy='data_parallel'. Received: strategy=" + repr(name))
        return SingleDevice()
    import tensorflow as tf

    if name == "mirrored":
        strategy = tf.distribute.MirroredStrategy(devices)
    elif name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy='multi_worker' needs the TF_CONFIG environment variable "
                             "(cluster and task). Received: TF_CONFIG unset")
        # TensorFlow waits for every worker without a word (its "Waiting for tasks" is INFO).
        print(waiting_line(tf_config()), file=sys.stderr, flush=True)
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        return tf.distribute.get_strategy()
    _check_batch(strategy, batch_size)
    return strategy


def waiting_line(config):
    """The line a multi-worker process prints before it waits for the workers of TF_CONFIG
    (``config``, as :func:`tf_config` parses it) to connect.

    Example:
        >>> print(waiting_line({"cluster": {"worker": ["a:1", "b:2"]},
        ...                     "task": {"type": "worker", "index": 1}}))
        Waiting for the 2 workers of TF_CONFIG (a:1, b:2) to connect; this worker is worker:1
    """
    cluster, task = config.get("cluster") or {}, config.get("task") or {}
    addresses = [address for kind in sorted(cluster, key=lambda k: k != "chief")
                 for address in (cluster[kind] if isinstance(cluster[kind], (list, tuple))
                                 else [cluster[kind]])]
    return (f"Waiting for the {len(addresses)} workers of TF_CONFIG ({', '.join(addresses)}) "
            f"to connect; this worker is {task.get('type')}:{task.get('index', 0)}")


LOST_WORKER = "a worker was lost; rerun every worker with --resume"
# What a surviving worker's collective ops report when a peer is gone.
_LOST = re.compile(r"^(.*(?:Collective ops is aborted|Connection reset by peer|Socket closed"
                   r"|failed to connect to all addresses).*?)\s*$", re.MULTILINE)


@contextlib.contextmanager
def multi_worker_run(strategy, run_dir, chief):
    """Around a recipe's run under ``strategy``: a non-chief worker's private ``run_dir``
    (`run_dir.worker_run_dir`: best.keras, backups; 0.5-1 GB for VGG16) is removed when the
    run ends, and a TensorFlow error of a lost worker (a collective op aborted) says to
    rerun every worker with --resume (:data:`LOST_WORKER`).

    Example:
        with multi_worker_run(strategy, run_dir, chief=is_chief()):
            train(...)
    """
    try:
        yield
    except Exception as error:
        lost = lost_worker_error(error, strategy)
        if lost is error:
            raise
        raise lost from None
    finally:
        if not chief:
            shutil.rmtree(run_dir, ignore_errors=True)


def lost_worker_error(error, strategy):
    """``error``, or under `MultiWorkerMirroredStrategy` for a TensorFlow error of a lost
    worker, the same error whose line says :data:`LOST_WORKER` too."""
    tf = sys.modules.get("tensorflow")
    if (tf is None or not isinstance(error, tf.errors.OpError)
            or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            or not _LOST.search(error.message or "")):
        return error
    try:
        return type(error)(error.node_def, error.op,
                           _LOST.sub(r"\1; " + LOST_WORKER, error.message, count=1))
    except TypeError:  # an OpError of another constructor: unchanged
        return error


def patch_multi_worker_build(model, strategy):
    """Works around a Keras 3 bug with `MultiWorkerMirroredStrategy` (keras-team/keras#20585,
    tensorflow/tensorflow#72388): `fit` first builds the model symbolically from a batch it
    *reduces* across workers, which fails with "Attempt to convert a value (PerReplica...)".
    The patched build uses this worker's local batch instead (only shapes and dtypes are
    used). Does nothing for other strategies; on a Keras release outside `PATCHED_KERAS`, or
    one without the private names it replaces, it raises a RuntimeError
    (:func:`check_patched_keras`) rather than train on unchecked internals.

    Returns:
        True if the model was patched.

    Example:
        with strategy.scope():
            model = build_fcn8s(num_classes=21)
            patch_multi_worker_build(model, strategy)
    """
    if not _tf.on_tensorflow():
        return False
    import tensorflow as tf

    original = getattr(model, "_maybe_symbolic_build", None)
    if original is None or not isinstance(
            strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    check_patched_keras()

    def build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues) else v, next(batches))
                break
        return original(data_batch=data_batch)

    model._maybe_symbolic_build = build
    _patch_multi_worker_log_reduction()
    return True


# Keras releases whose private `fit` internals the multi-worker workaround below was checked
# against (tests/test_backends.py fails on a Keras outside this range, so that it is looked at
# again, and whenever the private names it replaces change).
PATCHED_KERAS = ((3, 3), (3, 15))


def check_patched_keras(version=None):
    """Raises a RuntimeError unless the Keras ``version`` (default: the installed one) is one
    the multi-worker workaround was checked against, and the private names it replaces exist.

    Example:
        >>> check_patched_keras("3.15.1")
    """
    version = version or keras.__version__
    major_minor = tuple(int(part) for part in version.split(".")[:2])
    low, high = PATCHED_KERAS
    if not low <= major_minor <= high:
        raise RuntimeError(
            f"The multi-worker workaround (keras_fcn.training.distribute) was checked against "
            f"Keras {low[0]}.{low[1]}-{high[0]}.{high[1]}. Received: keras {version}")
    from keras.src.backend.tensorflow import trainer as tf_trainer

    for owner, name in ((keras.Model, "_maybe_symbolic_build"),
                        (tf_trainer, "reduce_per_replica")):
        if not callable(getattr(owner, name, None)):
            raise RuntimeError(f"Keras {version} has no {owner.__name__}.{name}: the "
                               "multi-worker workaround needs updating")


def _patch_multi_worker_log_reduction():
    """Second part of the Keras 3 multi-worker workaround: `fit` reduces the per-step logs
    (scalar loss and metric values) across workers with `strategy.reduce("MEAN", v, axis=0)`,
    which fails on scalars ("Invalid reduction dimension 0 for input with 0 dimensions").
    Scalars are reduced with `axis=None` instead; everything else is left to Keras."""
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica
    if getattr(original, "_keras_fcn_patched", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if (reduction in ("mean", "auto")
                and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)):
            def reduce_one(v):
                local = v
                if isinstance(v, tf.distribute.DistributedValues):
                    local = strategy.experimental_local_results(v)[0]
                if getattr(local, "shape", None) is not None and local.shape.rank == 0:
                    return strategy.reduce("MEAN", v, axis=None)
                return original(v, strategy, reduction)

            return tf.nest.map_structure(reduce_one, values)
        return original(values, strategy, reduction)

    reduce_per_replica._keras_fcn_patched = True
    tf_trainer.reduce_per_replica = reduce_per_replica


def tf_config():
    """The `TF_CONFIG` environment variable, parsed: a dict with a "cluster" and a "task" dict
    (both empty where it is unset).

    Raises:
        ValueError: TF_CONFIG is no JSON object of that form (names it, and gives an example).

    Example:
        >>> tf_config()  # no TF_CONFIG
        {'cluster': {}, 'task': {}}
    """
    text = os.environ.get("TF_CONFIG", "{}") or "{}"
    try:
        config = json.loads(text)
        task, cluster = config.get("task") or {}, config.get("cluster") or {}
        int(task.get("index", 0)), list(cluster.items())
    except (ValueError, TypeError, AttributeError) as e:
        raise ValueError(f"TF_CONFIG must be JSON like {{\"cluster\": {{\"worker\": "
                         f"[\"host1:port\", \"host2:port\"]}}, \"task\": {{\"type\": "
                         f"\"worker\", \"index\": 0}}}} ({e}). Received: "
                         f"TF_CONFIG={text!r}") from None
    return dict(config, cluster=cluster, task=task)


def is_chief():
    """True unless `TF_CONFIG` names this process a non-chief worker (worker index > 0 or
    any worker when a "chief" task exists).

    Example:
        >>> is_chief()  # no TF_CONFIG: a single process is its own chief
        True
    """
    config = tf_config()
    kind, index = config["task"].get("type"), int(config["task"].get("index", 0))
    cluster = config["cluster"]
    if kind is None or kind == "chief":
        return True
    if kind == "worker":
        return index == 0 and "chief" not in cluster
    return False


def set_mixed_precision(enabled):
    """Sets the global Keras dtype policy to the device's mixed precision (on a GPU the one
    ``--precision=auto`` picks, "mixed_bfloat16" on a CPU; `keras_fcn.runtime`), or back to
    "float32".

    Call before building the model. The FCN's final `score` layer stays float32. The recipes
    convert a float32 model instead (`keras_fcn.runtime.with_precision`), which also keeps
    the head float32.

    Example:
        >>> set_mixed_precision(True)
    """
    # bool("false") is True: only True or False is taken.
    precision = runtime.resolve_precision("float32",
                                          mixed_precision=check_bool("enabled", enabled))
    keras.mixed_precision.set_global_policy(runtime.policy_name(precision))
