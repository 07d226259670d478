"""Coordinate networks: activations (with their inits), encodings, the MLP built from both, and
``compile_model`` (torch.compile in place)."""
from .activations import ACTIVATIONS, Activation, build_activation
from .compile import compile_model
from .encodings import ENCODINGS, SIREN_3D_NUM_FREQUENCIES, build_encoding, nyquist_num_frequencies
from .mlp import INITS, MLP

__all__ = ["ACTIVATIONS", "Activation", "build_activation", "ENCODINGS", "build_encoding",
           "nyquist_num_frequencies", "SIREN_3D_NUM_FREQUENCIES", "INITS", "MLP", "compile_model"]
