"""The tf.distribute checks of test_losses, test_metrics and test_train, as scripts for
:func:`two_cpus.shared_result`: all three run in ONE process of two logical CPUs (one
TensorFlow start-up instead of three) and each test asserts on its own RESULT.

Each script prints one line ``RESULT <json>``; they run one after another, each in a namespace
of its own, after ``two_cpus.PREAMBLE`` (json, os, np, tf, keras).

Example:
    >>> sorted(SCRIPTS)
    ['losses', 'metrics', 'train_step']
"""

import textwrap

from tiny import TINY_FC, TINY_WIDTHS

# test_losses.py: the loss under MirroredStrategy equals one device's, per reduction mode.
LOSSES = textwrap.dedent(
    """
    from keras_fcn.losses import SparseCategoricalCrossentropyIgnore

    N, H, W, C = 4, 6, 6, 3
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, H, W, 2)).astype("float32")
    y = rng.integers(0, C, size=(N, H, W)).astype("int32")
    # Replica 0 gets images 0-1, mostly void: uneven valid-pixel counts.
    y[0, :5] = 255
    y[1, :, :5] = 255

    def run(strategy, mode):
        with strategy.scope():
            keras.utils.set_random_seed(1)
            inputs = keras.Input((H, W, 2))
            model = keras.Model(inputs, keras.layers.Conv2D(C, 1)(inputs))
            model.compile(
                optimizer=keras.optimizers.SGD(0.5),
                loss=SparseCategoricalCrossentropyIgnore(
                    num_classes=C, reduction_mode=mode,
                    class_weights=[1.0, 2.0, 0.5]),
            )
        logits = model(x)  # the initial weights: same under both strategies
        loss = model.evaluate(x, y, batch_size=N, verbose=0)
        history = model.fit(x, y, batch_size=N, epochs=1, shuffle=False, verbose=0)
        return {
            "logits": np.asarray(logits).tolist(),
            "eval_loss": float(loss),
            "fit_loss": float(history.history["loss"][0]),
            "weights": [w.tolist() for w in model.get_weights()],
        }

    mirrored = MIRRORED
    out = {"replicas": mirrored.num_replicas_in_sync, "y": y.tolist()}
    for mode in ("mean", "sum"):
        out[mode] = {
            "single": run(tf.distribute.get_strategy(), mode),
            "mirrored": run(mirrored, mode),
        }
    print("RESULT" + json.dumps(out))
    """
)

# test_metrics.py: the confusion matrix summed over replicas; evaluate equals one device.
METRICS = textwrap.dedent(
    """
    from keras_fcn.losses import SparseCategoricalCrossentropyIgnore
    from keras_fcn.metrics import ConfusionMatrixMetric, MeanIU, PixelAccuracy

    N, H, W, C = 8, 5, 5, 4
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, H, W, C)).astype("float32")
    y = rng.integers(0, C, size=(N, H, W)).astype("int32")
    y[rng.random(y.shape) < 0.2] = 255

    strategy = MIRRORED
    with strategy.scope():
        metric = ConfusionMatrixMetric(C)
    dataset = tf.data.Dataset.from_tensor_slices((y, x)).batch(4)

    @tf.function
    def step(labels, logits):
        strategy.run(metric.update_state, args=(labels, logits))

    for labels, logits in strategy.experimental_distribute_dataset(dataset):
        step(labels, logits)
    # Read inside the replicas: each holds only its own shard's counts.
    per_replica = strategy.run(tf.function(lambda: tf.identity(metric.confusion.value)))
    local = [v.numpy().tolist() for v in
             strategy.experimental_local_results(per_replica)]

    def evaluate(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(1)
            inputs = keras.Input((H, W, C))
            model = keras.Model(inputs, keras.layers.Conv2D(C, 1)(inputs))
            model.compile(
                loss=SparseCategoricalCrossentropyIgnore(C),
                metrics=[MeanIU(C), PixelAccuracy(C)],
            )
        logs = model.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
        logs["preds"] = model.predict(x, verbose=0).argmax(-1).tolist()
        return logs

    out = {
        "replicas": strategy.num_replicas_in_sync,
        "x": x.tolist(), "y": y.tolist(),
        "summed": metric.confusion_matrix().numpy().tolist(),
        "local": local,
        "mean_iu": float(metric.result()),
        "single": evaluate(tf.distribute.get_strategy()),
        "mirrored": evaluate(strategy),
    }
    print("RESULT" + json.dumps(out))
    """
)

# test_train.py: one SGD step of a tiny FCN-8s on two replicas equals one device's.
TRAIN_STEP = textwrap.dedent("""
    from keras_fcn import models
    from keras_fcn.datasets import shapes as synthetic
    from keras_fcn import training as train

    images, masks = synthetic.shapes_arrays(4, size=32, seed=0)
    images, masks = images.astype("float32"), masks.astype("int32")

    def one_step(strategy):
        keras.utils.set_random_seed(1)
        with strategy.scope():
            model = models.build_fcn("8s", 4, weights=None, include_preprocessing=True,
                                     widths=TINY_WIDTHS, fc_units=TINY_FC, dropout=0.0)
            # non-zero score layers so that every layer gets a gradient
            for layer in model.layers:
                if layer.name in ("score_fr", "score_pool4", "score_pool3"):
                    layer.kernel.assign(np.full(layer.kernel.shape, 0.01, "float32"))
            optimizer = train.make_optimizer("sgd", 0.05, momentum=0.9)
            train.compile_model(model, num_classes=4, ignore_label=255, optimizer=optimizer,
                                weight_decay=5e-4)
        ds = tf.data.Dataset.from_tensor_slices((images, masks)).batch(4)
        initial = [w.numpy() for w in model.trainable_weights]
        model.fit(ds, epochs=1, verbose=0)
        return initial, [w.numpy() for w in model.trainable_weights]

    initial, single = one_step(tf.distribute.OneDeviceStrategy("/cpu:0"))
    mirrored_strategy = MIRRORED
    _, mirrored = one_step(mirrored_strategy)
    print("RESULT" + json.dumps({
        "replicas": mirrored_strategy.num_replicas_in_sync,
        "steps": [float(np.max(np.abs(a - b))) for a, b in zip(single, initial)],
        "diffs": [float(np.max(np.abs(a - b))) for a, b in zip(single, mirrored)]}))
""").replace("TINY_WIDTHS", str(TINY_WIDTHS)).replace(
    "TINY_FC", str(TINY_FC))

SCRIPTS = {"losses": LOSSES, "metrics": METRICS, "train_step": TRAIN_STEP}
