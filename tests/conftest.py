"""Shared fixtures: every test starts from the same global RNG state (threads left at torch's default)."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_everything():
    """Seeds torch, numpy and random before each test so that random inputs are reproducible."""
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    yield

