"""``python -m sobolev_inr``: the ``sobolev-inr`` command (:mod:`sobolev_inr.console`)."""
import sys

from .console import main

if __name__ == "__main__":
    sys.exit(main())
