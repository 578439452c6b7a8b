"""wavenet.training.state: when last.pt is due (also at the demo's measured pace), and the
metrics a resumed run drops."""

import time

import torch
from omegaconf import OmegaConf

from wavenet.data.dataset import Batch
from wavenet.model.network import WaveNet
from wavenet.training import state as resume
from wavenet.training.loop import bits_per_sample


def test_checkpoint_schedule_fires_on_steps_or_minutes():
    now = [0.0]
    by_steps = resume.CheckpointSchedule(every=3, minutes=0, clock=lambda: now[0])
    assert [s for s in range(1, 10) if by_steps.due(s)] == [3, 6, 9]
    by_time = resume.CheckpointSchedule(every=0, minutes=0.5, clock=lambda: now[0])
    now[0] = 29.0
    assert not by_time.due(1)
    now[0] = 30.0
    assert by_time.due(2)
    by_time.saved()
    now[0] = 59.0
    assert not by_time.due(3)
    assert not resume.CheckpointSchedule(every=0, minutes=0).due(100)


def test_defaults_lose_under_a_minute_on_the_demo_config(compose):
    """Measure the demo run's training step here (small model, its batch and crop, one thread),
    then replay the checkpoint schedule of its config at that pace over the whole run: last.pt
    is never more than a minute of training behind."""
    cfg = OmegaConf.to_object(compose("experiment=demo"))
    model = WaveNet(cfg.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    crops = Batch(
        torch.randint(0, 256, (cfg.train.batch_size, model.receptive_field + cfg.data.crop))
    )
    times = []
    for _ in range(3):  # the first step warms up
        start = time.perf_counter()
        optimizer.zero_grad()
        bits_per_sample(model, crops).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    step_s = min(times[1:])

    now = [0.0]
    schedule = resume.CheckpointSchedule(
        cfg.train.checkpoint_every, cfg.train.checkpoint_minutes, clock=lambda: now[0]
    )
    saved_at, worst = 0.0, 0.0
    for step in range(1, cfg.train.max_steps + 1):
        now[0] += step_s
        if schedule.due(step):
            worst = max(worst, now[0] - saved_at)
            saved_at = now[0]
            schedule.saved()
    worst = max(worst, now[0] - saved_at)
    print(f"demo step {step_s:.2f} s: at most {worst:.0f} s of training between checkpoints")
    assert 0 < worst < 60


def test_truncate_metrics_drops_later_and_torn_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"st')
    resume.truncate_metrics(path, 2)
    assert path.read_text() == '{"step": 1}\n{"step": 2}\n'
    resume.truncate_metrics(path, 0)
    assert path.read_text() == ""
