"""Training FCNs: the paper's optimizers, one fit loop with safe run folders, and the recipes.

Modules: `config` (TrainConfig and its flags), `optimizers` (CaffeSGD, learning-rate
conventions, weight decay), `distribute` (strategies, mixed precision), `callbacks`,
`run_dir` (the files of a run), `inputs` (data of a run), `fit` (compile and train),
`evaluation` (the paper's metrics at label resolution), `two_headed` (multi-output models),
`recipe` (`run`, staged training) and `cli` (`run_main` and deprecated flag names for
scripts). `keras_fcn.train` is the 0.1.0 name of this package.

Example:
    >>> from keras_fcn import training
    >>> config = training.TrainConfig().replace(dataset="shapes", epochs=5, output_dir="runs/a")
    >>> training.run(config)  # doctest: +SKIP
"""

from keras_fcn import _tf  # noqa: E402

from keras_fcn.training.callbacks import (  # noqa: F401
    EMAWeights,
    ema_weights,
    BestCheckpoint,
    HistoryWriter,
    NaNGuard,
    SafeBackupAndRestore,
    TimeLimit,
    make_callbacks,
)
from keras_fcn.training.cli import define_deprecated_alias, run_main  # noqa: F401
from keras_fcn.training.config import (  # noqa: F401
    MODELS,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    config_from_flags,
    define_flags,
    parse_floats,
    parse_size,
)
from keras_fcn.training.consistency import (  # noqa: F401
    add_consistency,
    consistency_loss,
    symmetric_kl,
)
from keras_fcn.training.distribute import (  # noqa: F401
    STRATEGIES,
    is_chief,
    make_strategy,
    patch_multi_worker_build,
    set_mixed_precision,
)
from keras_fcn.training.evaluation import (  # noqa: F401
    check_scales,
    evaluate_model,
    format_results,
    tta_probabilities,
)
from keras_fcn.training.fit import compile_model, fit, make_metrics  # noqa: F401
from keras_fcn.training.optimizers import (  # noqa: F401
    LR_SCHEDULES,
    WarmupDecay,
    LOSS_REDUCTIONS,
    OPTIMIZERS,
    PAPER_LEARNING_RATES_SUM,
    PAPER_MOMENTUM,
    PAPER_WEIGHT_DECAY,
    CaffeSGD,
    apply_kernel_l2,
    default_learning_rate,
    equivalent_learning_rate,
    learning_rate_schedule,
    make_optimizer,
)
from keras_fcn.training.recipe import (  # noqa: F401
    STAGES,
    build_model,
    execution_path,
    execution_precision,
    run,
    stage_learning_rates,
    train_one,
    train_staged,
)
from keras_fcn.training.run_export import maybe_export  # noqa: F401
from keras_fcn.training.run_dir import (  # noqa: F401
    RUN_FILES,
    completed_run,
    finished_run,
    model_labels,
    plot_curves,
    prepare_run_dir,
    write_labels,
)
from keras_fcn.training.two_headed import compile_two_headed, evaluate_segmentation  # noqa: F401

# Built on TensorFlow (tf.data, TFLite): imported where it is installed; without it each
# name raises an ImportError that says so (keras_fcn._tf).
_tf.import_names(globals(), {
    "keras_fcn.training.inputs": (
        "load_data",
        "make_pipelines",
        "pixels_per_image",
        "resize_images",
        "resize_pair",
        "resolve_class_weights",
    ),
}, instead='keras_fcn.data.arrays.SegmentationPyDataset and keras_fcn.training.fit')
