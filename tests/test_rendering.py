"""Tests for sobolev_inr.rendering: rays, NDC, compositing and the renderer, with their tangents.

The tangents (d/dx, d/dy of each ray and rendered colour per pixel step) are checked against
autograd and central finite differences; the whole renderer against an independent re-statement
of the original code's path (pixel coordinates as the autograd leaf, rays, NDC, stratified
samples, the network, raw2outputs, then one ``autograd.grad`` per colour channel).
relative error = max |ours - reference| / max |reference|.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian

from sobolev_inr.models import MLP
from sobolev_inr.rendering import (NDCSpace, Rays, aligned_pixel_offset, composite, image_pixels, image_rays,
                                   pixel_rays, render_image, render_rays, rescale_intrinsics, sample_along_rays,
                                   to_ndc)

HEIGHT, WIDTH, FOCAL = 24, 32, 28.0
NDC = NDCSpace(HEIGHT, WIDTH, FOCAL, near=1.0)
NUM_RAYS, NUM_SAMPLES = 5, 12
NOISE_STD = 1.0


def relative_error(actual: torch.Tensor, reference: torch.Tensor) -> float:
    err = (actual - reference).abs().max().item()
    peak = reference.abs().max().item()
    return err / peak if peak > 0 else err


def random_pose(generator: torch.Generator, dtype=torch.float64, batch=None) -> torch.Tensor:
    """Forward-facing camera-to-world (3, 4) or (batch, 3, 4): rotation under 0.3 rad, centre within 0.2."""
    shape = () if batch is None else (batch,)
    axis_angle = (torch.rand(shape + (3,), generator=generator, dtype=dtype) * 2 - 1) * 0.3 / math.sqrt(3)
    skew = torch.zeros(shape + (3, 3), dtype=dtype)
    skew[..., 0, 1], skew[..., 0, 2], skew[..., 1, 2] = -axis_angle[..., 2], axis_angle[..., 1], -axis_angle[..., 0]
    skew = skew - skew.transpose(-1, -2)
    rotation = torch.linalg.matrix_exp(skew)
    centre = (torch.rand(shape + (3, 1), generator=generator, dtype=dtype) * 2 - 1) * 0.2
    return torch.cat((rotation, centre), -1)


def random_pixels(generator: torch.Generator, n=NUM_RAYS, dtype=torch.float64) -> torch.Tensor:
    return torch.rand(n, 2, generator=generator, dtype=dtype) * torch.tensor([WIDTH - 1.0, HEIGHT - 1.0], dtype=dtype)


def tiny_nerf(dtype=torch.float64, seed=0) -> MLP:
    torch.manual_seed(seed)
    return MLP(3, 4, ["relu"] * 3, hidden_features=32, encoding="positional", num_frequencies=4).to(dtype)


def tiny_scene(seed, dtype=torch.float64, batched=True):
    """(model, c2w, pixels, generator): a tiny NeRF, a random pose (one per ray if ``batched``), random pixels."""
    gen = torch.Generator().manual_seed(seed)
    model = tiny_nerf(dtype, seed)
    c2w = random_pose(gen, dtype, batch=NUM_RAYS if batched else None)
    return model, c2w, random_pixels(gen, dtype=dtype), gen


def value_field(model):
    return lambda points, tangents: (model(points), None)


def jet_field(model):
    return lambda points, tangents: model.jet(points, tangents)[:2]


# ----------------------------------------------------------------------------------------------
# The reference: the original code's rendering path, written out in plain autograd-able torch.

def reference_rgb(model, pixels, c2w, near, far, lindisp, offsets, noise, white_background=False):
    """rgb (R, 3) as the original computes it from pixels (R, 2): rays, NDC, samples, raw2outputs."""
    x, y = pixels[:, 0], pixels[:, 1]
    camera = torch.stack([(x - WIDTH / 2) / FOCAL, -(y - HEIGHT / 2) / FOCAL, -torch.ones_like(x)], -1)
    rays_d = torch.sum(camera[..., None, :] * c2w[..., :3, :3], -1)
    rays_o = c2w[..., :3, -1].expand(rays_d.shape)
    shift = -(1.0 + rays_o[:, 2]) / rays_d[:, 2]
    rays_o = rays_o + shift[:, None] * rays_d
    o_ndc = torch.stack([-1.0 / (WIDTH / (2.0 * FOCAL)) * rays_o[:, 0] / rays_o[:, 2],
                         -1.0 / (HEIGHT / (2.0 * FOCAL)) * rays_o[:, 1] / rays_o[:, 2],
                         1.0 + 2.0 / rays_o[:, 2]], -1)
    d_ndc = torch.stack([-1.0 / (WIDTH / (2.0 * FOCAL)) * (rays_d[:, 0] / rays_d[:, 2] - rays_o[:, 0] / rays_o[:, 2]),
                         -1.0 / (HEIGHT / (2.0 * FOCAL)) * (rays_d[:, 1] / rays_d[:, 2] - rays_o[:, 1] / rays_o[:, 2]),
                         -2.0 / rays_o[:, 2]], -1)
    fractions = torch.linspace(0.0, 1.0, NUM_SAMPLES, dtype=pixels.dtype)
    if lindisp:
        z = 1.0 / (1.0 / near * (1 - fractions) + 1.0 / far * fractions)
    else:
        z = near * (1 - fractions) + far * fractions
    z = z.expand(pixels.shape[0], NUM_SAMPLES)
    mids = 0.5 * (z[:, 1:] + z[:, :-1])
    upper, lower = torch.cat([mids, z[:, -1:]], -1), torch.cat([z[:, :1], mids], -1)
    z = lower + (upper - lower) * offsets
    points = o_ndc[:, None, :] + d_ndc[:, None, :] * z[:, :, None]
    raw = model(points.reshape(-1, 3)).reshape(pixels.shape[0], NUM_SAMPLES, 4)
    dists = torch.cat([z[:, 1:] - z[:, :-1], torch.full_like(z[:, :1], 1e10)], -1)
    dists = dists * torch.norm(d_ndc[:, None, :], dim=-1)
    alpha = 1.0 - torch.exp(-torch.relu(raw[..., 3] + noise) * dists)
    transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha + 1e-10], -1), -1)[:, :-1]
    weights = alpha * transmittance
    rgb = torch.sum(weights[..., None] * torch.sigmoid(raw[..., :3]), -2)
    return rgb + (1.0 - weights.sum(-1)[:, None]) if white_background else rgb


def reference_tangents(model, pixels, c2w, near, far, lindisp, offsets, noise, white_background=False):
    """(rgb, tangents (2, R, 3)): one autograd.grad per colour channel with create_graph, as the original."""
    pixels = pixels.detach().clone().requires_grad_(True)
    rgb = reference_rgb(model, pixels, c2w, near, far, lindisp, offsets, noise, white_background)
    per_channel = [torch.autograd.grad(rgb[:, c], pixels, torch.ones_like(rgb[:, c]), create_graph=True)[0]
                   for c in range(3)]  # each (R, 2): (d/dx, d/dy)
    return rgb, torch.stack(per_channel, -1).permute(1, 0, 2)


def draws(seed, dtype):
    """The random numbers render_rays draws from a generator seeded ``seed``: offsets, then noise."""
    generator = torch.Generator().manual_seed(seed)
    offsets = torch.rand((NUM_RAYS, NUM_SAMPLES), generator=generator, dtype=dtype)
    noise = torch.randn((NUM_RAYS, NUM_SAMPLES), generator=generator, dtype=dtype) * NOISE_STD
    return offsets, noise


def ours(model, pixels, c2w, near, far, lindisp, seed, with_tangents=True, white_background=False, chunk=None):
    rays = pixel_rays(pixels, c2w, FOCAL, HEIGHT, WIDTH, with_tangents=with_tangents)
    return render_rays(jet_field(model) if with_tangents else value_field(model), rays, NUM_SAMPLES, near, far,
                       ndc=NDC, perturb=True, raw_noise_std=NOISE_STD, lindisp=lindisp,
                       white_background=white_background, with_tangents=with_tangents,
                       generator=torch.Generator().manual_seed(seed), chunk=chunk)


SAMPLING = [pytest.param(0.0, 1.0, False, id="linear"), pytest.param(0.1, 1.0, True, id="lindisp")]


# ----------------------------------------------------------------------------------------------

class TestPixelRays:
    def test_identity_pose_hand_cases(self):
        # Principal point (W/2, H/2), no half-pixel offset: the centre pixel looks down -z; a pixel
        # f to the right looks 45 degrees right, a pixel f down looks 45 degrees down (camera y is up).
        pixels = torch.tensor([[WIDTH / 2, HEIGHT / 2], [WIDTH / 2 + FOCAL, HEIGHT / 2],
                               [WIDTH / 2, HEIGHT / 2 + FOCAL]], dtype=torch.float64)
        rays = pixel_rays(pixels, torch.eye(3, 4, dtype=torch.float64), FOCAL, HEIGHT, WIDTH)
        expected = torch.tensor([[0.0, 0.0, -1.0], [1.0, 0.0, -1.0], [0.0, -1.0, -1.0]], dtype=torch.float64)
        torch.testing.assert_close(rays.directions, expected, rtol=0, atol=1e-15)
        torch.testing.assert_close(rays.origins, torch.zeros(3, 3, dtype=torch.float64))
        assert rays.origin_tangents is None
        per_axis = torch.tensor([[1 / FOCAL, 0, 0], [0, -1 / FOCAL, 0]], dtype=torch.float64)
        torch.testing.assert_close(rays.direction_tangents, per_axis[:, None, :].expand(2, 3, 3))

    def test_rotated_pose(self):
        # 90 degrees about y: the camera's back axis (+z) is world +x, so it looks along world -x.
        c2w = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 2.0], [-1.0, 0.0, 0.0, 3.0]], dtype=torch.float64)
        pixel = torch.tensor([[WIDTH / 2 + FOCAL, HEIGHT / 2]], dtype=torch.float64)
        rays = pixel_rays(pixel, c2w, FOCAL, HEIGHT, WIDTH)
        torch.testing.assert_close(rays.directions, torch.tensor([[-1.0, 0.0, -1.0]], dtype=torch.float64))
        torch.testing.assert_close(rays.origins, torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64))

    def test_per_ray_poses_equal_one_pose_each(self):
        gen = torch.Generator().manual_seed(1)
        poses, pixels = random_pose(gen, batch=NUM_RAYS), random_pixels(gen)
        batched = pixel_rays(pixels, poses, FOCAL, HEIGHT, WIDTH)
        for n in range(NUM_RAYS):
            single = pixel_rays(pixels[n:n + 1], poses[n], FOCAL, HEIGHT, WIDTH)
            torch.testing.assert_close(batched.directions[n:n + 1], single.directions)
            torch.testing.assert_close(batched.origins[n:n + 1], single.origins)
            torch.testing.assert_close(batched.direction_tangents[:, n:n + 1], single.direction_tangents)

    @pytest.mark.parametrize("batched", [False, True], ids=["one-pose", "per-ray-poses"])
    def test_tangents_against_autograd_and_finite_differences(self, batched):
        gen = torch.Generator().manual_seed(2)
        c2w = random_pose(gen, batch=NUM_RAYS if batched else None)
        pixels = random_pixels(gen)
        rays = pixel_rays(pixels, c2w, FOCAL, HEIGHT, WIDTH)
        jac = jacobian(lambda p: pixel_rays(p, c2w, FOCAL, HEIGHT, WIDTH, with_tangents=False).directions, pixels)
        per_ray = torch.einsum("nind->dni", jac)  # (2, N, 3): d direction_n / d pixel_n
        torch.testing.assert_close(rays.direction_tangents, per_ray, rtol=1e-12, atol=1e-14)
        h = 1e-4
        for axis in range(2):
            step = torch.zeros_like(pixels)
            step[:, axis] = h
            fd = (pixel_rays(pixels + step, c2w, FOCAL, HEIGHT, WIDTH).directions
                  - pixel_rays(pixels - step, c2w, FOCAL, HEIGHT, WIDTH).directions) / (2 * h)
            torch.testing.assert_close(rays.direction_tangents[axis], fd, rtol=1e-9, atol=1e-11)

    def test_bad_shapes_raise(self):
        with pytest.raises(ValueError, match="pixels must be"):
            pixel_rays(torch.zeros(4, 3), torch.eye(3, 4), FOCAL, HEIGHT, WIDTH)
        with pytest.raises(ValueError, match="c2w must be"):
            pixel_rays(torch.zeros(4, 2), torch.eye(3, 4).expand(3, 3, 4), FOCAL, HEIGHT, WIDTH)


class TestNDC:
    def test_optical_axis_from_origin(self):
        # Shift to z = -1: o' = (0, 0, -1); o_ndc = (0, 0, 1 + 2 / -1) = (0, 0, -1);
        # d_ndc = (0, 0, -2 / -1) = (0, 0, 2): t in [0, 1] spans NDC z from -1 to 1.
        axis = torch.tensor([[0.0, 0.0, -1.0]], dtype=torch.float64)
        rays = to_ndc(Rays(torch.zeros(1, 3, dtype=torch.float64), axis), HEIGHT, WIDTH, FOCAL, near=1.0)
        torch.testing.assert_close(rays.origins, torch.tensor([[0.0, 0.0, -1.0]], dtype=torch.float64))
        torch.testing.assert_close(rays.directions, torch.tensor([[0.0, 0.0, 2.0]], dtype=torch.float64))
        assert rays.num_tangents is None

    def test_ray_parallel_to_the_axis_converges_at_infinity(self):
        # o = (a, b, c), d = (0, 0, -1): o' = (a, b, -1); o_ndc = (2fa/W, 2fb/H, -1),
        # d_ndc = (-2fa/W, -2fb/H, 2), so o_ndc + d_ndc = (0, 0, 1): the vanishing point.
        a, b, c = 0.3, -0.2, 0.5
        axis = torch.tensor([[0.0, 0.0, -1.0]], dtype=torch.float64)
        rays = to_ndc(Rays(torch.tensor([[a, b, c]], dtype=torch.float64), axis), HEIGHT, WIDTH, FOCAL)
        sx, sy = 2 * FOCAL / WIDTH, 2 * FOCAL / HEIGHT
        torch.testing.assert_close(rays.origins, torch.tensor([[sx * a, sy * b, -1.0]], dtype=torch.float64))
        torch.testing.assert_close(rays.directions, torch.tensor([[-sx * a, -sy * b, 2.0]], dtype=torch.float64))

    def test_pixel_rays_from_the_origin(self):
        # Identity pose: o' = d = ((x - W/2)/f, -(y - H/2)/f, -1), so o_ndc = (2(x - W/2)/W,
        # -2(y - H/2)/H, -1), d_ndc = (0, 0, 2); per pixel step o_ndc moves (2/W, 0, 0) and (0, -2/H, 0).
        pixels = random_pixels(torch.Generator().manual_seed(3))
        identity = torch.eye(3, 4, dtype=torch.float64)
        rays = to_ndc(pixel_rays(pixels, identity, FOCAL, HEIGHT, WIDTH), HEIGHT, WIDTH, FOCAL)
        x, y = pixels.unbind(-1)
        expected = torch.stack((2 * (x - WIDTH / 2) / WIDTH, -2 * (y - HEIGHT / 2) / HEIGHT, -torch.ones_like(x)), -1)
        torch.testing.assert_close(rays.origins, expected)
        along_z = torch.tensor([0.0, 0.0, 2.0], dtype=torch.float64).expand(NUM_RAYS, 3)
        torch.testing.assert_close(rays.directions, along_z)
        per_axis = torch.tensor([[2 / WIDTH, 0, 0], [0, -2 / HEIGHT, 0]], dtype=torch.float64)
        torch.testing.assert_close(rays.origin_tangents, per_axis[:, None].expand(2, NUM_RAYS, 3))
        assert rays.direction_tangents.abs().max() < 1e-15

    @pytest.mark.parametrize("seed", [4, 5, 6])
    def test_pixel_tangents_against_autograd_and_finite_differences(self, seed):
        gen = torch.Generator().manual_seed(seed)
        c2w, pixels = random_pose(gen, batch=NUM_RAYS), random_pixels(gen)

        def ndc_of(p, with_tangents=False):
            return to_ndc(pixel_rays(p, c2w, FOCAL, HEIGHT, WIDTH, with_tangents), HEIGHT, WIDTH, FOCAL, near=1.0)

        rays = ndc_of(pixels, True)
        for name, tangents in (("origins", rays.origin_tangents), ("directions", rays.direction_tangents)):
            jac = jacobian(lambda p: getattr(ndc_of(p), name), pixels)
            torch.testing.assert_close(tangents, torch.einsum("nind->dni", jac), rtol=1e-10, atol=1e-12)
            h = 1e-5
            for axis in range(2):
                step = torch.zeros_like(pixels)
                step[:, axis] = h
                fd = (getattr(ndc_of(pixels + step), name) - getattr(ndc_of(pixels - step), name)) / (2 * h)
                torch.testing.assert_close(tangents[axis], fd, rtol=1e-7, atol=1e-9)

    def test_general_tangents_against_jvp(self):
        # Rays whose origins move too (not pinhole pixels): to_ndc is exact for any tangents.
        gen = torch.Generator().manual_seed(7)
        origins = (torch.rand(4, 3, generator=gen, dtype=torch.float64) - 0.5) * 0.4
        directions = torch.rand(4, 3, generator=gen, dtype=torch.float64) - 0.5
        directions[:, 2] = -1.0 - torch.rand(4, generator=gen, dtype=torch.float64)
        d_origins = torch.randn(2, 4, 3, generator=gen, dtype=torch.float64)
        d_directions = torch.randn(2, 4, 3, generator=gen, dtype=torch.float64)
        rays = to_ndc(Rays(origins, directions, d_origins, d_directions), HEIGHT, WIDTH, FOCAL, near=1.3)
        for k in range(2):
            (o, d), (do, dd) = torch.func.jvp(
                lambda o, d: (lambda r: (r.origins, r.directions))(to_ndc(Rays(o, d), HEIGHT, WIDTH, FOCAL, near=1.3)),
                (origins, directions), (d_origins[k], d_directions[k]))
            torch.testing.assert_close(rays.origin_tangents[k], do, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(rays.direction_tangents[k], dd, rtol=1e-12, atol=1e-12)

    def test_tangents_stay_differentiable_in_the_pixels(self):
        gen = torch.Generator().manual_seed(8)
        c2w, pixels = random_pose(gen, batch=3), random_pixels(gen, n=3).requires_grad_(True)

        def ndc_tangents(p):
            rays = to_ndc(pixel_rays(p, c2w, FOCAL, HEIGHT, WIDTH), HEIGHT, WIDTH, FOCAL)
            return rays.origin_tangents, rays.direction_tangents

        assert torch.autograd.gradcheck(ndc_tangents, (pixels,))


class TestImageRaysAndResolution:
    def test_image_pixels_are_row_major(self):
        pixels = image_pixels(3, 4)
        assert pixels.shape == (12, 2)
        assert pixels[4 * 2 + 1].tolist() == [1.0, 2.0]  # row 2, column 1
        assert pixels[:4, 1].eq(0).all() and pixels[:4, 0].tolist() == [0.0, 1.0, 2.0, 3.0]

    def test_image_rays_equal_pixel_rays(self):
        c2w = random_pose(torch.Generator().manual_seed(9))
        rays = image_rays(c2w, FOCAL, HEIGHT, WIDTH, with_tangents=True)
        row, col = 5, 7
        single = pixel_rays(torch.tensor([[float(col), float(row)]], dtype=torch.float64), c2w, FOCAL, HEIGHT, WIDTH)
        torch.testing.assert_close(rays.directions[row * WIDTH + col], single.directions[0])
        torch.testing.assert_close(rays.direction_tangents[:, row * WIDTH + col], single.direction_tangents[:, 0])

    def test_rescale_intrinsics(self):
        assert rescale_intrinsics(756, 1008, 815.0, 4) == (189, 252, 815.0 / 4)
        assert rescale_intrinsics(756, 1008, 815.0, 0.25) == (3024, 4032, 815.0 * 4)
        assert rescale_intrinsics(756, 1008, 815.0, 8) == (94, 126, 815.0 / 8)  # floored as nerf-pytorch
        with pytest.raises(ValueError, match="render_factor"):
            rescale_intrinsics(756, 1008, 815.0, 0)

    @pytest.mark.parametrize("render_factor", [2, 4, 0.5])
    def test_rescaled_rays_keep_the_field_of_view(self, render_factor):
        # The same continuous image position gives the same ray at every resolution: with the
        # aligned offset, pixel x' of the rescaled view casts the training ray at position
        # (x' + 0.5) render_factor - 0.5 (the centre of the area it covers, training convention).
        height, width, focal = 16, 24, 20.0
        c2w = random_pose(torch.Generator().manual_seed(10))
        new_h, new_w, new_f = rescale_intrinsics(height, width, focal, render_factor)
        rays = image_rays(c2w, new_f, new_h, new_w, offset=aligned_pixel_offset(render_factor))
        positions = (image_pixels(new_h, new_w, dtype=torch.float64) + 0.5) * render_factor - 0.5
        expected = pixel_rays(positions, c2w, focal, height, width, with_tangents=False)
        torch.testing.assert_close(rays.directions, expected.directions)
        # Without the offset (nerf-pytorch) the view shifts by 0.5 (1 - 1 / render_factor) new pixels.
        plain = image_rays(c2w, new_f, new_h, new_w)
        assert (plain.directions - expected.directions).abs().max() > 1e-3


class TestSampling:
    def test_without_perturbation(self):
        t = sample_along_rays(3, 5, 2.0, 6.0, perturb=False, dtype=torch.float64)
        torch.testing.assert_close(t, torch.tensor([2.0, 3.0, 4.0, 5.0, 6.0], dtype=torch.float64).expand(3, 5))
        disp = sample_along_rays(1, 3, 1.0, 4.0, lindisp=True, perturb=False, dtype=torch.float64)
        torch.testing.assert_close(1.0 / disp, torch.tensor([[1.0, 0.625, 0.25]], dtype=torch.float64))

    def test_stratified_offsets(self):
        # Bins between midpoints: [0, .125), [.125, .375), [.375, .625), [.625, .875), [.875, 1].
        offsets = torch.tensor([[0.0, 0.5, 0.5, 0.5, 1.0]], dtype=torch.float64)
        t = sample_along_rays(1, 5, 0.0, 1.0, offsets=offsets, dtype=torch.float64)
        torch.testing.assert_close(t, torch.tensor([[0.0, 0.25, 0.5, 0.75, 1.0]], dtype=torch.float64))
        drawn = sample_along_rays(64, 5, 0.0, 1.0, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        edges = torch.tensor([0.0, 0.125, 0.375, 0.625, 0.875, 1.0], dtype=torch.float64)
        assert ((drawn >= edges[:-1]) & (drawn <= edges[1:])).all()
        again = sample_along_rays(64, 5, 0.0, 1.0, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        assert torch.equal(drawn, again)

    def test_bad_arguments_raise(self):
        with pytest.raises(ValueError, match="Generator or offsets"):
            sample_along_rays(2, 4, 0.0, 1.0)
        with pytest.raises(ValueError, match="near > 0"):
            sample_along_rays(2, 4, 0.0, 1.0, lindisp=True, perturb=False)


def random_raw(gen, rays=4, samples=10, dtype=torch.float64):
    raw = torch.randn(rays, samples, 4, generator=gen, dtype=dtype)
    t_vals = torch.sort(torch.rand(rays, samples, generator=gen, dtype=dtype), -1).values
    norm = 1.0 + torch.rand(rays, generator=gen, dtype=dtype)
    return raw, t_vals, norm


class TestComposite:
    def test_weights_are_a_partition_of_at_most_one(self):
        raw, t_vals, norm = random_raw(torch.Generator().manual_seed(11), rays=64)
        raw[..., 3] *= 20
        out = composite(raw, t_vals, norm)
        # w_k = T_k - T_{k+1} + 1e-10 T_k, so sum w = 1 - T_S + 1e-10 sum T_k <= 1 + 1e-10 S:
        # nerf-pytorch's 1e-10 lets acc exceed 1 by up to S * 1e-10 (it does here).
        assert (out.weights >= 0).all() and (out.acc <= 1 + 10 * 1e-10).all()
        torch.testing.assert_close(out.acc, out.weights.sum(-1))
        assert torch.isfinite(out.disparity).all()

    def test_opaque_first_sample_gives_its_colour(self):
        raw, t_vals, norm = random_raw(torch.Generator().manual_seed(12))
        raw[:, 0, 3] = 1e4
        out = composite(raw, t_vals, norm)
        torch.testing.assert_close(out.rgb, torch.sigmoid(raw[:, 0, :3]))
        torch.testing.assert_close(out.acc, torch.ones(4, dtype=torch.float64))
        torch.testing.assert_close(out.depth, t_vals[:, 0])

    def test_empty_ray(self):
        raw, t_vals, norm = random_raw(torch.Generator().manual_seed(13))
        raw[..., 3] = -1.0
        out = composite(raw, t_vals, norm, white_background=True)
        torch.testing.assert_close(out.rgb, torch.ones(4, 3, dtype=torch.float64))
        assert (out.acc == 0).all() and (out.disparity == 1e10).all()  # nerf-pytorch: 0 / 0 = NaN here

    @pytest.mark.parametrize("white_background", [False, True], ids=["black", "white"])
    @pytest.mark.parametrize("last", ["opaque", "faint", "empty"])
    def test_tangents_against_jvp(self, white_background, last):
        gen = torch.Generator().manual_seed(14)
        raw, t_vals, norm = random_raw(gen)
        noise = torch.randn(4, 10, generator=gen, dtype=torch.float64)
        # The 1e10 last interval: opaque where sigma > 0; a faint sigma (1e-10) gives x ~ 1 and a
        # tangent of order 1e10; an empty last sample (relu inactive) gives none.
        raw[:, -1, 3] = {"opaque": 2.0, "faint": 1e-10, "empty": -5.0}[last] - noise[:, -1]
        density = raw[..., 3] + noise
        assert (density > 0).any() and (density < 0).any()  # relu active and inactive samples
        raw_tangents = torch.randn(2, 4, 10, 4, generator=gen, dtype=torch.float64)
        norm_tangents = torch.randn(2, 4, generator=gen, dtype=torch.float64)
        out = composite(raw, t_vals, norm, raw_tangents, norm_tangents, noise, white_background)
        assert torch.isfinite(out.rgb_tangents).all()
        for k in range(2):
            rgb_of = lambda r, n: composite(r, t_vals, n, noise=noise, white_background=white_background).rgb
            _, expected = torch.func.jvp(rgb_of, (raw, norm), (raw_tangents[k], norm_tangents[k]))
            assert relative_error(out.rgb_tangents[k], expected) < 1e-10

    def test_tangents_without_direction_tangents(self):
        raw, t_vals, norm = random_raw(torch.Generator().manual_seed(15))
        raw_tangents = torch.randn(2, 4, 10, 4, dtype=torch.float64)
        with_zero = composite(raw, t_vals, norm, raw_tangents, torch.zeros(2, 4, dtype=torch.float64))
        torch.testing.assert_close(composite(raw, t_vals, norm, raw_tangents).rgb_tangents, with_zero.rgb_tangents)

    def test_tangents_are_differentiable(self):
        gen = torch.Generator().manual_seed(16)
        raw, t_vals, norm = random_raw(gen, rays=2, samples=5)
        raw[..., 3] += 0.5
        inputs = (raw.requires_grad_(), torch.randn(2, 2, 5, 4, generator=gen, dtype=torch.float64).requires_grad_(),
                  norm.requires_grad_(), torch.randn(2, 2, generator=gen, dtype=torch.float64).requires_grad_())
        assert torch.autograd.gradcheck(lambda r, rt, n, nt: composite(r, t_vals, n, rt, nt).rgb_tangents, inputs)


class TestRenderRays:
    @pytest.mark.parametrize("near,far,lindisp", SAMPLING)
    @pytest.mark.parametrize("seed", [20, 21, 22])
    def test_tangents_equal_per_channel_autograd_float32(self, near, far, lindisp, seed):
        model, c2w, pixels, _ = tiny_scene(seed, torch.float32)
        out = ours(model, pixels, c2w, near, far, lindisp, seed)
        rgb, expected = reference_tangents(model, pixels, c2w, near, far, lindisp, *draws(seed, torch.float32))
        assert relative_error(out.rgb, rgb) < 1e-5
        assert relative_error(out.rgb_tangents, expected) < 1e-5

    @pytest.mark.parametrize("near,far,lindisp", SAMPLING)
    def test_tangents_match_finite_differences_float64(self, near, far, lindisp):
        model, c2w, pixels, _ = tiny_scene(23, torch.float64, batched=False)
        out = ours(model, pixels, c2w, near, far, lindisp, seed=23)
        h = 1e-6  # pixel steps; the same draws every call make the renderer a deterministic function
        for axis in range(2):
            step = torch.zeros_like(pixels)
            step[:, axis] = h
            plus = ours(model, pixels + step, c2w, near, far, lindisp, seed=23, with_tangents=False).rgb
            minus = ours(model, pixels - step, c2w, near, far, lindisp, seed=23, with_tangents=False).rgb
            assert relative_error(out.rgb_tangents[axis], (plus - minus) / (2 * h)) < 1e-6

    def test_white_background_against_autograd(self):
        model, c2w, pixels, _ = tiny_scene(24, torch.float64)
        out = ours(model, pixels, c2w, 0.0, 1.0, False, seed=24, white_background=True)
        rgb, expected = reference_tangents(model, pixels, c2w, 0.0, 1.0, False, *draws(24, torch.float64), True)
        assert relative_error(out.rgb, rgb) < 1e-12
        assert relative_error(out.rgb_tangents, expected) < 1e-10

    @pytest.mark.parametrize("near,far,lindisp", SAMPLING)
    def test_weight_gradients_of_a_derivative_loss(self, near, far, lindisp):
        model, c2w, pixels, gen = tiny_scene(25, torch.float64)
        target = torch.randn(2, NUM_RAYS, 3, generator=gen, dtype=torch.float64) * 0.1
        params = list(model.parameters())
        ours_loss = ((ours(model, pixels, c2w, near, far, lindisp, seed=25).rgb_tangents - target) ** 2).sum()
        ours_grads = torch.autograd.grad(ours_loss, params)
        _, reference = reference_tangents(model, pixels, c2w, near, far, lindisp, *draws(25, torch.float64))
        reference_grads = torch.autograd.grad(((reference - target) ** 2).sum(), params)
        assert all(g.abs().max() > 0 for g in reference_grads)
        for mine, theirs in zip(ours_grads, reference_grads):
            assert relative_error(mine, theirs) < 1e-8

    def test_chunks_do_not_change_results(self):
        model, c2w, pixels, _ = tiny_scene(26, torch.float64)
        whole = ours(model, pixels, c2w, 0.0, 1.0, False, seed=26)
        chunked = ours(model, pixels, c2w, 0.0, 1.0, False, seed=26, chunk=2)
        for name in ("rgb", "rgb_tangents", "depth", "disparity", "acc"):
            torch.testing.assert_close(getattr(chunked, name), getattr(whole, name), rtol=1e-12, atol=1e-14)

    def test_values_alone_equal_values_with_tangents(self):
        model, c2w, pixels, _ = tiny_scene(27, torch.float64, batched=False)
        with_tangents = ours(model, pixels, c2w, 0.0, 1.0, False, seed=27)
        alone = ours(model, pixels, c2w, 0.0, 1.0, False, seed=27, with_tangents=False)
        assert alone.rgb_tangents is None
        torch.testing.assert_close(alone.rgb, with_tangents.rgb, rtol=1e-12, atol=1e-14)

    def test_bad_arguments_raise(self):
        model = tiny_nerf(torch.float64)
        rays = pixel_rays(random_pixels(torch.Generator().manual_seed(28)), torch.eye(3, 4, dtype=torch.float64),
                          FOCAL, HEIGHT, WIDTH, with_tangents=False)
        with pytest.raises(ValueError, match="Generator"):
            render_rays(value_field(model), rays, 4, 0.0, 1.0, ndc=NDC, perturb=True, raw_noise_std=0.0)
        with pytest.raises(ValueError, match="carry tangents"):
            render_rays(jet_field(model), rays, 4, 0.0, 1.0, ndc=NDC, perturb=False, raw_noise_std=0.0,
                        with_tangents=True)


class TestRenderImage:
    def test_shapes_and_pixel_order(self):
        model = tiny_nerf(torch.float64, 29)
        c2w = random_pose(torch.Generator().manual_seed(29))
        image = render_image(value_field(model), c2w, 6, 8, 7.0, 8, 0.0, 1.0, ndc=NDCSpace(6, 8, 7.0), chunk=5)
        assert image.rgb.shape == (6, 8, 3) and image.depth.shape == image.acc.shape == (6, 8)
        assert not image.rgb.requires_grad
        pixel = torch.tensor([[3.0, 4.0]], dtype=torch.float64)  # column 3, row 4
        single = render_rays(value_field(model), pixel_rays(pixel, c2w, 7.0, 6, 8), 8, 0.0, 1.0,
                             ndc=NDCSpace(6, 8, 7.0), perturb=False, raw_noise_std=0.0)
        torch.testing.assert_close(image.rgb[4, 3], single.rgb[0])

    def test_render_factor_keeps_the_training_ndc(self):
        # A pixel of the half-size view renders what the training camera's ray through the same
        # image position renders, in the same NDC space.
        model = tiny_nerf(torch.float64, 30)
        c2w = random_pose(torch.Generator().manual_seed(30))
        image = render_image(value_field(model), c2w, HEIGHT, WIDTH, FOCAL, 8, 0.0, 1.0, ndc=NDC, render_factor=2,
                             align_pixels=True)
        assert image.rgb.shape == (HEIGHT // 2, WIDTH // 2, 3)
        row, col = 3, 5
        position = (torch.tensor([[col, row]], dtype=torch.float64) + 0.5) * 2 - 0.5
        expected = render_rays(value_field(model), pixel_rays(position, c2w, FOCAL, HEIGHT, WIDTH), 8, 0.0, 1.0,
                               ndc=NDC, perturb=False, raw_noise_std=0.0)
        torch.testing.assert_close(image.rgb[row, col], expected.rgb[0])
