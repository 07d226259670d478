"""Tests for sobolev_inr.training.checkpoints: round trip, atomic write, listing, pruning, rebuilding the model."""
from __future__ import annotations

import pytest
import torch

import sobolev_inr.training.checkpoints as ckpt
from sobolev_inr.training.checkpoints import (checkpoint_path, latest_checkpoint, list_checkpoints, load_checkpoint,
                                     load_model, prune_checkpoints, save_checkpoint)
from sobolev_inr.models import MLP


def small_model(encoding="fourier"):
    return MLP(2, 3, ["sine", "sine"], hidden_features=16, encoding=encoding, fourier_num_features=4,
               fourier_seed=7)


def make_state(model, epoch=3):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.rand(5, 2)).sum().backward()
    opt.step()
    return {"model": model.state_dict(), "model_config": model.config, "optimizer": opt.state_dict(),
            "epoch": epoch, "step": 10 * epoch, "rng": {"generator": torch.Generator().get_state()}, "config": {"lr": 1e-3, "name": "x"}}


class TestRoundTrip:
    def test_save_load(self, tmp_path):
        model = small_model()
        state = make_state(model)
        path = tmp_path / "sub" / "epoch_0000003.pt"  # the folder is created
        save_checkpoint(path, state)
        loaded = load_checkpoint(path)
        assert loaded["epoch"] == 3 and loaded["step"] == 30 and loaded["config"] == {"lr": 1e-3, "name": "x"}
        assert loaded["model_config"] == model.config
        for k, v in state["model"].items():
            assert torch.equal(loaded["model"][k], v)
        assert loaded["optimizer"]["state"][0]["exp_avg"].shape == state["optimizer"]["state"][0]["exp_avg"].shape
        assert all(t.device.type == "cpu" for t in loaded["model"].values())

    @pytest.mark.parametrize("encoding", ["none", "positional", "fourier"])
    def test_load_model_rebuilds_the_network(self, tmp_path, encoding):
        model = small_model(encoding)
        save_checkpoint(tmp_path / "epoch_1.pt", make_state(model))
        rebuilt = load_model(tmp_path / "epoch_1.pt")
        assert isinstance(rebuilt, MLP) and rebuilt.config == model.config
        x = torch.rand(17, 2) * 2 - 1
        with torch.no_grad():
            assert torch.equal(rebuilt(x), model(x))

    def test_load_model_does_not_depend_on_global_rng(self, tmp_path):
        model = small_model()
        save_checkpoint(tmp_path / "epoch_1.pt", make_state(model))
        torch.manual_seed(123)
        rebuilt = load_model(tmp_path / "epoch_1.pt")
        assert torch.equal(rebuilt.encoding.projection, model.encoding.projection)


class TestAtomicWrite:
    def test_failed_write_keeps_previous_file(self, tmp_path, monkeypatch):
        path = tmp_path / "epoch_0000001.pt"
        save_checkpoint(path, {"epoch": 1, "w": torch.arange(5)})
        before = path.read_bytes()

        def broken_save(obj, f, *args, **kwargs):
            f.write(b"PK\x03\x04partial")  # some bytes, then the process "dies"
            raise RuntimeError("disk full")

        monkeypatch.setattr(ckpt.torch, "save", broken_save)
        with pytest.raises(RuntimeError, match="disk full"):
            save_checkpoint(path, {"epoch": 2, "w": torch.arange(9)})
        monkeypatch.undo()

        assert path.read_bytes() == before
        assert load_checkpoint(path)["epoch"] == 1
        assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left

    def test_failed_first_write_leaves_nothing(self, tmp_path, monkeypatch):
        def broken_save(obj, f, *args, **kwargs):
            f.write(b"partial")
            raise KeyboardInterrupt

        monkeypatch.setattr(ckpt.torch, "save", broken_save)
        with pytest.raises(KeyboardInterrupt):
            save_checkpoint(tmp_path / "epoch_1.pt", {"epoch": 1})
        monkeypatch.undo()
        assert list(tmp_path.iterdir()) == []

    def test_overwrite(self, tmp_path):
        path = tmp_path / "epoch_1.pt"
        save_checkpoint(path, {"epoch": 1})
        save_checkpoint(path, {"epoch": 2})
        assert load_checkpoint(path)["epoch"] == 2
        assert [p.name for p in tmp_path.iterdir()] == ["epoch_1.pt"]


class TestListing:
    def test_order_is_by_epoch_not_by_name(self, tmp_path):
        for epoch in (10, 9, 100, 1):
            save_checkpoint(tmp_path / f"epoch_{epoch}.pt", {"epoch": epoch})
        (tmp_path / "notes.txt").write_text("x")
        (tmp_path / "epoch_5.pt.tmp").write_bytes(b"")
        (tmp_path / "epoch_x.pt").write_bytes(b"")
        assert [p.name for p in list_checkpoints(tmp_path)] == ["epoch_1.pt", "epoch_9.pt", "epoch_10.pt",
                                                                 "epoch_100.pt"]
        assert latest_checkpoint(tmp_path).name == "epoch_100.pt"

    def test_checkpoint_path(self, tmp_path):
        p = checkpoint_path(tmp_path, 42)
        assert p == tmp_path / "epoch_0000042.pt"
        assert ckpt.CHECKPOINT_PATTERN.match(p.name)
        assert checkpoint_path(tmp_path, 7, "step") == tmp_path / "step_0000007.pt"
        with pytest.raises(ValueError, match="unknown checkpoint unit"):
            checkpoint_path(tmp_path, 1, "iteration")

    def test_step_checkpoints_sort_by_number(self, tmp_path):
        for step in (20000, 500, 10000):
            save_checkpoint(checkpoint_path(tmp_path, step, "step"), {"step": step})
        assert [load_checkpoint(p)["step"] for p in list_checkpoints(tmp_path)] == [500, 10000, 20000]

    def test_missing_or_empty_folder(self, tmp_path):
        assert list_checkpoints(tmp_path / "nope") == []
        assert latest_checkpoint(tmp_path / "nope") is None
        assert latest_checkpoint(tmp_path) is None


class TestPrune:
    @pytest.mark.parametrize("keep,left", [(2, [100, 1000]), (1, [1000]), (10, [1, 5, 10, 100, 1000]),
                                           (0, [1, 5, 10, 100, 1000])])
    def test_keeps_newest(self, tmp_path, keep, left):
        for epoch in (1, 5, 10, 100, 1000):
            save_checkpoint(checkpoint_path(tmp_path, epoch), {"epoch": epoch})
        (tmp_path / "metrics.json").write_text("{}")
        prune_checkpoints(tmp_path, keep)
        assert [load_checkpoint(p)["epoch"] for p in list_checkpoints(tmp_path)] == left
        assert (tmp_path / "metrics.json").exists()


class TestWeightsOnly:
    """Checkpoints hold tensors and plain values, so they load with weights_only=True (no code runs from the
    file), and record where they came from."""

    def test_saved_checkpoint_loads_with_weights_only_and_records_provenance(self, tmp_path):
        from sobolev_inr.training.provenance import PROVENANCE_KEYS

        model = small_model()
        save_checkpoint(tmp_path / "epoch_1.pt", make_state(model))
        raw = torch.load(tmp_path / "epoch_1.pt", weights_only=True)
        assert set(PROVENANCE_KEYS) <= set(raw)
        assert raw["torch_version"] == str(torch.__version__) and isinstance(raw["package_version"], str)
        assert raw["git_commit"] is None or len(raw["git_commit"]) == 40

    def test_numpy_and_paths_become_tensors_and_plain_values(self, tmp_path):
        import numpy as np
        from pathlib import Path

        save_checkpoint(tmp_path / "epoch_1.pt", {"a": np.arange(4.0), "b": np.float32(1.5), "c": np.int64(3),
                                                  "d": Path("data/x.png"), "e": [np.bool_(True), (1, 2)]})
        loaded = torch.load(tmp_path / "epoch_1.pt", weights_only=True)
        assert torch.equal(loaded["a"], torch.arange(4.0, dtype=torch.float64))
        assert loaded["b"] == 1.5 and type(loaded["b"]) is float and loaded["c"] == 3 and type(loaded["c"]) is int
        assert loaded["d"] == "data/x.png" and loaded["e"] == [True, (1, 2)]

    def test_other_objects_are_refused_before_anything_is_written(self, tmp_path):
        with pytest.raises(TypeError, match=r"checkpoint\['config'\]\['f'\] is a builtins.object"):
            save_checkpoint(tmp_path / "epoch_1.pt", {"config": {"f": object()}})
        assert list(tmp_path.iterdir()) == []

    def test_a_file_with_other_objects_fails_in_one_line_unless_trusted(self, tmp_path):
        import numpy as np

        path = tmp_path / "epoch_1.pt"
        torch.save({"epoch": 1, "rng": np.random.get_state()}, path)  # what an older writer might have stored
        with pytest.raises(ckpt.CheckpointError, match=r"numpy.*weights_only=True.*trusted=True") as caught:
            load_checkpoint(path)
        assert "\n" not in str(caught.value)
        assert load_checkpoint(path, trusted=True)["epoch"] == 1


class TestProvenance:
    def test_keys_and_the_repository_commit(self):
        from sobolev_inr.training.provenance import PROVENANCE_KEYS, provenance

        record = provenance()
        assert tuple(record) == PROVENANCE_KEYS
        import sobolev_inr

        assert record["package_version"] == sobolev_inr.__version__
        assert record["git_dirty"] in (True, False, None)

    def test_no_git_gives_none_not_an_error(self, monkeypatch, tmp_path):
        import sobolev_inr.training.provenance as prov

        prov._git_state.cache_clear()
        monkeypatch.setenv("PATH", str(tmp_path))  # no git executable
        try:
            assert prov._git_state(str(tmp_path)) == (None, None)
            record = prov.provenance()
            assert record["git_commit"] is None and record["git_dirty"] is None
        finally:
            prov._git_state.cache_clear()

    def test_a_folder_inside_another_repository_is_not_its_commit(self, tmp_path):
        """An installed package (site-packages) inside some other repository records no commit."""
        import shutil
        import subprocess

        import sobolev_inr.training.provenance as prov

        if shutil.which("git") is None:
            pytest.skip("no git")
        subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
        inner = tmp_path / "site-packages"
        inner.mkdir()
        assert prov._git_state(str(inner)) == (None, None)
