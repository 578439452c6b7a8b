"""wavenet-train: Hydra's command line over wavenet.training.loop.train.

    wavenet-train experiment=demo train.max_steps=2000 model.residual_channels=32
    wavenet-train -m train.lr=1e-3,3e-3 experiment=demo      # a sweep, one run dir each

The composed config is checked against the dataclass schemas (wavenet.config), turned into them
once, and handed to `train` with the run directory Hydra made. User errors print one line: exit
2 for bad config, data or checkpoints, 1 for a run that cannot go on, 130/0 after SIGINT/SIGTERM.
"""

import os
import sys
from pathlib import Path

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from wavenet.cli.common import check_known_keys, fail, register
from wavenet.config import Config
from wavenet.errors import Interrupted, TrainingStopped, one_line
from wavenet.training.loop import train

NAME = "wavenet-train"

register()


@hydra.main(config_path="pkg://wavenet.conf", config_name="config", version_base="1.3")
def hydra_main(dcfg: DictConfig) -> None:
    """The Hydra task: typed config in, training run out. User errors print one line."""
    from hydra.core.hydra_config import HydraConfig

    try:
        check_known_keys(dcfg)
        cfg: Config = OmegaConf.to_object(dcfg)
        resolved = OmegaConf.to_container(dcfg, resolve=True)
        train(cfg, Path(HydraConfig.get().runtime.output_dir), resolved)
    except Interrupted as e:  # SIGINT: 130 like any Ctrl-C'd tool; SIGTERM: a requested stop
        print(f"{NAME}: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:  # Ctrl-C before training started, or a second one
        print(f"{NAME}: interrupted", file=sys.stderr)
        sys.exit(130)
    except TrainingStopped as e:
        fail(NAME, e, 1)
    except (ValueError, OSError) as e:  # DataError, CheckpointError and bad values
        fail(NAME, e)


def main() -> None:
    """wavenet-train: Hydra's command line, with config errors as one line and exit status 2.

    Hydra prints a composition error (unknown key, wrong type, missing option) over several
    lines and exits 1; with HYDRA_FULL_ERROR set it raises instead, so we can print one line.
    Set HYDRA_FULL_ERROR=1 yourself to get Hydra's full traceback.
    """
    if os.environ.get("HYDRA_FULL_ERROR"):
        hydra_main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        hydra_main()
    except (HydraException, OmegaConfBaseException) as e:
        cause = f" ({one_line(e.__cause__)})" if e.__cause__ else ""
        print(f"{NAME}: error: {one_line(e)}{cause}", file=sys.stderr)
        sys.exit(2)
    finally:
        del os.environ["HYDRA_FULL_ERROR"]
