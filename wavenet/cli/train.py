"""wavenet-train: Hydra's command line over wavenet.training.loop.train.

    wavenet-train experiment=demo train.max_steps=2000 model.residual_channels=32
    wavenet-train -m train.lr=1e-3,3e-3 experiment=demo      # a sweep, one run dir each

The composed config is checked against the dataclass schemas (wavenet.config), turned into them
once, and handed to `train` with the run directory Hydra made. User errors print one line: exit
2 for bad config, data or checkpoints, 1 for a run that cannot go on, 130/0 after SIGINT/SIGTERM.

The run directory is untouched until the config is valid: `ValidateFirst` checks it before Hydra
makes the directory (Hydra's own .hydra/ writing is off, see conf/config.yaml), then the
task locks the directory (one process at a time: a second run on it is refused), checks the
checkpoint it would resume, and only then writes .hydra/ and starts training.
"""

import copy
import os
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from wavenet.cli import sweeps
from wavenet.cli.common import check_known_keys, fail, register
from wavenet.config import Config
from wavenet.data.layouts import find_audio
from wavenet.errors import Interrupted, TrainingStopped, one_line
from wavenet.files import atomic_write, locked_dir
from wavenet.training.loop import check_step_memory, train
from wavenet.training.outputs import read_init, read_resume, resume_path

NAME = "wavenet-train"

register()


def typed_config(dcfg: DictConfig) -> tuple[Config, dict]:
    """The composed config (without its `hydra` node) as the checked `Config`, and resolved
    as a plain dict (stored in checkpoints). ValueError (one line) for an unknown key, a
    wrong type or an out-of-range value."""
    if "hydra" in dcfg:
        dcfg = copy.deepcopy(dcfg)
        with read_write(dcfg), open_dict(dcfg):
            del dcfg["hydra"]
    try:
        check_known_keys(dcfg)
        cfg: Config = OmegaConf.to_object(dcfg)
        resolved = OmegaConf.to_container(dcfg, resolve=True)
    except OmegaConfBaseException as e:
        cause = f" ({one_line(e.__cause__)})" if e.__cause__ else ""
        raise ValueError(f"{one_line(e)}{cause}") from e
    return cfg, resolved


class ValidateFirst(Callback):
    """Check the composed config before Hydra makes the run directory: a rejected config
    creates no directory and changes none (registered in conf/config.yaml). Hydra
    turns a callback's exceptions into warnings, so this one exits itself."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "run")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "sweep")  # a grid's swept values are checked by each job
        with read_write(config.hydra):
            # Fixed now: a job requeued on a cluster finds its run dir (and last.pt) again,
            # where `${now:...}` would name a new one.
            config.hydra.sweep.dir = str(config.hydra.sweep.dir)
        try:
            sweeps.check_plugins(config.hydra)
        except ValueError as e:
            fail(NAME, e)
        if sweeps.searching(config.hydra):
            try:
                sweeps.check_search(config.hydra, kwargs.get("config_name"), typed_config)
                sweeps.prepare_storage(config.hydra)
            except (ValueError, OSError) as e:
                fail(NAME, e)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if sweeps.searching(config.hydra) and (line := sweeps.best_command(config.hydra)):
            print(line)

    @staticmethod
    def _check(config: DictConfig, mode: str) -> None:
        try:
            # An empty dir would make the current directory the run's: its files resumed from
            # or overwritten.
            if not str(config.hydra[mode].dir or "").strip():
                raise ValueError(f"hydra.{mode}.dir is empty: give the run's directory")
            cfg, _ = typed_config(config)
            if mode == "run":  # a sweep's jobs check their own
                check_step_memory(cfg)
        except ValueError as e:
            fail(NAME, e)


def write_record(run_dir: Path, dcfg: DictConfig) -> None:
    """.hydra/config.yaml, hydra.yaml and overrides.yaml, as Hydra itself would write them."""
    hydra_cfg = HydraConfig.instance().cfg  # {"hydra": ...}
    files = {
        "config.yaml": dcfg,
        "hydra.yaml": hydra_cfg,
        "overrides.yaml": hydra_cfg.hydra.overrides.task,
    }
    for name, node in files.items():
        atomic_write(run_dir / ".hydra" / name, OmegaConf.to_yaml(node).encode(), durable=False)


@hydra.main(config_path="pkg://wavenet.conf", config_name="config", version_base="1.3")
def hydra_main(dcfg: DictConfig) -> float:
    """The Hydra task: typed config in, training run out; returns the run's objective (its best
    validation bits per 16-bit sample) for a sweeper. User errors print one line and exit 2,
    or, in a search (a trial the sweeper ranks), return the worst value so the search goes on."""
    sweeps.join_job_tasks()  # before the rank decides who holds the run dir
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    in_search = sweeps.searching(HydraConfig.get(), job=True)
    try:
        cfg, resolved = typed_config(dcfg)
        # Under torchrun only rank 0 writes into the run dir, so only rank 0 holds it.
        main_rank = os.environ.get("RANK", "0") == "0"
        listing = None
        with locked_dir(run_dir, NAME) if main_rank else nullcontext():
            if main_rank:
                # What can be checked cheaply is, before the run's record changes: the data
                # folder lists audio, and the checkpoint to resume (or start from) fits this model.
                listing = find_audio(cfg.data.root, cfg.data.layout)
                check_step_memory(cfg)
                path = resume_path(cfg, run_dir)
                if path is not None:
                    read_resume(cfg, path)
                elif cfg.train.init:
                    read_init(cfg, Path(cfg.train.init))
                write_record(run_dir, dcfg)
            train(cfg, run_dir, resolved, listing)
        return sweeps.objective(run_dir)
    except Interrupted as e:  # SIGINT: 130 like any Ctrl-C'd tool; SIGTERM: a requested stop
        print(f"{NAME}: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:  # Ctrl-C before training started, or a second one
        print(f"{NAME}: interrupted", file=sys.stderr)
        sys.exit(130)
    except (TrainingStopped, ValueError, OSError) as e:  # and DataError, CheckpointError
        status = 1 if isinstance(e, TrainingStopped) else 2
        if not in_search:
            fail(NAME, e, status)
        print(f"{NAME}: trial {run_dir}: {one_line(e)}", file=sys.stderr)
        return sweeps.objective(run_dir)  # its best before it stopped, else the worst


def main() -> None:
    """wavenet-train: Hydra's command line, with config errors as one line and exit status 2.

    Hydra prints a composition error (unknown key, wrong type, missing option) over several
    lines and exits 1; with HYDRA_FULL_ERROR set it raises instead, so we can print one line.
    Set HYDRA_FULL_ERROR=1 yourself to get Hydra's full traceback.
    """
    # Hydra's parser takes -m/--multirun only before the overrides; anywhere is meant.
    flags = [a for a in sys.argv[1:] if a in ("-m", "--multirun")]
    sys.argv[1:] = flags + [a for a in sys.argv[1:] if a not in flags]
    if os.environ.get("HYDRA_FULL_ERROR"):
        hydra_main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        hydra_main()
    except (HydraException, OmegaConfBaseException) as e:
        cause = f" ({one_line(e.__cause__)})" if e.__cause__ else ""
        text = f"{one_line(e)}{cause}"
        if any(name in text for name in ("optuna", "submitit")):  # the sweeps extra's plugins
            text += f"; {sweeps.INSTALL}"
        print(f"{NAME}: error: {text}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # Hydra cannot make the run dir (a file is in the way, ...)
        fail(NAME, e)
    except KeyboardInterrupt:
        print(f"{NAME}: interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        del os.environ["HYDRA_FULL_ERROR"]
