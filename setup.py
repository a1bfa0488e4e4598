"""Packaging beyond pyproject.toml: the embedded default model ships inside the package.

``models/`` stays the one copy in the repository; at build time it becomes the package
``moxi_hf.models`` (its files are package data, see pyproject.toml), so a wheel or a
``pip install .`` carries the model and its sample digits, and an editable install reads them
from ``models/`` directly.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["moxi_hf", "moxi_hf.*"]), "moxi_hf.models"],
    package_dir={"moxi_hf.models": "models"},
)
