"""wavenet.training.state: when last.pt is due, and the metrics a resumed run drops."""

from omegaconf import OmegaConf

from wavenet.training import state as resume


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
    cfg = OmegaConf.to_object(compose("experiment=demo"))
    seconds_per_step = 0.35  # the demo on 2 CPU cores
    worst = min(cfg.train.checkpoint_every * seconds_per_step, 60 * cfg.train.checkpoint_minutes)
    assert 0 < worst < 60



def test_truncate_metrics_drops_later_and_torn_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"st')
    resume.truncate_metrics(path, 2)
    assert path.read_text() == '{"step": 1}\n{"step": 2}\n'
    resume.truncate_metrics(path, 0)
    assert path.read_text() == ""
