"""Packages: ``detector`` and its sub-packages, and ``detector.shipped``, the top-level ``weights/``
folder (setup.cfg maps it), so that a non-editable install carries the shipped models. Everything
else is in setup.cfg."""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["detector", "detector.*"]) + ["detector.shipped"])
