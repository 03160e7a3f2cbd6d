"""The class lists and input means of the data sets the authors' released models were trained
on, as the reference (fcn.berkeleyvision.org) defines them: the one place a preset, a data set
reader or a tool takes them from.

- PASCAL VOC: ``keras_fcn.labels.VOC_CLASSES`` (21, background first).
- PASCAL-Context: 59 classes plus background (60 outputs), ``data/pascal-context/classes-59.txt``
  of the reference; ids 1..20 are the VOC classes.
- NYUDv2: the 40-class task of Gupta et al. (ECCV 2014), ids 0..39.
- SIFT Flow: 33 semantic and 3 geometric classes, ``data/sift-flow/classes.txt``.

Example:
    >>> len(PASCAL_CONTEXT_CLASSES), PASCAL_CONTEXT_CLASSES[21], NYUD_CLASSES[0]
    (60, 'bag', 'wall')
"""

from keras_fcn.labels import VOC_CLASSES

PASCAL_CONTEXT_CLASSES = VOC_CLASSES + (
    "bag", "bed", "bench", "book", "building", "cabinet", "ceiling", "clothes", "computer",
    "cup", "door", "fence", "floor", "flower", "food", "grass", "ground", "keyboard", "light",
    "mountain", "mouse", "curtain", "platform", "sign", "plate", "road", "rock", "shelves",
    "sidewalk", "sky", "snow", "bedcloth", "track", "tree", "truck", "wall", "water", "window",
    "wood",
)
NYUD_CLASSES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor mat", "clothes", "ceiling", "books", "refridgerator", "television", "paper", "towel",
    "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
    "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)
SIFTFLOW_SEMANTIC_CLASSES = (
    "awning", "balcony", "bird", "boat", "bridge", "building", "bus", "car", "cow", "crosswalk",
    "desert", "door", "fence", "field", "grass", "moon", "mountain", "person", "plant", "pole",
    "river", "road", "rock", "sand", "sea", "sidewalk", "sign", "sky", "staircase",
    "streetlight", "sun", "tree", "window",
)
SIFTFLOW_GEOMETRIC_CLASSES = ("sky", "horizontal", "vertical")

# Per-channel means of the reference data layers (BGR order for colour images). PASCAL VOC and
# PASCAL-Context use keras_fcn.layers.FCN_MEAN_BGR (the Context layer rounds it to 3 decimals).
NYUD_MEAN_BGR = (116.190, 97.203, 92.318)
NYUD_MEAN_HHA = (132.431, 94.076, 118.477)  # HHA channels in file order, not swapped
NYUD_MEAN_LOG_DEPTH = 7.844  # log of depth in millimetres
SIFTFLOW_MEAN_BGR = (114.578, 115.294, 108.353)
