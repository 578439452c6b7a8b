"""The package's layering: every import points down, no import cycles back within a layer, and
only wavenet.cli imports Hydra.

Layers, bottom first (a module may import its own layer's modules and any layer below):
errors/files/mulaw, model, sampling and data, config and checkpoint, metrics, training, cli.
"""

import ast
import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "wavenet"
LAYERS = [
    {"wavenet", "wavenet.errors", "wavenet.files", "wavenet.mulaw", "wavenet.lazy"},
    {"wavenet.model"},
    {"wavenet.sampling", "wavenet.data"},
    {"wavenet.config", "wavenet.checkpoint"},
    {"wavenet.metrics"},
    {"wavenet.training"},
    {"wavenet.cli", "wavenet.conf"},
]
HYDRA = ("hydra", "omegaconf")


def unit(module: str) -> str:
    """The layered unit a module belongs to: its sub-package, or the top-level module."""
    parts = module.split(".")
    return ".".join(parts[:2])


def layer(module: str) -> int:
    name = unit(module)
    for i, names in enumerate(LAYERS):
        if name in names:
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        found[name] = path
    return found


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (function-level imports count too)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("module", sorted(modules()))
def test_imports_point_down(module):
    if module == "wavenet":  # the package's public names re-export lower layers
        return
    mine = layer(module)
    for name in imports(modules()[module]):
        if not name.startswith("wavenet."):
            continue
        target = name if name in modules() else name.rsplit(".", 1)[0]
        if target in modules():
            assert layer(target) <= mine, (
                f"{module} (layer {mine}) imports {target} (layer {layer(target)})"
            )


def import_graph() -> dict[str, set[str]]:
    """Each wavenet module -> the wavenet modules it imports (`imports`: at any depth), less the
    edges from a package's `__init__` to modules inside the package (see test_no_import_cycles).
    """
    found = modules()
    graph = {}
    for module, path in found.items():
        targets = {name if name in found else name.rsplit(".", 1)[0] for name in imports(path)}
        graph[module] = {
            t for t in targets if t in found and t != module and not t.startswith(module + ".")
        }
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as [a, b, ..., a] (depth first, in name order), or None."""
    done, path = set(), []

    def visit(node: str) -> list[str] | None:
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in done and (cycle := visit(nxt)):
                return cycle
        path.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        if node not in done and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    """No wavenet module imports itself back through others, function-level imports included
    (imports that point down cannot close a cycle across layers; this holds each layer).

    A package's `__init__` importing modules inside the package is left out: those are its
    re-exports (wavenet.sampling's `generate`), and Python runs a package's `__init__` before
    any module inside it, so with them every module that imports from its own package (`from
    wavenet.sampling import kernel`) would show a false cycle.
    """
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("module", sorted(m for m in modules() if unit(m) != "wavenet.cli"))
def test_only_the_command_lines_import_hydra(module):
    bad = sorted(n for n in imports(modules()[module]) if n.split(".")[0] in HYDRA)
    assert not bad, f"{module} imports {bad}; Hydra stops at wavenet.cli"


def test_every_sub_package_says_what_it_owns():
    for init in PACKAGE.glob("*/__init__.py"):  # (conf/, the Hydra groups, is at the top)
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "import" in doc.lower(), f"{init}: say what it owns and may import"


# Leaves that read and check settings without the network: a config tool, a notebook cell or
# an argument check should not pay for torch (PEP 562 lazy re-exports in the package inits).
TORCH_FREE = (
    "wavenet",
    "wavenet.errors",
    "wavenet.files",
    "wavenet.model.config",
    "wavenet.sampling.paths",
    "wavenet.config",
    "wavenet.cli.entry",  # what the console scripts import, and a spawned decode worker re-runs
)


@pytest.mark.parametrize("module", TORCH_FREE)
def test_leaves_import_no_torch(module):
    code = f"import sys, {module}; print(sorted(m for m in ('torch', 'numba') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"import {module} loaded {out.stdout.strip()}"


def test_console_scripts_go_through_the_light_entry_module():
    scripts = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]["scripts"]
    from wavenet.cli import entry

    for script, target in scripts.items():
        module, _, function = target.partition(":")
        assert module == "wavenet.cli.entry", f"{script} imports {module} at the top"
        command = script.removeprefix("wavenet-")
        assert function == command and callable(getattr(entry, function))
        assert callable(importlib.import_module(f"wavenet.cli.{command}").main)


def test_a_training_run_starts_without_plotting_or_the_sampler_kernels():
    """matplotlib draws after the first validation and the compiled sampler makes samples:
    neither is in the seconds before the first step."""
    heavy = ("matplotlib", "numba", "wavenet.sampling.cached")
    code = f"import sys, wavenet.cli.train; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"import wavenet.cli.train loaded {out.stdout.strip()}"


def test_public_names_still_import():
    from wavenet import CachedSampler, SamplerState, WaveNet, WaveNetConfig, generate

    assert WaveNet.__name__ == "WaveNet" and WaveNetConfig().blocks >= 1
    assert callable(generate) and CachedSampler.__name__ and SamplerState.__name__
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        import wavenet

        _ = wavenet.Nope
