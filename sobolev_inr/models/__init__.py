"""Coordinate networks: activations (with their inits), encodings, and the MLP built from both."""
from .activations import ACTIVATIONS, Activation, build_activation
from .encodings import ENCODINGS, build_encoding, nyquist_num_frequencies
from .mlp import MLP, expand_activations

__all__ = ["ACTIVATIONS", "Activation", "build_activation", "ENCODINGS", "build_encoding",
           "nyquist_num_frequencies", "MLP", "expand_activations"]
