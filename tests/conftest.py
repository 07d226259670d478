"""Shared fixtures: every test starts from the same global RNG state (threads left at torch's default, but
under ``one_thread``)."""
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


@pytest.fixture
def one_thread():
    """Small fits run much faster on one thread when the machine's cores are shared; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_gray_png(tmp_path_factory):
    """A 16x16 grayscale PNG with structure along both axes, for runs of a few steps."""
    from PIL import Image

    y, x = np.mgrid[0:16, 0:16] / 15.0
    gray = (np.sin(4 * x) * np.cos(3 * y) * 0.5 + 0.5) * 255
    path = tmp_path_factory.mktemp("img") / "tiny_gray.png"
    Image.fromarray(gray.astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="session")
def tiny_rgb_png(tmp_path_factory):
    """A 16x16 RGB PNG: smooth red and green channels, a noisy blue one."""
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:16, 0:16] / 15.0
    rgb = np.stack([np.sin(3 * x) * 0.5 + 0.5, np.cos(2 * y) * 0.5 + 0.5, rng.uniform(size=(16, 16))], -1)
    path = tmp_path_factory.mktemp("img") / "tiny_rgb.png"
    Image.fromarray((rgb * 255).astype(np.uint8)).save(path)
    return path


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` skip, with the reason, where torch sees no CUDA device (CI has none)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False); run on a GPU machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
