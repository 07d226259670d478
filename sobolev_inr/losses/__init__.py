"""Losses: Sobolev supervision of values and derivatives (:mod:`.sobolev`) and SIREN's SDF loss (:mod:`.sdf`)."""
