"""NYUDv2 (NYU Depth v2) for the FCN paper's RGB / HHA / RGB-D / late-fusion experiments.

Task: the 40-class labelling of Gupta et al. (CVPR 2013 / ECCV 2014) on the 1,449 labelled
images, split 795 trainval (381 train + 414 val) / 654 test as in the FCN code
(``fcn.berkeleyvision.org/data/nyud/{train,val,test}.txt``, shipped here in
``keras_fcn/datasets/resources/nyud_*.txt``). Image ids are ``5001 .. 6449``: id = 5000 + the
1-based index of the image in ``nyu_depth_v2_labeled.mat`` (Gupta et al.'s numbering).

Labels: the data set stores 0 = void (unlabelled) and 1..40 = classes; readers here return
**training ids**: classes 0..39 (``NYUD_CLASSES`` order) and void = 255 (ignored by the loss
and the metrics), exactly as the reference ``NYUDSegDataLayer`` (``label - 1`` in uint8).

Two sources are supported:

1. The FCN layout (``nyud.tar.gz`` of the FCN authors, or written by
   :func:`convert_labeled_mat`)::

       root/data/images/img_5001.png    RGB
       root/data/depth/img_5001.png     depth, uint16 millimetres
       root/data/hha/img_5001.png       HHA, uint8 3 channels
       root/segmentation/img_5001.mat   field "segmentation": uint8 40-class labels, 0 = void
       root/{train,val,test}.txt        optional split files (else the bundled lists)

2. The official ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 = HDF5, read with h5py) plus
   Gupta et al.'s ``classMapping40.mat`` (field ``mapClass``: (1, 894), the 40-class id of
   each of the 894 NYU labels): :func:`iter_labeled_mat` and :func:`convert_labeled_mat`.
   h5py sees MATLAB's column-major (H, W, 3, N) arrays reversed, as ``images`` (N, 3, W, H),
   ``depths``/``labels`` (N, W, H); the reader transposes them to (H, W, 3) / (H, W).

Example:

```python
from keras_fcn.datasets import nyud
nyud.convert_labeled_mat("nyu_depth_v2_labeled.mat", "classMapping40.mat", "data/nyud")
ds = nyud.make_nyud_dataset("data/nyud", "trainval", modality="fusion", shuffle=True, seed=0)
```
"""

from keras_fcn.datasets.nyud.fake import (  # noqa: F401
    fake_scene,
    write_fake_class_mapping,
    write_fake_labeled_mat,
    write_fake_nyud,
)
from keras_fcn.datasets.nyud.inputs import (  # noqa: F401
    check_split_files,
    input_channels,
    load_example,
    make_nyud_dataset,
    preprocess_depth,
    preprocess_hha,
    preprocess_rgb,
    preprocess_rgbd,
)
from keras_fcn.datasets.nyud.labeled_mat import (  # noqa: F401
    convert_labeled_mat,
    iter_labeled_mat,
    map_to_40_classes,
    read_class_mapping,
)
from keras_fcn.datasets.nyud.layout import (  # noqa: F401
    ID_OFFSET,
    MODALITIES,
    NUM_CLASSES,
    NUM_RAW_CLASSES,
    NYUD_CLASSES,
    NYUD_MEAN_BGR,
    NYUD_MEAN_HHA,
    NYUD_MEAN_LOG_DEPTH,
    SPLITS,
    nyud_ids,
    nyud_split_ids,
    read_depth,
    read_hha,
    read_label,
    read_rgb,
    to_train_ids,
    write_example,
    write_split_files,
)
from keras_fcn.labels import IGNORE_LABEL  # noqa: F401
