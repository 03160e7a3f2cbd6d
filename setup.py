"""Installs keras_fcn: Fully Convolutional Networks (Long, Shelhamer, Darrell, CVPR 2015) in Keras."""

import re

from setuptools import find_packages, setup


def package_version(path="keras_fcn/_version.py"):
    """The version keras_fcn reports (``keras_fcn.__version__``, written into exported
    sidecars), read from its file without importing the package."""
    with open(path, encoding="utf-8") as f:
        found = re.search(r'^__version__ = "([^"]+)"', f.read(), re.M)
    if found is None:
        raise RuntimeError(f"No __version__ = \"...\" line in {path}")
    return found.group(1)


setup(
    name="keras_fcn",
    version=package_version(),
    description=(
        "Paper-faithful Fully Convolutional Networks (FCN-32s/16s/8s) for semantic "
        "segmentation in Keras 3 / TensorFlow, with tf.data pipelines and TFLite export."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["keras_fcn", "keras_fcn.*"]),
    package_data={"keras_fcn": ["datasets/resources/*"]},
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.3",
        "tensorflow-datasets",
        "numpy",
        "pillow",
        "absl-py",
        "h5py",
        "matplotlib",
        "scipy",  # SBD, NYUDv2 and SIFT Flow .mat label files
        # the interpreter of exported .tflite files (evaluation, benchmarks, the main job);
        # TensorFlow's own tf.lite.Interpreter is deprecated and warns it will be removed
        "ai-edge-litert",
    ],
    extras_require={
        # torch: only for the equivalence tests against a PyTorch FCN and the weight converter;
        # the pinned release installs from a local wheel on our machines (CPU build).
        # torchvision: the FCN-ResNet50/101 equivalence tests build torchvision's own
        # fcn_resnet50/101; 2.14.1 / 0.29.1 are the matching releases on the machines' disk
        # (PyPI's torchvision does not import beside torch 2.13.0).
        # jax (CPU wheels): the core's tests also run on Keras' JAX backend (issue 24).
        # pytest-xdist: the suite runs on both cores (pytest.ini: -n 3, which overlaps the
        # tests' waits on their subprocesses).
        "dev": ["pytest", "pytest-xdist", "av", "torch==2.14.1",
                "torchvision==0.29.1", "jax",
                "import-linter", "opencv-python-headless"],
        "jax": ["jax"],
        "litert": [],  # ai-edge-litert is a core dependency now; kept for old commands
        "torch": ["torch"],
        "video": ["av"],
        # --unlabelled_video_dir: optical flow between the user's own frames.
        "flow": ["opencv-python-headless", "av"],
    },
)
