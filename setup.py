"""Install rsna-mammo: GPU-accelerated DICOM decode and data loading for mammography."""

import os
import re

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version() -> str:
    """The version from ``decode/_version.py`` (read as text: building must not import the package)."""
    with open(os.path.join(HERE, "decode", "_version.py"), encoding="utf-8") as f:
        m = re.search(r'^__version__ = "([^"]+)"$', f.read(), re.M)
    if not m:
        raise RuntimeError("decode/_version.py has no __version__ line")
    return m.group(1)


def read_readme() -> str:
    path = os.path.join(HERE, "README.md")
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as f:
        return f.read()


setup(
    name="rsna-mammo",
    version=read_version(),
    description="GPU-accelerated DICOM decode, preprocessing and data loading for RSNA screening mammography",
    long_description=read_readme(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=["decode", "decode.backends", "dali_pipelines", "training", "benchmarks"],
    install_requires=[
        "numpy>=1.24",
        "pandas>=2.0",
        "pydicom>=3.0",
        "pylibjpeg>=2.0",
        "pylibjpeg-openjpeg>=2.3",
        "pylibjpeg-libjpeg>=2.1",
        "dicomsdl>=0.109",
        "imagecodecs>=2024.1.1",
        "glymur>=0.13.8,<0.15",  # OpenJPEG resolution levels (reduced-resolution JPEG 2000 decode)
        "torch>=2.1",
        "timm>=1.0",  # ModelEmaV3 (EMA with warm-up), CosineLRScheduler
        "scikit-learn>=1.3",  # StratifiedGroupKFold, roc_auc_score
        "kornia>=0.9",  # batch augmentation on the batch's device
        "pyyaml>=6.0",
        "tqdm>=4.60",
        "matplotlib>=3.7",  # headless (Agg) pictures: curves.png, roc.png, bench report charts
    ],
    extras_require={
        "gpu": ["nvidia-dali-cuda130", "cupy-cuda13x", "nvidia-nvimgcodec-cu13"],
        # rsna-mammo export and predict --ckpt MODEL.onnx (onnxscript: torch's dynamo ONNX exporter)
        "onnx": ["onnx>=1.16", "onnxruntime>=1.18", "onnxscript>=0.1"],
        # `make mutate` (benchmarks/mutation.py): mutmut's mutation operators, coverage's per-test contexts
        "dev": ["mutmut==2.5.1", "coverage==7.13.5"],
        "test": [
            "pytest>=7",
            "pytest-timeout>=2.2",
            "pytest-xdist>=3.5",  # make test: -n auto --dist loadgroup (tests marked xdist_group share a worker)
            "ruff==0.17.6",
            "vulture==2.16",  # tests/test_structure.py: no dead functions
            "hypothesis>=6",
            "psutil>=5.9",
            "torchvision",
            # tests/test_notebooks.py executes notebooks/*.ipynb in a Jupyter kernel
            "nbclient>=0.10",
            "nbformat>=5.9",
            "ipykernel>=6.29",
            # pydicom's real-file test set (34 MB wheel, 56 MB installed; files ship in the wheel)
            "pydicom-data==1.0.0",
        ],
    },
    entry_points={"console_scripts": ["rsna-mammo=training.cli:main"]},
)
