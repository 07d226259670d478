"""Tests for sobolev_inr.data.scenes: LLFF loading (real fern and hand-made folders), the train/test
split, and the embedded synthetic scene."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sobolev_inr.data.llff import average_pose, opengl_to_llff
from sobolev_inr.data.scenes import (SYNTHETIC_SCENE_DEFAULTS, holdout_views, is_complete, load_llff, load_scene,
                                     make_synthetic_scene, synthetic_scene_path)
from sobolev_inr.data.synthetic_scene import (MANIFEST_FILE, synthetic_camera_poses, synthetic_focal,
                                              synthetic_planes)
from sobolev_inr.errors import ConfigError, DataError

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FERN = REAL_DATA / "nerf_llff_data" / "fern"
needs_fern = pytest.mark.skipif(not (FERN / "poses_bounds.npy").is_file(),
                                reason=f"LLFF fern not found at {FERN} (link it as data/README.md says)")


def to_4x4(poses: np.ndarray) -> np.ndarray:
    out = np.zeros(poses.shape[:-2] + (4, 4))
    out[..., :3, :4] = poses
    out[..., 3, 3] = 1.0
    return out


def raw_opengl_poses(raw: np.ndarray) -> np.ndarray:
    """By hand: LLFF columns (down, right, back, centre) -> (right, up, back, centre), (N, 3, 4) float64."""
    m = raw[:, :15].reshape(-1, 3, 5)
    return np.stack([m[:, :, 1], -m[:, :, 0], m[:, :, 2], m[:, :, 3]], axis=-1)


def assert_same_rigid_frame(loaded: np.ndarray, raw_poses: np.ndarray, scale: float, atol: float):
    """``loaded`` = T @ (raw with translations x scale) for one rigid T shared by every view."""
    scaled = raw_poses.copy()
    scaled[:, :, 3] *= scale
    transform = to_4x4(loaded[0]) @ np.linalg.inv(to_4x4(scaled[0]))
    np.testing.assert_allclose(transform[:3, :3] @ transform[:3, :3].T, np.eye(3), atol=1e-5)
    np.testing.assert_allclose((transform @ to_4x4(scaled))[:, :3, :4], loaded, atol=atol)


def bilinear(image: np.ndarray, x: float, y: float) -> np.ndarray:
    """Colour at continuous array position (x = column, y = row)."""
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    fx, fy = x - x0, y - y0
    return ((image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx) * (1 - fy)
            + (image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx) * fy)


class TestHoldoutViews:
    def test_every_eighth(self):
        train, test = holdout_views(20, 8)
        assert test.tolist() == [0, 8, 16]
        assert train.tolist() == [i for i in range(20) if i not in (0, 8, 16)]

    def test_fallback_holds_out_the_center_view(self):
        train, test = holdout_views(20, 0, center_view=12)
        assert test.tolist() == [12] and len(train) == 19 and 12 not in train

    def test_fallback_needs_the_center_view(self):
        with pytest.raises(ConfigError, match="center_view"):
            holdout_views(20, -1)

    def test_llffhold_one_leaves_no_training_view(self):
        with pytest.raises(ConfigError, match="leaves none to train"):
            holdout_views(20, 1)

    def test_one_view_cannot_be_split(self):
        with pytest.raises(DataError, match="at least 2 views"):
            holdout_views(1, 8)


@pytest.fixture(scope="module")
def fern8():
    return load_llff(FERN, 8)


@needs_fern
class TestFern:
    def test_shapes_and_intrinsics(self, fern8):
        raw = np.load(FERN / "poses_bounds.npy")
        assert fern8.images.shape == (20, 378, 504, 3) and fern8.images.dtype == np.float32
        assert 0.0 <= fern8.images.min() and fern8.images.max() <= 1.0 and fern8.images.max() > 0.9
        assert fern8.poses.shape == (20, 3, 4) and fern8.poses.dtype == np.float32
        assert fern8.bounds.shape == (20, 2) and fern8.render_poses.shape == (120, 3, 4)
        assert (fern8.height, fern8.width) == (378, 504)
        assert fern8.source_hwf == (3024.0, 4032.0, raw[0, 14])
        assert raw[0, 14] == pytest.approx(3260.53, abs=0.01)
        assert fern8.focal == pytest.approx(raw[0, 14] / 8, rel=1e-6)
        assert [p.name for p in fern8.image_paths] == [f"image{i:03d}.png" for i in range(20)]

    def test_pixels_are_the_png_bytes_over_255(self, fern8):
        png = np.asarray(Image.open(FERN / "images_8" / "image007.png"))
        np.testing.assert_array_equal(fern8.images[7], png.astype(np.float32) / np.float32(255))

    def test_split(self, fern8):
        train, test = fern8.split(8)
        assert test.tolist() == [0, 8, 16] and len(train) == 17
        # fallback: nearest camera to the mean centre, which recentring puts at the origin
        assert fern8.center_view == int(np.argmin(np.linalg.norm(fern8.poses[:, :, 3], axis=1)))
        assert fern8.split(0)[1].tolist() == [fern8.center_view]

    def test_bounds_scaled_so_the_nearest_is_one_over_bd_factor(self, fern8):
        raw_bounds = np.load(FERN / "poses_bounds.npy")[:, 15:]
        assert fern8.scale == pytest.approx(1.0 / (raw_bounds.min() * 0.75), rel=1e-6)
        assert fern8.bounds.min() == pytest.approx(1 / 0.75, rel=1e-6)
        np.testing.assert_allclose(fern8.bounds, raw_bounds * fern8.scale, rtol=1e-6)

    def test_recentred(self, fern8):
        np.testing.assert_allclose(fern8.poses[:, :, 3].mean(0), 0.0, atol=1e-6)
        back = fern8.poses[:, :, 2].sum(0)
        np.testing.assert_allclose(back / np.linalg.norm(back), [0, 0, 1], atol=1e-6)
        up = fern8.poses[:, :, 1].sum(0)
        assert abs(up[0]) < 1e-5 and up[1] > 0.9 * np.linalg.norm(up)
        rotations = fern8.poses[:, :, :3].astype(np.float64)
        np.testing.assert_allclose(rotations @ rotations.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (20, 3, 3)),
                                   atol=1e-5)
        np.testing.assert_allclose(np.linalg.det(rotations), 1.0, atol=1e-5)

    def test_poses_are_the_raw_columns_reordered_scaled_and_moved_rigidly(self, fern8):
        raw = np.load(FERN / "poses_bounds.npy")
        by_hand = raw_opengl_poses(raw)
        assert_same_rigid_frame(fern8.poses, by_hand, fern8.scale, atol=1e-5)
        # view 3, one column by hand: the loaded right axis is the raw second column, rotated
        transform = to_4x4(fern8.poses[0])[:3, :3] @ by_hand[0, :, :3].T
        np.testing.assert_allclose(fern8.poses[3, :, 0], transform @ raw[3, :15].reshape(3, 5)[:, 1], atol=1e-5)
        np.testing.assert_allclose(fern8.poses[3, :, 1], transform @ -raw[3, :15].reshape(3, 5)[:, 0], atol=1e-5)

    def test_spiral_render_path(self, fern8):
        centres, backs = fern8.render_poses[:, :, 3].astype(float), fern8.render_poses[:, :, 2].astype(float)
        # every frame looks at one focus point: the lines centre - l * back meet
        projectors = np.eye(3) - backs[:, :, None] * backs[:, None, :]
        focus = np.linalg.solve(projectors.sum(0), (projectors @ centres[:, :, None]).sum(0))[:, 0]
        assert np.abs(projectors @ (centres - focus)[:, :, None]).max() < 1e-4
        close, far = fern8.bounds.min() * 0.9, fern8.bounds.max() * 5.0
        assert -focus[2] == pytest.approx(1 / (0.25 / close + 0.75 / far), rel=1e-4)
        radii = np.percentile(np.abs(fern8.poses[:, :, 3]), 90, axis=0)
        np.testing.assert_allclose(np.abs(centres).max(0), radii, rtol=0.02)

    def test_path_zflat(self):
        scene = load_llff(FERN, 8, path_zflat=True)
        assert scene.render_poses.shape == (60, 3, 4)
        depth = (scene.render_poses[:, :, 3] - average_pose(scene.poses)[:, 3]) @ average_pose(scene.poses)[:, 2]
        assert np.ptp(depth) < 1e-5 and depth.mean() == pytest.approx(-0.1 * 0.9 * scene.bounds.min(), rel=1e-4)

    def test_spherify(self, fern8):
        scene = load_llff(FERN, 8, spherify=True)
        assert scene.render_poses.shape == (120, 3, 4)
        assert np.sqrt(np.mean(np.sum(scene.poses[:, :, 3].astype(float) ** 2, -1))) == pytest.approx(1.0, rel=1e-5)
        ratio = scene.bounds / fern8.bounds
        np.testing.assert_allclose(ratio, ratio[0, 0], rtol=1e-5)
        np.testing.assert_allclose(scene.render_poses[0], scene.render_poses[-1], atol=1e-5)  # linspace's both ends

    def test_factor_4(self, fern8):
        scene = load_llff(FERN, 4)
        assert scene.images.shape == (20, 756, 1008, 3)
        assert scene.focal == pytest.approx(np.load(FERN / "poses_bounds.npy")[0, 14] / 4, rel=1e-6)
        np.testing.assert_array_equal(scene.poses, fern8.poses)
        halved = scene.images.reshape(20, 378, 2, 504, 2, 3).mean(axis=(2, 4))
        assert np.abs(halved - fern8.images).mean() < 0.02  # same views, same order and orientation

    def test_missing_factor_names_folders_and_flag(self):
        with pytest.raises(DataError, match=r"images_2 not found.*images_4, images_8.*llff_make_images"):
            load_llff(FERN, 2)


def smooth_rgb(height: int, width: int, phase: float) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    rgb = np.stack([np.sin(5 * x + phase), np.cos(4 * y - phase), np.sin(3 * (x + y))], -1) * 0.4 + 0.5
    return (rgb * 255).round().astype(np.uint8)


def write_llff(root: Path, num_poses: int = 5, num_images: int = 5, folders=("images",), full_size=(24, 32),
               focal: float = 30.0) -> Path:
    """A small LLFF folder: poses in the raw convention, smooth images in each of ``folders``."""
    root.mkdir(parents=True, exist_ok=True)
    poses = opengl_to_llff(synthetic_camera_poses(num_poses))
    hwf = np.broadcast_to(np.array([[full_size[0]], [full_size[1]], [focal]]), (num_poses, 3, 1))
    rows = np.concatenate([np.concatenate([poses, hwf], -1).reshape(num_poses, 15),
                           np.tile([[2.0, 8.0]], (num_poses, 1))], -1)
    np.save(root / "poses_bounds.npy", rows)
    for name in folders:
        k = 1 if name == "images" else int(name.split("_")[1])
        (root / name).mkdir()
        for i in range(num_images):
            Image.fromarray(smooth_rgb(full_size[0] // k, full_size[1] // k, i)).save(root / name / f"im{i:02d}.png")
    return root


class TestBadInput:
    def test_missing_datadir(self, tmp_path):
        with pytest.raises(DataError, match=r"nowhere not found.*data/README.md"):
            load_llff(tmp_path / "nowhere", 4)

    def test_missing_poses_bounds(self, tmp_path):
        (tmp_path / "scene" / "images_4").mkdir(parents=True)
        with pytest.raises(DataError, match=r"poses_bounds.npy not found.*data/README.md"):
            load_llff(tmp_path / "scene", 4)

    def test_bad_poses_bounds_shape(self, tmp_path):
        root = write_llff(tmp_path / "scene")
        np.save(root / "poses_bounds.npy", np.zeros((5, 15)))
        with pytest.raises(DataError, match=r"shape \(5, 15\).*\(N, 17\)"):
            load_llff(root, 1)

    def test_count_mismatch(self, tmp_path):
        root = write_llff(tmp_path / "scene", num_poses=5, num_images=4)
        with pytest.raises(DataError, match=r"images holds 4 images .* has 5 poses"):
            load_llff(root, 1)

    def test_missing_images_k_names_the_flag(self, tmp_path):
        root = write_llff(tmp_path / "scene")
        with pytest.raises(DataError, match=r"images_2 not found \(image folders in .*: images\).*llff_make_images"):
            load_llff(root, 2)
        assert not (root / "images_2").exists()

    def test_make_missing_creates_it_once_from_images(self, tmp_path):
        root = write_llff(tmp_path / "scene")
        scene = load_llff(root, 2, make_missing=True)
        assert scene.images.shape == (5, 12, 16, 3) and scene.focal == pytest.approx(15.0)
        assert any("created" in note and "images_2" in note for note in scene.notes)
        assert sorted(p.name for p in (root / "images_2").iterdir()) == [f"im{i:02d}.png" for i in range(5)]
        full = load_llff(root, 1).images
        assert np.abs(full.reshape(5, 12, 2, 16, 2, 3).mean(axis=(2, 4)) - scene.images).mean() < 0.02
        mtime = (root / "images_2" / "im00.png").stat().st_mtime_ns
        again = load_llff(root, 2, make_missing=True)
        assert again.notes == [] and (root / "images_2" / "im00.png").stat().st_mtime_ns == mtime
        assert not [p for p in root.iterdir() if "partial" in p.name]

    def test_make_missing_from_the_nearest_finer_folder(self, tmp_path):
        root = write_llff(tmp_path / "scene", folders=("images_2",))
        scene = load_llff(root, 4, make_missing=True)
        assert scene.images.shape == (5, 6, 8, 3) and "images_2" in scene.notes[0]

    def test_make_missing_without_a_source(self, tmp_path):
        root = write_llff(tmp_path / "scene", folders=("images_4",))
        with pytest.raises(DataError, match=r"cannot make .*images_2.*has images_4"):
            load_llff(root, 2, make_missing=True)

    def test_corrupt_png(self, tmp_path):
        root = write_llff(tmp_path / "scene")
        (root / "images" / "im02.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
        with pytest.raises(DataError, match=r"cannot read image .*im02.png"):
            load_llff(root, 1)

    def test_images_of_different_sizes(self, tmp_path):
        root = write_llff(tmp_path / "scene")
        Image.fromarray(smooth_rgb(20, 32, 0)).save(root / "images" / "im03.png")
        with pytest.raises(DataError, match=r"im03.png is 32x20 but im00.png is 32x24"):
            load_llff(root, 1)

    def test_images_that_do_not_fit_hwf(self, tmp_path):
        root = write_llff(tmp_path / "scene", full_size=(24, 32))
        np.save(root / "poses_bounds.npy", np.load(root / "poses_bounds.npy") * np.r_[np.ones(4), 2, np.ones(12)])
        with pytest.raises(DataError, match="focal length would not fit"):
            load_llff(root, 1)

    def test_llffhold_leaving_no_training_view(self, tmp_path):
        scene = load_llff(write_llff(tmp_path / "scene"), 1)
        with pytest.raises(ConfigError, match=r"llffhold = 1 holds out all 5 views"):
            scene.split(1)

    def test_bad_factor(self, tmp_path):
        with pytest.raises(ConfigError, match="llff_factor"):
            load_llff(write_llff(tmp_path / "scene"), 0)


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    return make_synthetic_scene(synthetic_scene_path(tmp_path_factory.mktemp("run") / "data"))


class TestSyntheticScene:
    def test_layout(self, synthetic_dir):
        assert synthetic_dir.name == "synthetic_planes" and is_complete(synthetic_dir)
        assert sorted(p.name for p in synthetic_dir.iterdir()) == [
            "images", "images_2", "images_4", "poses_bounds.npy", MANIFEST_FILE]

    @pytest.mark.parametrize("factor, shape", [(1, (20, 120, 160, 3)), (2, (20, 60, 80, 3)), (4, (20, 30, 40, 3))])
    def test_loads_at_every_factor(self, synthetic_dir, factor, shape):
        scene = load_llff(synthetic_dir, factor)
        assert scene.images.shape == shape
        assert scene.focal == pytest.approx(synthetic_focal(160, 50.0) / factor, rel=1e-6)
        assert scene.bounds.min() == pytest.approx(1 / 0.75, rel=1e-6)

    def test_field_of_view(self, synthetic_dir):
        scene = load_llff(synthetic_dir, 1)
        assert np.degrees(2 * np.arctan(scene.width / 2 / scene.focal)) == pytest.approx(50.0, rel=1e-5)

    def test_poses_match_the_generator(self, synthetic_dir):
        scene = load_llff(synthetic_dir, 2)
        assert_same_rigid_frame(scene.poses, synthetic_camera_poses(20), scene.scale, atol=2e-6)

    def test_bounds_are_the_plane_depths(self, synthetic_dir):
        """near: the disc's nearest corner (depth is linear on a plane, the disc is the nearest and
        fully seen); far: the background behind the image corners (1 / depth is affine there)."""
        bounds = np.load(synthetic_dir / "poses_bounds.npy")[:, 15:]
        planes = {p.name: p for p in synthetic_planes()}
        disc_corners = planes["disc"].point(np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1]))
        background = planes["background"]
        normal = np.cross(background.right, background.up)
        width, height, focal = 160, 120, synthetic_focal(160, 50.0)
        corner_x = np.array([0.25, width - 0.25]) - width / 2  # outermost of the 2x2 samples
        corner_y = np.array([0.25, height - 0.25]) - height / 2
        for view, pose in enumerate(synthetic_camera_poses(20)):
            near = -((disc_corners - pose[:, 3]) @ pose[:, 2]).max()
            assert near <= bounds[view, 0] < near + 0.01
            directions = [pose[:, :3] @ [x / focal, -y / focal, -1] for x in corner_x for y in corner_y]
            far = max((background.centre - pose[:, 3]) @ normal / (d @ normal) for d in directions)
            assert bounds[view, 1] == pytest.approx(far, rel=1e-9)

    def test_projected_texture_points_have_the_texture_colour(self, synthetic_dir):
        """World points on the checker and the disc, carried into the loaded frame through view 0
        and projected with each loaded pose and focal, land on pixels of the texture's colour
        (where no other plane hides them)."""
        scene = load_llff(synthetic_dir, 1)
        generator_poses = synthetic_camera_poses(20)
        generator_pose0 = generator_poses[0]
        planes = {p.name: p for p in synthetic_planes()}
        s, t = np.meshgrid((np.arange(6) + 0.5) / 6, (np.arange(6) + 0.5) / 6)
        samples = [(planes["checker"], s.ravel(), t.ravel()),
                   (planes["disc"], np.array([0.1, 0.9, 0.1, 0.9]), np.array([0.15, 0.15, 0.85, 0.85]))]
        errors = []
        for plane, ss, ts in samples:
            world = plane.point(ss, ts)
            in_camera0 = (world - generator_pose0[:, 3]) @ generator_pose0[:, :3]
            loaded = in_camera0 * scene.scale @ scene.poses[0, :, :3].T + scene.poses[0, :, 3]
            for view in range(20):
                pose = scene.poses[view].astype(float)
                camera = (loaded - pose[:, 3]) @ pose[:, :3]
                u = scene.width / 2 + scene.focal * camera[:, 0] / -camera[:, 2]
                v = scene.height / 2 - scene.focal * camera[:, 1] / -camera[:, 2]
                to_point = world - generator_poses[view, :, 3]
                hidden = [(other.intersect(generator_poses[view, :, 3], to_point)[0] < 1 - 1e-9)
                          for other in planes.values() if other is not plane]
                inside = (u > 2) & (u < scene.width - 2) & (v > 2) & (v < scene.height - 2)
                for k in np.flatnonzero(inside & ~np.any(hidden, axis=0)):
                    rendered = bilinear(scene.images[view], u[k] - 0.5, v[k] - 0.5)  # pixel centres at i + 0.5
                    errors.append(np.abs(rendered - plane.colour(ss[k], ts[k])).max())
        assert len(errors) > 500
        assert max(errors) < 0.004  # 8-bit rounding; without the half-pixel offset it is 0.007

    def test_images_have_structure_and_parallax(self, synthetic_dir):
        scene = load_llff(synthetic_dir, 1)
        assert scene.images.reshape(20, -1, 3).std(axis=1).min() > 0.1
        differences = np.abs(scene.images[0] - scene.images[1:]).mean(axis=(1, 2, 3))
        assert differences.min() > 0.02

    def test_second_call_rewrites_nothing(self, synthetic_dir):
        files = sorted(p for p in synthetic_dir.rglob("*") if p.is_file())
        before = [p.stat().st_mtime_ns for p in files]
        assert make_synthetic_scene(synthetic_dir) == synthetic_dir
        assert [p.stat().st_mtime_ns for p in files] == before

    def test_deterministic(self, synthetic_dir, tmp_path):
        other = make_synthetic_scene(tmp_path / "again")
        for path in sorted(p for p in synthetic_dir.rglob("*") if p.is_file()):
            assert (other / path.relative_to(synthetic_dir)).read_bytes() == path.read_bytes(), path.name

    @pytest.mark.parametrize("damage", ["delete image", "truncate image", "delete manifest", "stray image"])
    def test_incomplete_folder_is_rebuilt(self, tmp_path, damage):
        small = dict(width=80, height=60, num_views=4, factors=(2,))
        folder = make_synthetic_scene(tmp_path / "scene", **small)
        image = folder / "images_2" / "image003.png"
        if damage == "delete image":
            image.unlink()
        elif damage == "truncate image":
            image.write_bytes(image.read_bytes()[:100])
        elif damage == "delete manifest":
            (folder / MANIFEST_FILE).unlink()
        else:
            (folder / "images" / "image999.png").write_bytes(image.read_bytes())
        assert not is_complete(folder, **small)
        make_synthetic_scene(folder, **small)
        assert is_complete(folder, **small)
        assert load_llff(folder, 2).images.shape == (4, 30, 40, 3)

    def test_other_parameters_rebuild(self, tmp_path):
        folder = make_synthetic_scene(tmp_path / "scene", width=80, height=60, num_views=4, factors=(2,))
        assert not is_complete(folder)
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
        assert manifest["parameters"]["width"] == 80 and len(manifest["files"]) == 4 * 2 + 1

    def test_foreign_files_are_not_deleted(self, tmp_path):
        folder = tmp_path / "scene"
        folder.mkdir()
        (folder / "notes.txt").write_text("mine")
        with pytest.raises(DataError, match=r"notes.txt"):
            make_synthetic_scene(folder)
        assert (folder / "notes.txt").read_text() == "mine"

    def test_bad_parameters(self, tmp_path):
        with pytest.raises(ConfigError, match="unknown synthetic scene parameter"):
            make_synthetic_scene(tmp_path / "s", colour=True)
        with pytest.raises(ConfigError, match="divide width"):
            make_synthetic_scene(tmp_path / "s", factors=(3,))
        assert set(SYNTHETIC_SCENE_DEFAULTS) >= {"width", "height", "num_views", "factors"}

    def test_load_scene_synthetic(self, tmp_path):
        scene = load_scene("synthetic", 4, tmp_path / "data")
        assert scene.images.shape == (20, 30, 40, 3)
        assert is_complete(tmp_path / "data" / "synthetic_planes")
        with pytest.raises(ConfigError, match="synthetic"):
            load_scene("synthetic", 4)
