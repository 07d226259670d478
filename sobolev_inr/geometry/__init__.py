"""Geometry: point clouds and their readers (:mod:`.pointclouds`), analytic shapes with exact SDFs (:mod:`.shapes`), marching cubes (:mod:`.meshing`) and shape metrics (:mod:`.metrics`)."""
