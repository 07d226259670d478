"""Sobolev training of implicit neural representations: models, exact input-derivatives,
derivative targets, data, losses, metrics and one training loop shared by every task."""

__version__ = "0.1.0"
