"""What `wavenet-train -m` needs for a search (hydra-optuna-sweeper) and a cluster
(hydra-submitit-launcher); the plugins do the rest (docs/sweeps.md).

- `objective(run_dir)`: the value a job returns to its sweeper, the best validation bits per
  16-bit sample in the run's metrics.jsonl (the unit in which runs of any output compare);
  `inf` for a run that never validated, so a refused or stopped trial still ranks (last).
- `searching(hydra_cfg)`: whether the sweeper chooses trials by their values (then a refused
  trial returns `inf` instead of ending the sweep).
- `check_search(hydra_cfg, config_name, check)`: every value a search can propose is composed
  and checked before the first trial: an unknown key, an empty interval or an out-of-range end
  (lr <= 0) fails the sweep at once with one line.
- `check_plugins(hydra_cfg)`: the sweeper, sampler and launcher named can be imported (a base
  install without the `sweeps` extra is told what to install, before anything is written).
- `prepare_storage(hydra_cfg)`: the folder of an SQLite study exists before Optuna opens it.
- `best_command(hydra_cfg)`: after a search, the best trial's value and the command that reruns it.
- `join_job_tasks()`: the tasks of one submitit job (`hydra.launcher.tasks_per_node`, `nodes`)
  given torchrun's variables, so they train as one DDP group as torchrun's processes do.
"""

import json
import math
import os
import shlex
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from wavenet.errors import one_line

WORST = math.inf  # what a trial without a validation returns: ranked after every real one


def objective(run_dir: Path) -> float:
    """The lowest `val_bits16` in `run_dir`/metrics.jsonl (lines that are not JSON objects
    skipped), or WORST when there is none."""
    best = WORST
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return best
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        value = record.get("val_bits16") if isinstance(record, dict) else None
        if isinstance(value, int | float) and math.isfinite(value):
            best = min(best, float(value))
    return best


def searching(hydra_cfg: DictConfig, job: bool = False) -> bool:
    """True when the sweeper proposes trials from the values returned (any sweeper but Hydra's
    grid); with `job`, only inside a job of a multirun. `hydra_cfg`: the composed config's
    `hydra` node (HydraConfig.get())."""
    target = str(OmegaConf.select(hydra_cfg, "sweeper._target_", default="") or "")
    mode = str(OmegaConf.select(hydra_cfg, "mode", default=""))
    return not target.endswith("BasicSweeper") and (not job or mode.endswith("MULTIRUN"))


def _search_space(hydra_cfg: DictConfig) -> tuple[list[str], dict[str, list[str]]]:
    """The task's fixed overrides, and each searched key's values to check: every choice, both
    ends of an interval or a range. As the Optuna sweeper reads them: its `params` first, then
    the command line, a later value of a key replacing an earlier one. ValueError (one line)
    for an empty interval, range or choice."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from hydra.errors import HydraException

    params = OmegaConf.select(hydra_cfg, "sweeper.params") or {}
    lines = [f"{k}={v}" for k, v in params.items()]
    lines += [str(o) for o in hydra_cfg.overrides.task]
    chosen: dict[str, str | list[str]] = {}  # key -> its fixed override line, or its values
    try:
        overrides = OverridesParser.create().parse_overrides(lines)
    except HydraException as e:  # the grammar's own message names the override
        raise ValueError(f"search space: {one_line(e)}") from e
    for override in overrides:
        key = override.get_key_element()
        chosen.pop(key, None)  # the later one, in its place
        if not override.is_sweep_override():
            chosen[key] = override.input_line
            continue
        sweep = override.value()
        shown = override.input_line
        if isinstance(sweep, IntervalSweep):
            if not sweep.start < sweep.end:
                raise ValueError(
                    f"search space: {shown}: an empty interval (its start is not below its end)"
                )
            values = [str(sweep.start), str(sweep.end)]
        elif isinstance(sweep, RangeSweep | ChoiceSweep):
            values = list(override.sweep_string_iterator())
            if not values:
                raise ValueError(f"search space: {shown}: empty, nothing to search")
            if isinstance(sweep, RangeSweep):
                values = [values[0], values[-1]]
        else:  # a glob and the like: left to Hydra
            continue
        chosen[key] = values
    fixed = [v for v in chosen.values() if isinstance(v, str)]
    return fixed, {k: v for k, v in chosen.items() if isinstance(v, list)}


def check_search(hydra_cfg: DictConfig, config_name: str | None, check) -> None:
    """ValueError (one line) unless every value the search can propose composes into a config
    that `check` (the trainer's typed-config check) accepts: each searched key in turn at each
    candidate, the others as given."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    fixed, space = _search_space(hydra_cfg)
    loader = GlobalHydra.instance().config_loader()
    for key, values in space.items():
        for value in values:
            line = f"{key}={value}"
            try:
                composed = loader.load_configuration(
                    config_name=config_name, overrides=[*fixed, line], run_mode=RunMode.RUN
                )
                check(composed)
            except Exception as e:  # Hydra's composition errors and the schema's ValueError
                cause = f" ({one_line(e.__cause__)})" if e.__cause__ else ""
                raise ValueError(f"search space: {line}: {one_line(e)}{cause}") from e


INSTALL = "searches and cluster sweeps need: pip install 'wavenet[sweeps]'"


def check_plugins(hydra_cfg: DictConfig) -> None:
    """ValueError (one line, saying what to install) unless the sweeper, its sampler and the
    launcher this multirun names can be imported: checked before anything is written."""
    from hydra.utils import get_class

    for key in ("sweeper._target_", "sweeper.sampler._target_", "launcher._target_"):
        target = OmegaConf.select(hydra_cfg, key, default=None)
        if target:
            try:
                get_class(str(target))
            except Exception as e:  # ImportError, or Hydra's wrapping of it
                raise ValueError(
                    f"hydra.{key.rsplit('.', 1)[0]}: cannot load {target}; {INSTALL}"
                ) from e


def prepare_storage(hydra_cfg: DictConfig) -> None:
    """Make the folder of an `sqlite:///PATH` study (Optuna opens it before any job runs)."""
    storage = OmegaConf.select(hydra_cfg, "sweeper.storage")
    if storage and str(storage).startswith("sqlite:///"):
        Path(str(storage)[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)


def best_command(hydra_cfg: DictConfig) -> str | None:
    """After an Optuna sweep: one line with the best value and the command that reruns the best
    trial (the task's fixed overrides plus its parameters); None when there is no result."""
    results = Path(str(hydra_cfg.sweep.dir)) / "optimization_results.yaml"
    if not results.is_file():
        return None
    best = OmegaConf.load(results)
    if "best_params" not in best:
        return None
    fixed, _ = _search_space(hydra_cfg)
    params = [f"{k}={v}" for k, v in best.best_params.items()]
    command = shlex.join(["wavenet-train", *fixed, *params])
    return f"best trial: {best.best_value:.4f} bits per 16-bit sample; rerun it with: {command}"


def join_job_tasks() -> None:
    """In a submitit job of several tasks, export RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
    MASTER_PORT from the job's environment (submitit's own helper), unless a launcher such as
    torchrun has set them; the training then forms one group (wavenet.training.distributed)."""
    if not os.environ.get("SUBMITIT_EXECUTOR") or "RANK" in os.environ:
        return
    import submitit

    if submitit.JobEnvironment().num_tasks > 1:
        # Every GPU stays visible: each task takes cuda:LOCAL_RANK (train.device=auto).
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
