"""The console scripts' entry points, each importing its command only when called.

A decoding worker is a spawned process, and a spawned process re-runs the script that started
its parent (multiprocessing's main-module fix-up): a script that imported its command at the top
would load Hydra, the training loop and the samplers in every worker, seconds each before it
decodes a file. The scripts pip writes import only this module.
"""

from importlib import import_module


def _run(command: str) -> None:
    import_module(f"wavenet.cli.{command}").main()


def train() -> None:
    _run("train")


def generate() -> None:
    _run("generate")


def evaluate() -> None:
    _run("evaluate")


def listen() -> None:
    _run("listen")


def plot() -> None:
    _run("plot")


def report() -> None:
    _run("report")
