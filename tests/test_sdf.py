"""SDF fitting: SIREN's loss on analytic spheres, marching cubes, Chamfer and friends, the point-cloud readers
and normalisation, the embedded shapes, and Experiments/sdf/main.py end to end."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from task_entry import load_task_main, run_main
from torch import nn

from sobolev_inr.geometry.pointclouds import (load_point_cloud, normalise, normalise_cloud, read_obj, read_ply, read_xyz,
                                          sample_mesh, write_ply)
from sobolev_inr.derivatives import value_and_derivatives
from sobolev_inr.errors import ConfigError, DataError
from sobolev_inr.geometry.meshing import evaluate_grid, grid_points, marching_cubes
from sobolev_inr.geometry.metrics import chamfer_l1, normal_consistency, occupancy_iou, sdf_error
from sobolev_inr.geometry.shapes import SHAPES, get_shape
from sobolev_inr.losses.sdf import SDFLossWeights, sdf_loss

REPO = Path(__file__).resolve().parents[1]
TASK_DIR = REPO / "Experiments" / "sdf"
SHIPPED_CONFIGS = sorted((TASK_DIR / "configs").rglob("*.txt"))
MAIN = load_task_main("sdf")


class SphereSDF(nn.Module):
    """Phi(x) = sign * (|x - centre| - radius): an exact SDF (sign = 1) of a sphere, not an MLP."""

    out_features = 1

    def __init__(self, radius: float, sign: float = 1.0, centre=(0.0, 0.0, 0.0)):
        super().__init__()
        self.radius, self.sign, self.centre = radius, sign, torch.tensor(centre)

    def forward(self, x):
        return self.sign * ((x - self.centre.to(x)).norm(dim=-1, keepdim=True) - self.radius)


def _sphere_batch(n=500, radius=0.5, seed=0):
    """n points on the sphere of ``radius`` with outward normals, then n uniform points in [-1, 1]^3 (float64)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, 3, generator=g, dtype=torch.float64)
    normals = u / u.norm(dim=1, keepdim=True)
    off = torch.rand(n, 3, generator=g, dtype=torch.float64) * 2 - 1
    return torch.cat([radius * normals, off]), normals


def _terms(model, x, normals, weights=SDFLossWeights(), engine="auto"):
    d = value_and_derivatives(model, x, mode="reverse", engine=engine)
    return sdf_loss(d.value[:, 0], d.jacobian[:, 0, :], normals.shape[0], normals, weights)


def _values(terms):
    return {k: float(v.detach()) for k, v in terms.items()}


class TestSDFLoss:
    @pytest.mark.parametrize("engine", ["auto", "autograd"])
    def test_engine_gives_the_sphere_gradient(self, engine):
        x, _ = _sphere_batch(50)
        d = value_and_derivatives(SphereSDF(0.5), x, mode="reverse", engine=engine)
        assert d.value.shape == (100, 1) and d.jacobian.shape == (100, 1, 3)
        torch.testing.assert_close(d.jacobian[:, 0], x / x.norm(dim=1, keepdim=True))

    def test_exact_sdf_has_zero_sdf_normal_and_eikonal_terms_and_the_closed_form_inter_term(self):
        x, normals = _sphere_batch(500, 0.5)
        w = SDFLossWeights()
        t = _values(_terms(SphereSDF(0.5), x, normals, w))
        assert set(t) == {"sdf", "inter", "normal", "grad", "total"}
        for key in ("sdf", "normal", "grad"):
            assert abs(float(t[key])) < 1e-9, (key, float(t[key]))
        off = x[500:].numpy()
        expected = w.inter * np.exp(-w.inter_alpha * np.abs(np.linalg.norm(off, axis=1) - 0.5)).sum() / 1000
        assert float(t["inter"]) == pytest.approx(expected, rel=1e-12)
        assert float(t["total"]) == pytest.approx(sum(float(t[k]) for k in ("sdf", "inter", "normal", "grad")))

    def test_wrong_radius_and_flipped_sign(self):
        """Radius 0.6 for points on 0.5: |Phi| = 0.1 on half the batch -> sdf = 3e3 * 0.05; normals still agree.
        A flipped sign (inside positive): cos = -1 on the surface -> normal = 1e2 * 2 * (1/2)."""
        x, normals = _sphere_batch(400, 0.5)
        t = _values(_terms(SphereSDF(0.6), x, normals))
        assert float(t["sdf"]) == pytest.approx(3e3 * 0.1 / 2, rel=1e-9)
        assert abs(float(t["normal"])) < 1e-9 and abs(float(t["grad"])) < 1e-9
        flipped = _values(_terms(SphereSDF(0.5, sign=-1.0), x, normals))
        assert float(flipped["normal"]) == pytest.approx(1e2, rel=1e-9)
        assert abs(float(flipped["sdf"])) < 1e-9 and abs(float(flipped["grad"])) < 1e-9

    def test_eikonal_term_of_a_scaled_sdf(self):
        """Phi = 2 (|x| - r): |grad| = 2 everywhere -> grad = 5e1 * 1."""
        x, normals = _sphere_batch(100, 0.5)
        t = _values(_terms(SphereSDF(0.5, sign=2.0), x, normals))
        assert float(t["grad"]) == pytest.approx(50.0, rel=1e-9)

    def test_points_only_has_no_normal_term_and_weights_scale(self):
        x, _ = _sphere_batch(100, 0.5)
        d = value_and_derivatives(SphereSDF(0.7), x, mode="reverse")
        one = _values(sdf_loss(d.value[:, 0], d.jacobian[:, 0], 100, None, SDFLossWeights(1, 1, 1, 1, 100)))
        assert "normal" not in one
        ten = _values(sdf_loss(d.value[:, 0], d.jacobian[:, 0], 100, None, SDFLossWeights(10, 10, 10, 10, 100)))
        for key in ("sdf", "inter", "grad"):
            assert float(ten[key]) == pytest.approx(10 * float(one[key]))

    def test_reaches_the_weights_of_an_mlp(self):
        from sobolev_inr.models import MLP

        model = MLP(3, 1, ["sine"] * 2, hidden_features=8)
        x, normals = _sphere_batch(20, 0.5)
        _terms(model, x.float(), normals.float())["total"].backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


class TestMarchingCubes:
    def test_sphere_within_one_voxel_and_outward(self):
        r, res = 0.537, 41  # off the grid points: no degenerate triangles
        values = (np.linalg.norm(grid_points(res), axis=1) - r).reshape(res, res, res)
        verts, faces = marching_cubes(values)
        voxel = 2 / (res - 1)
        assert np.abs(np.linalg.norm(verts, axis=1) - r).max() < voxel
        tri = verts[faces]
        normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        assert ((normal * tri.mean(axis=1)).sum(axis=1) > 0).all()  # right-hand normals point outward

    def test_grid_axis_order_and_chunks(self):
        """evaluate_grid(model)[i, j, k] = model at (x_i, y_j, z_k), whatever the chunk size."""

        class Linear(nn.Module):
            def forward(self, x):
                return (x * torch.tensor([1.0, 10.0, 100.0])).sum(dim=1, keepdim=True)

        a = evaluate_grid(Linear(), 5, chunk_size=7)
        expected = (grid_points(5) @ np.array([1.0, 10.0, 100.0])).reshape(5, 5, 5)
        np.testing.assert_allclose(a, expected, atol=1e-5)
        assert a[4, 0, 0] == pytest.approx(1 - 10 - 100)

    def test_no_crossing_is_none_and_a_cut_surface_is_closed(self):
        assert marching_cubes(np.ones((8, 8, 8))) is None
        res = 21
        values = (np.linalg.norm(grid_points(res), axis=1) - 1.3).reshape(res, res, res)  # cut by the cube's faces
        verts, faces = marching_cubes(values)
        edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
        _, counts = np.unique(edges, axis=0, return_counts=True)
        assert (counts == 2).all()  # every edge shared by two triangles: closed


class TestShapeMetrics:
    def test_chamfer_golden(self):
        a = np.array([[0.0, 0, 0], [1, 0, 0]])
        b = np.array([[0.0, 0, 0.5]])
        # a -> b: 0.5 and sqrt(1.25); b -> a: 0.5
        assert chamfer_l1(a, b) == pytest.approx(0.5 * ((0.5 + math.sqrt(1.25)) / 2 + 0.5))
        assert chamfer_l1(a, a) == 0.0
        with pytest.raises(ValueError):
            chamfer_l1(a, np.zeros((0, 3)))

    def test_normal_consistency_iou_and_sdf_error_golden(self):
        p = np.array([[0.0, 0, 0], [1, 0, 0]])
        n = np.array([[0.0, 0, 1], [0, 0, 1]])
        q = np.array([[0.0, 0, 0.1], [1, 0, -0.1]])
        m = np.array([[0.0, 0, -2], [0, 1, 1]])  # antiparallel (|cos| 1), 45 degrees
        assert normal_consistency(p, n, q, m) == pytest.approx((1 + math.sqrt(0.5)) / 2)
        assert occupancy_iou(np.array([-1, -1, 1, 1]), np.array([-1, 1, -1, 1])) == pytest.approx(1 / 3)
        assert occupancy_iou(np.ones(3), np.ones(3)) == 1.0
        assert sdf_error(np.array([0.0, 1.0]), np.array([0.5, 0.0])) == pytest.approx(0.75)


def _write_ascii_ply(path, vertices, faces=None, normals=None):
    props = ["x", "y", "z"] + (["nx", "ny", "nz"] if normals is not None else [])
    lines = ["ply", "format ascii 1.0", "comment test", f"element vertex {len(vertices)}",
             *(f"property float {p}" for p in props)]
    if faces is not None:
        lines += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
    lines.append("end_header")
    cols = vertices if normals is None else np.concatenate([vertices, normals], 1)
    lines += [" ".join(f"{v:.9g}" for v in row) for row in cols]
    if faces is not None:
        lines += [" ".join(str(v) for v in [len(f), *f]) for f in faces]
    path.write_text("\n".join(lines) + "\n")


CUBE_V = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], float)
CUBE_QUADS = [[0, 3, 2, 1], [4, 5, 6, 7], [0, 1, 5, 4], [2, 3, 7, 6], [1, 2, 6, 5], [0, 4, 7, 3]]  # outward


def _check_cube_samples(points, normals):
    """Points on the unit cube's surface, normals the outward axis of their face."""
    assert ((points > -1e-9) & (points < 1 + 1e-9)).all()
    on_face = np.abs(points - np.round(points)) < 1e-6  # the coordinate that is 0 or 1
    assert on_face.any(axis=1).all()
    axis = np.abs(normals).argmax(axis=1)
    assert np.allclose(np.abs(normals).max(axis=1), 1.0)
    side = points[np.arange(len(points)), axis]
    assert np.allclose(np.sign(normals[np.arange(len(points)), axis]), np.where(side > 0.5, 1, -1))


class TestReaders:
    def test_xyz_with_and_without_normals(self, tmp_path):
        pts = np.random.default_rng(0).normal(size=(20, 3))
        nrm = np.random.default_rng(1).normal(size=(20, 3)) * 3
        path = tmp_path / "a.xyz"
        np.savetxt(path, np.concatenate([pts, nrm], 1), header="x y z nx ny nz")
        cloud = load_point_cloud(str(path))
        np.testing.assert_allclose(cloud.points, pts)
        np.testing.assert_allclose(cloud.normals, nrm / np.linalg.norm(nrm, axis=1, keepdims=True))
        np.savetxt(path, pts)
        p, n = read_xyz(path)
        assert n is None and np.allclose(p, pts)

    def test_ply_ascii_vertices_with_normals(self, tmp_path):
        v = np.random.default_rng(0).uniform(size=(10, 3)).astype(np.float32)
        n = np.tile([[0.0, 0.0, 2.0]], (10, 1)).astype(np.float32)
        _write_ascii_ply(tmp_path / "v.ply", v, normals=n)
        verts, faces, normals = read_ply(tmp_path / "v.ply")
        assert faces is None and np.allclose(verts, v) and np.allclose(normals, n)
        cloud = load_point_cloud(str(tmp_path / "v.ply"))
        assert cloud.num_points == 10 and np.allclose(cloud.normals, [0, 0, 1])

    def test_ply_binary_round_trip_and_ascii_quads(self, tmp_path):
        tris = np.array([[0, 1, 2], [0, 2, 3]])
        write_ply(tmp_path / "b.ply", CUBE_V[:4], tris)
        verts, faces, normals = read_ply(tmp_path / "b.ply")
        assert np.allclose(verts, CUBE_V[:4]) and np.array_equal(faces, tris) and normals is None
        write_ply(tmp_path / "bn.ply", CUBE_V, normals=CUBE_V - 0.5)
        verts, faces, normals = read_ply(tmp_path / "bn.ply")
        assert faces is None and np.allclose(normals, CUBE_V - 0.5)
        _write_ascii_ply(tmp_path / "q.ply", CUBE_V, faces=CUBE_QUADS)
        verts, faces, _ = read_ply(tmp_path / "q.ply")
        assert faces.shape == (12, 3)
        cloud = load_point_cloud(str(tmp_path / "q.ply"), num_points=2000, seed=3)
        assert cloud.num_points == 2000
        _check_cube_samples(cloud.points, cloud.normals)

    def test_obj_polygons_slashes_and_negative_indices(self, tmp_path):
        lines = [f"v {x} {y} {z}" for x, y, z in CUBE_V] + ["vn 0 0 1"]
        lines += ["f " + " ".join(f"{i + 1}/1/1" for i in q) for q in CUBE_QUADS[:3]]
        lines += ["f " + " ".join(str(i - 8) for i in q) for q in CUBE_QUADS[3:]]  # -8 = the first vertex
        path = tmp_path / "cube.obj"
        path.write_text("# a cube\n" + "\n".join(lines) + "\n")
        verts, faces = read_obj(path)
        assert verts.shape == (8, 3) and faces.shape == (12, 3)
        cloud = load_point_cloud(str(path), num_points=1000)
        _check_cube_samples(cloud.points, cloud.normals)

    def test_mesh_sampling_is_uniform_by_area(self):
        """Two triangles, areas 1/2 and 2: about 1 in 5 samples on the first."""
        v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 5], [2, 0, 5], [0, 2, 5]], float)
        p, n = sample_mesh(v, np.array([[0, 1, 2], [3, 4, 5]]), 20000, np.random.default_rng(0))
        assert (p[:, 2] == 0).mean() == pytest.approx(0.2, abs=0.01)
        assert np.allclose(n, [0, 0, 1])

    def test_normalisation_is_sirens_and_inverts(self):
        pts = np.random.default_rng(0).normal(size=(500, 3)) * [3.0, 1.0, 0.5] + [10.0, -2.0, 4.0]
        out, t = normalise(pts)
        centred = pts - pts.mean(axis=0)
        siren = (centred - centred.min()) / (centred.max() - centred.min())
        np.testing.assert_allclose(out, (siren - 0.5) * 2, atol=1e-12)
        assert out.min() == pytest.approx(-1) and out.max() == pytest.approx(1)
        np.testing.assert_allclose(t.invert(out), pts, atol=1e-12)
        assert t.as_dict()["scale"] == pytest.approx(2 / (centred.max() - centred.min()))

    @pytest.mark.parametrize("name, content, words", [
        ("empty.xyz", "", None),
        ("bad.xyz", "1 2 three\n", ["not an .xyz"]),
        ("four.xyz", "1 2 3 4\n", ["4 numbers per line"]),
        ("bin.xyz", b"\x89PNG\r\n\x1a\n\xff\xfe", ["binary"]),
        ("bad.ply", "not a ply\n", ["not a PLY"]),
        ("short.ply", "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                      "property float z\nend_header\n0 0 0\n", ["shorter"]),
        ("big.ply", "ply\nformat binary_big_endian 1.0\nelement vertex 0\nend_header\n", ["binary_big_endian"]),
        ("bad.obj", "v 0 0 x\n", ["line 1"]),
        ("bad.stl", "solid\n", ["unknown format"]),
        ("zero.xyz", "0 0 0 0 0 0\n1 1 1 0 0 1\n", ["zero length"]),
    ])
    def test_bad_files_raise_data_error(self, tmp_path, name, content, words):
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(DataError) as info:
            load_point_cloud(str(path))
        for w in words or ["no points"]:
            assert w in str(info.value), (w, str(info.value))
        assert name in str(info.value)


class TestShapes:
    @pytest.mark.parametrize("name", sorted(SHAPES))
    def test_samples_on_the_zero_set_with_unit_normals_equal_to_the_gradient(self, name):
        shape = get_shape(name)
        points, normals = shape.sample(3000, seed=1)
        assert points.shape == normals.shape == (3000, 3)
        assert np.abs(shape.sdf(points)).max() < 1e-12
        np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-12)
        h = 1e-6
        fd = np.stack([(shape.sdf(points + h * e) - shape.sdf(points - h * e)) / (2 * h) for e in np.eye(3)], 1)
        err = np.linalg.norm(fd - normals, axis=1)
        assert np.quantile(err, 0.99) < 1e-6, np.quantile(err, 0.99)  # box edges (within h) aside

    @pytest.mark.parametrize("name", sorted(SHAPES))
    def test_sdf_is_exact_off_the_surface(self, name):
        """|SDF(x)| = the distance to a dense surface sample (to the sample's spacing), inside and outside."""
        shape = get_shape(name)
        surface, _ = shape.sample(200_000, seed=2)
        x = np.random.default_rng(3).uniform(-1, 1, size=(300, 3))
        dist = chamfer_free_distance(x, surface)
        assert np.abs(np.abs(shape.sdf(x)) - dist).max() < 0.02

    def test_spheres_boxes_parts_are_disjoint(self):
        shape = get_shape("spheres_boxes")
        for i, part in enumerate(shape.parts):
            pts = part.sample(5000, np.random.default_rng(i))
            others = [q.sdf(pts)[0].min() for j, q in enumerate(shape.parts) if j != i]
            assert min(others) > 0.05

    def test_normalised_true_sdf(self):
        cloud = normalise_cloud(load_point_cloud("shape:torus", 2000))
        assert np.abs(cloud.true_sdf(cloud.points.astype(np.float64))).max() < 1e-5  # float32 points
        centre = cloud.transform.apply(np.zeros((1, 3)))  # the hole's centre: 0.6 - 0.25 = 0.35 from the tube
        assert cloud.true_sdf(centre)[0] == pytest.approx(0.35 * cloud.transform.scale)

    def test_unknown_shape(self):
        with pytest.raises(ConfigError, match="shape:torus"):
            load_point_cloud("shape:cube")


def chamfer_free_distance(x, surface):
    from scipy.spatial import cKDTree

    return cKDTree(surface).query(x)[0]


# --------------------------------------------------------------------------------------------- entry
SMALL = dict(num_points=400, batch_size=200, num_epochs=1, hidden_features=16, mc_resolution=16)


@pytest.mark.e2e
@pytest.mark.slow
def test_every_shipped_config_runs_two_steps_and_writes_its_outputs(tmp_path, one_thread):
    assert len(SHIPPED_CONFIGS) == 12 + 2  # + issue 26's HOSC and grid configs
    for cfg in SHIPPED_CONFIGS:
        metrics = run_main(MAIN, ["--config", str(cfg)], tmp_path, **SMALL)
        run = tmp_path / metrics["exp_name"]
        assert metrics["steps"] == 2, cfg
        for name in ("metrics.json", "shape.png", "slices.png", "curves.png", "config.txt"):
            assert (run / name).is_file(), (cfg, name)
        assert (run / "mesh.ply").is_file() == (metrics["mesh_faces"] > 0), cfg
        saved = json.loads((run / "metrics.json").read_text())
        for key in ("surface_abs_phi", "sdf_error_uniform", "sdf_error_near", "iou", "chamfer_l1",
                    "normal_consistency", "normalisation", "final_sdf", "final_inter", "final_grad"):
            assert key in saved, (cfg, key)
        assert ("final_normal" in saved) == (saved["supervision"] == "val_der"), cfg
        assert saved["supervision"] in cfg.read_text() and saved["task"] == "sdf"


def test_outputs_of_an_exact_sphere_sdf_and_the_mesh_in_input_coordinates(tmp_path):
    """The task's metrics and files for Phi = |x| - 0.5 (normalised) against the embedded sphere (radius 0.8 before
    normalisation, about 1 after): the mesh written in the input's coordinates maps back onto |x| = 0.5."""
    from sobolev_inr.tasks.sdf import SDFFitting

    cloud = normalise_cloud(load_point_cloud("shape:sphere", 3000))
    task = SDFFitting(cloud, "val_der", mc_resolution=33)
    model = SphereSDF(0.5)
    metrics = task.final_metrics(model)
    task.write_outputs(model, tmp_path, metrics)
    for name in ("mesh.ply", "shape.png", "slices.png"):
        assert (tmp_path / name).is_file(), name
    verts, faces, _ = read_ply(tmp_path / "mesh.ply")
    assert faces.shape == (metrics["mesh_faces"], 3) and len(verts) == metrics["mesh_vertices"]
    voxel = 2 / 32
    radius = np.linalg.norm(cloud.transform.apply(verts), axis=1)
    assert np.abs(radius - 0.5).max() < voxel
    assert np.abs(np.linalg.norm(verts - np.array(cloud.transform.centre), axis=1) - 0.5 / cloud.transform.scale
                  ).max() < voxel / cloud.transform.scale
    # The cloud is a sphere of radius ~1 (normalised); Phi's zero set has radius 0.5: Chamfer ~0.5, normals agree.
    true_radius = 0.8 * cloud.transform.scale
    assert metrics["chamfer_l1"] == pytest.approx(true_radius - 0.5, abs=voxel)
    assert metrics["chamfer_l1_input_units"] == pytest.approx(metrics["chamfer_l1"] / cloud.transform.scale)
    assert metrics["normal_consistency"] > 0.99
    assert metrics["sdf_error_uniform"] == pytest.approx(true_radius - 0.5, rel=1e-3)  # a constant offset
    assert metrics["iou"] == pytest.approx((0.5 / true_radius) ** 3, abs=0.05)
    assert metrics["surface_abs_phi"] == pytest.approx(true_radius - 0.5, rel=1e-3)
    centre = tuple(cloud.transform.apply(np.zeros((1, 3)))[0])  # the sphere's centre, normalised (near 0)
    exact = task.final_metrics(SphereSDF(true_radius, centre=centre))
    assert exact["sdf_error_uniform"] < 1e-5 and exact["iou"] > 0.99 and exact["chamfer_l1"] < voxel
    assert exact["chamfer_l1"] == pytest.approx(exact["chamfer_l1_floor"], rel=0.2)  # the sampling's own floor


@pytest.mark.e2e
def test_points_without_normals_fit_with_val(tmp_path, one_thread):
    pts = get_shape("sphere").sample(400, seed=0)[0]
    path = tmp_path / "sphere.xyz"
    np.savetxt(path, pts)
    metrics = run_main(MAIN, ["--point_cloud", str(path), "--supervision", "val", "--exp_name", "xyz"], tmp_path,
                       **{k: v for k, v in SMALL.items() if k != "num_points"})
    assert metrics["has_normals"] is False and metrics["normal_consistency"] is None
    assert "iou" not in metrics and metrics["steps"] == 2


@pytest.mark.e2e
def test_resume_matches_an_uninterrupted_run(tmp_path, one_thread):
    common = ["--epochs_til_ckpt", "2"]
    run_main(MAIN, common + ["--exp_name", "full"], tmp_path, **{**SMALL, "num_epochs": 4})
    run_main(MAIN, common + ["--exp_name", "split"], tmp_path, **{**SMALL, "num_epochs": 2})
    run_main(MAIN, common + ["--exp_name", "split", "--resume"], tmp_path, **{**SMALL, "num_epochs": 4})
    a = torch.load(tmp_path / "full" / "checkpoints" / "epoch_0000004.pt", weights_only=False)
    b = torch.load(tmp_path / "split" / "checkpoints" / "epoch_0000004.pt", weights_only=False)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


@pytest.mark.e2e
@pytest.mark.parametrize("name, content, args, words", [
    ("empty.xyz", "# nothing\n", [], ["holds no points"]),
    ("points.xyz", "0 0 0\n1 1 1\n0 1 0\n", [], ["no normals", "supervision = val"]),
    ("garbage.ply", "\x00\x01 definitely not a mesh", [], ["not a PLY"]),
    ("words.xyz", "hello world again\n", [], ["not an .xyz"]),
    (None, None, [], ["not found", "shape:torus"]),
])
def test_bad_inputs_end_in_one_line(tmp_path, name, content, args, words):
    source = tmp_path / (name or "missing.xyz")
    if content is not None:
        source.write_text(content)
    argv = ["--point_cloud", str(source), *args, "--logging_root", str(tmp_path)]
    proc = subprocess.run([sys.executable, "main.py", *argv], cwd=TASK_DIR, capture_output=True, text=True)
    err = proc.stderr.strip()
    assert proc.returncode == 2, err
    assert "Traceback" not in err and err.startswith("error:") and len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)


@pytest.mark.e2e
@pytest.mark.parametrize("args, words", [
    (["--point_cloud", "shape:cube"], ["unknown embedded shape", "shape:spheres_boxes"]),
    (["--mc_resolution", "4"], ["mc_resolution must be >= 8"]),
    (["--inter_alpha", "0"], ["inter_alpha"]),
    (["--lambda_normal", "-1"], ["lambda_normal"]),
])
def test_bad_options_end_in_one_line(tmp_path, args, words, capsys, monkeypatch):
    """Through run_entry_point in-process (the subprocess path is tested above)."""
    from sobolev_inr.config.cli import run_entry_point

    monkeypatch.chdir(TASK_DIR)
    with pytest.raises(SystemExit) as info:
        run_entry_point(MAIN.main, [*args, "--logging_root", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and err.startswith("error:") and len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)


@pytest.mark.e2e
def test_load_run_rebuilds_the_run_and_compare_draws_it(tmp_path, one_thread):
    from sobolev_inr.tasks.sdf import load_run

    common = dict(SMALL, point_cloud="shape:sphere")
    metrics = run_main(MAIN, [], tmp_path, exp_name="val", supervision="val", **common)
    run_main(MAIN, [], tmp_path, exp_name="val_der", **common)
    model, task, saved = load_run(tmp_path / "val")
    assert saved == metrics and task.supervision == "val" and task.cloud.num_points == metrics["num_points"]
    assert task.final_metrics(model)["surface_abs_phi"] == pytest.approx(metrics["surface_abs_phi"], rel=1e-6)
    compare = load_task_main("sdf", "compare")
    out = [str(tmp_path / "meshes.png"), str(tmp_path / "slices.png")]
    compare.main([str(tmp_path / "val"), str(tmp_path / "val_der"), "--columns", "2", "--meshes_out", out[0],
                  "--slices_out", out[1]])
    assert all(Path(p).stat().st_size > 10_000 for p in out)
    with pytest.raises(SystemExit):
        compare.main([str(tmp_path / "val"), str(tmp_path / "val_der"), "--columns", "3"])
