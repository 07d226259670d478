"""Configuration: the command-line and txt-config option groups (:mod:`.cli`) and the typed options the library takes (:mod:`.options`)."""
