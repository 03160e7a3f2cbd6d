"""The authors' released FCN models by name (fcn.berkeleyvision.org): PASCAL VOC,
PASCAL-Context, NYUDv2 and SIFT Flow, downloaded, checked and converted once.

Example:
    >>> from keras_fcn.presets import from_preset, list_presets, preset_labels
    >>> model = from_preset("voc-fcn8s")  # doctest: +SKIP
    >>> preset_labels("voc-fcn8s").class_names[15]
    'person'
    >>> from keras_fcn.models import build_fcn8s
    >>> model = build_fcn8s(weights="voc-fcn8s")  # in a builder  # doctest: +SKIP
"""

from keras_fcn.presets.catalog import (  # noqa: F401
    PRESETS,
    Preset,
    get_preset,
    list_presets,
    preset_info,
    preset_labels,
)
from keras_fcn.classes import (  # noqa: F401
    NYUD_CLASSES,
    PASCAL_CONTEXT_CLASSES,
    SIFTFLOW_GEOMETRIC_CLASSES,
    SIFTFLOW_SEMANTIC_CLASSES,
)
from keras_fcn.presets.fetch import (  # noqa: F401
    cache_folder,
    converted_path,
    download_caffemodel,
    from_preset,
    model_file,
    resolve_model,
)
from keras_fcn.presets.builder_weights import register_presets

register_presets()  # the builders' weights="voc-fcn8s" (keras_fcn.models cannot import us)
