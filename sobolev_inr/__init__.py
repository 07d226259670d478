"""Sobolev training of implicit neural representations: models, exact input-derivatives,
derivative targets, data, losses, metrics and one training loop shared by every task.

This module imports nothing (``import sobolev_inr`` stays cheap, and the build reads ``__version__`` from it:
pyproject.toml's ``[tool.setuptools.dynamic]``); import the submodules you need.
"""

__version__ = "0.1.0"
"""The package's version, its one source (the wheel's metadata and :func:`sobolev_inr.training.provenance.provenance`)."""
