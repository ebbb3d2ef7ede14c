"""Install rsna-mammo: GPU-accelerated DICOM decode and data loading for mammography."""

from setuptools import setup

setup(
    name="rsna-mammo",
    version="0.1.0",
    description="GPU-accelerated DICOM decode, preprocessing and data loading for RSNA screening mammography",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
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
        "timm>=1.0",
        "pyyaml>=6.0",
        "tqdm>=4.60",
    ],
    extras_require={
        "gpu": ["nvidia-dali-cuda130", "cupy-cuda13x", "nvidia-nvimgcodec-cu13"],
        "test": [
            "pytest>=7",
            "pytest-timeout>=2.2",
            "ruff==0.17.6",
            "hypothesis>=6",
            "matplotlib>=3.7",
            "psutil>=5.9",
            "torchvision",
            # pydicom's real-file test set (34 MB wheel, 56 MB installed; files ship in the wheel)
            "pydicom-data==1.0.0",
        ],
    },
    entry_points={"console_scripts": ["rsna-mammo=training.cli:main"]},
)
