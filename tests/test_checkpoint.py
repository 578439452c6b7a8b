from pathlib import Path

import pytest
import torch

from wavenet import WaveNet, checkpoint
from wavenet.checkpoint import CheckpointError


def payload(model: WaveNet) -> dict:
    from dataclasses import asdict

    return {
        "model": model.state_dict(),
        "model_config": asdict(model.config),
        "sample_rate": 16000,
        "step": 7,
    }


def test_round_trip_rebuilds_the_same_model(tmp_path):
    torch.manual_seed(0)
    model = WaveNet(
        blocks=1, layers_per_block=3, residual_channels=4, gate_channels=8, skip_channels=8
    )
    checkpoint.save(tmp_path / "c.pt", payload(model))
    ckpt = checkpoint.load(tmp_path / "c.pt")
    assert ckpt["step"] == 7 and ckpt["version"] == checkpoint.VERSION
    rebuilt = checkpoint.build_model(ckpt)
    x = torch.randint(0, 256, (1, 50))
    assert torch.equal(rebuilt(x), model.eval()(x))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left behind


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = WaveNet(
        blocks=1, layers_per_block=2, residual_channels=4, gate_channels=8, skip_channels=8
    )
    path = tmp_path / "last.pt"
    checkpoint.save(path, payload(model))
    before = path.read_bytes()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space"):
        checkpoint.save(path, payload(model))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_unusable_files_give_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        checkpoint.load(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        checkpoint.load(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not a wavenet checkpoint"):
        checkpoint.load(other)
    newer = tmp_path / "newer.pt"
    torch.save({"format": checkpoint.FORMAT, "version": checkpoint.VERSION + 1}, newer)
    with pytest.raises(CheckpointError, match="newer"):
        checkpoint.load(newer)


def test_truncated_checkpoint_is_rejected(tmp_path):
    model = WaveNet(
        blocks=1, layers_per_block=2, residual_channels=4, gate_channels=8, skip_channels=8
    )
    path = tmp_path / "c.pt"
    checkpoint.save(path, payload(model))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="c.pt"):
        checkpoint.load(path)


class _Payload:
    """Pickles to a call that would create a file when unpickled."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def test_malicious_pickle_never_runs(tmp_path):
    target = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "version": 1, "model": _Payload(target)}, evil)
    assert not target.exists()
    with pytest.raises(CheckpointError, match="evil.pt"):
        checkpoint.load(evil)
    assert not target.exists()


def test_export_keeps_what_generation_needs_and_drops_training_state(tmp_path):
    model = WaveNet(
        blocks=1, layers_per_block=2, residual_channels=4, gate_channels=8, skip_channels=8
    )
    full = {
        **payload(model),
        "optimizer": {"state": {}, "param_groups": []},
        "torch_rng": torch.get_rng_state(),
    }
    checkpoint.save(tmp_path / "last.pt", full)
    checkpoint.export(tmp_path / "last.pt", tmp_path / "slim.pt")
    slim = checkpoint.load(tmp_path / "slim.pt")
    assert "optimizer" not in slim and "torch_rng" not in slim
    x = torch.randint(0, 256, (1, 40))
    assert torch.equal(checkpoint.build_model(slim)(x), model.eval()(x))


def test_sampling_settings_are_stored_checked_and_given_ones_win(tmp_path):
    """export stores temperature/floor/sharpen; sampling() takes a given value over the
    checkpoint's and the checkpoint's over the default; out-of-range values are one-line
    errors naming the setting, and sharpen needs a mel."""
    model = WaveNet(blocks=1, layers_per_block=2, residual_channels=4, gate_channels=8)
    tiny_checkpoint = tmp_path / "tiny.pt"
    checkpoint.save(tiny_checkpoint, payload(model))
    slim = checkpoint.export(tiny_checkpoint, tmp_path / "s.pt", temperature=0.7, floor=0.002)
    ckpt = checkpoint.load(tmp_path / "s.pt")
    assert slim["floor"] == ckpt["floor"] == 0.002
    assert checkpoint.sampling(ckpt) == {"temperature": 0.7, "floor": 0.002, "sharpen": 0.0}
    assert checkpoint.sampling(ckpt, floor=0.0, temperature=None)["floor"] == 0.0
    with pytest.raises(ValueError, match=r"^floor must be a finite number in \[0.0, 0.0035"):
        checkpoint.sampling(ckpt, floor=0.01)  # 0.9 / 256 keeps the top class
    with pytest.raises(ValueError, match="sharpen= needs a mel-conditioned checkpoint"):
        checkpoint.sampling(ckpt, sharpen=1.5)
    with pytest.raises(ValueError, match="floor"):
        checkpoint.export(tiny_checkpoint, tmp_path / "bad.pt", floor=-1)
    assert not (tmp_path / "bad.pt").exists()
    bad = {**ckpt, "floor": float("nan")}
    with pytest.raises(ValueError, match="^floor must be a finite number"):
        checkpoint.check(bad)
