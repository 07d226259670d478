"""Where a result came from: the package and torch versions and the git commit of the code that made it.

:func:`provenance` is recorded in every ``metrics.json`` (:meth:`~sobolev_inr.training.runs.RunDirectory.write_metrics`)
and every checkpoint (:func:`~sobolev_inr.training.checkpoints.save_checkpoint`), so that a number can be traced to
the code that produced it. The git commit is that of the repository the package is imported from (a clone,
or an editable install of one); an installed wheel has none and records ``None``. Git is asked once per
process, with a short timeout, and its absence is never an error.
"""
from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

PROVENANCE_KEYS = ("package_version", "torch_version", "git_commit", "git_dirty")
GIT_TIMEOUT_S = 5.0


def provenance() -> Dict[str, Any]:
    """``{"package_version", "torch_version", "git_commit", "git_dirty"}``, plain strings and booleans.

    ``git_commit``: ``git rev-parse HEAD`` of the repository whose top level holds this package, ``None``
    when there is none (an installed wheel) or git cannot tell; ``git_dirty``: whether tracked files differ
    from that commit (untracked files, such as run outputs, do not count), ``None`` when unknown.
    """
    import torch

    from .. import __version__

    commit, dirty = _git_state(str(Path(__file__).resolve().parents[2]))  # the folder holding sobolev_inr/
    return {"package_version": __version__, "torch_version": str(torch.__version__), "git_commit": commit,
            "git_dirty": dirty}


@functools.lru_cache(maxsize=None)
def _git_state(root: str) -> Tuple[Optional[str], Optional[bool]]:
    """(commit, dirty) of the git repository whose top level is ``root``; (None, None) otherwise. Cached: the
    code a process runs is the code it imported."""
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or not _same_folder(top, root):  # e.g. site-packages inside some other repository
        return None, None
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return commit, (None if status is None else bool(status))


def _git(cwd: str, *args: str) -> Optional[str]:
    """The stripped output of ``git <args>`` in ``cwd``; None when git is missing, fails or takes too long."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}  # no index.lock from `git status`
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT_S,
                              env=env, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _same_folder(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False
