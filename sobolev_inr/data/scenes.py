"""Multi-view scenes for inverse rendering: LLFF folders and the embedded synthetic scene.

Two sources, both named by the config's ``datadir``:

* a folder in LLFF's layout (``poses_bounds.npy``, ``images_<k>/``), e.g.
  ``../../data/nerf_llff_data/fern``, loaded by :func:`load_llff` as nerf-pytorch loads it
  (:mod:`sobolev_inr.data.llff` states every step and convention);
* ``synthetic``: textured planes rendered by this package (:mod:`sobolev_inr.data.synthetic_scene`),
  written once, in LLFF's layout, into the run directory's ``data/`` folder,
  ``<basedir>/<expname>/data/synthetic_planes/``, then loaded by the same :func:`load_llff`.

Views are split into training and test views by :func:`holdout_views` (every ``llffhold``-th
held out). Rays, NDC and volume rendering live in ``sobolev_inr.rendering``; they take
``LLFFScene.poses``, ``height``, ``width``, ``focal`` and ``bounds`` from here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import ConfigError
from .llff import LLFFScene, holdout_views, load_llff
from .synthetic_scene import (SYNTHETIC_DATADIR, SYNTHETIC_SCENE_DEFAULTS, is_complete, make_synthetic_scene,
                              synthetic_scene_path)

__all__ = ["LLFFScene", "load_llff", "holdout_views", "load_scene", "SYNTHETIC_DATADIR", "SYNTHETIC_SCENE_DEFAULTS",
           "make_synthetic_scene", "is_complete", "synthetic_scene_path"]


def load_scene(datadir: str, factor: int, synthetic_base_dir: Optional[Path] = None, **llff_options) -> LLFFScene:
    """The scene a config names: ``datadir = synthetic`` makes (once) and loads the embedded scene
    under ``synthetic_base_dir`` (the run directory's ``data/``), any other value is an LLFF folder.

    ``llff_options``: :func:`load_llff`'s keyword arguments (``recenter``, ``bd_factor``,
    ``spherify``, ``path_zflat``, ``make_missing``). The synthetic scene has factors 1, 2 and 4.
    """
    if str(datadir) == SYNTHETIC_DATADIR:
        if synthetic_base_dir is None:
            raise ConfigError("datadir = synthetic needs a folder to write the scene into (the run directory's data/)")
        datadir = make_synthetic_scene(synthetic_scene_path(synthetic_base_dir))
    return load_llff(datadir, factor, **llff_options)
