"""The code's shape, checked: what the style guide asks of goose/ and sim/."""

import ast
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE = sorted([*(ROOT / "goose").rglob("*.py"), *(ROOT / "sim").rglob("*.py")])


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(path: Path) -> str:
    mod = _module(path)
    return mod if path.name == "__init__.py" else mod.rpartition(".")[0]


def private_imports(path: Path) -> list[str]:
    """Imports in ``path`` that reach a private name (``_x``) of another package: a
    private module outside the importer's own package, or a private attribute."""
    pkg, bad = _package(path), []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = pkg.split(".")
            target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module or ""
            names = [(target, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            names = [(a.name, "") for a in node.names]
        else:
            continue
        for module, name in names:
            parts = module.split(".")
            private = [i for i, p in enumerate(parts) if p.startswith("_") and not p.startswith("__")]
            if private and ".".join(parts[: private[0]]) != pkg:
                bad.append(f"{path.relative_to(ROOT)}: {module}")
            if name.startswith("_") and not name.startswith("__") and module.rpartition(".")[0] != pkg \
                    and module != pkg:
                bad.append(f"{path.relative_to(ROOT)}: {module}.{name}")
    return bad


def test_no_private_name_is_imported_across_packages():
    bad = [b for p in CODE for b in private_imports(p)]
    assert not bad, "private names imported across package boundaries:\n" + "\n".join(bad)


def test_the_check_catches_a_private_import(tmp_path):
    # a negative control: the same check on a file that does what the rule forbids
    victim = ROOT / "goose" / "engine" / "_probe_for_layout_test.py"
    victim.write_text("from ..sources._base import TokenSource\nfrom ..hf._target import _SdpaGqa\n"
                      "from ._loop import decode\n")
    try:
        assert private_imports(victim) == ["goose/engine/_probe_for_layout_test.py: goose.sources._base",
                                           "goose/engine/_probe_for_layout_test.py: goose.hf._target",
                                           "goose/engine/_probe_for_layout_test.py: goose.hf._target._SdpaGqa"]
    finally:
        victim.unlink()


@pytest.mark.parametrize("path", CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_file_is_longer_than_400_lines(path):
    assert len(path.read_text().splitlines()) <= 400


def test_decode_fits_on_one_screen():
    tree = ast.parse((ROOT / "goose" / "engine" / "_loop.py").read_text())
    decode = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "decode")
    assert decode.end_lineno - decode.lineno + 1 <= 60


def test_exactly_one_table_of_method_names():
    # every built-in method is named once, in goose/methods/_builtin.py
    # every built-in method is named once, in goose/methods/_builtin.py ("balanced-k3" is no shaper's name)
    out = subprocess.run(["git", "grep", "-l", '"balanced-k3"', "--", "goose", "sim"], cwd=ROOT, capture_output=True,
                         text=True)
    if out.returncode not in (0, 1):
        pytest.skip("not a git checkout")
    assert out.stdout.split() == ["goose/methods/_builtin.py"]
    for name in ('"best-first"', '"pld"', '"paper"'):
        out = subprocess.run(["git", "grep", "-l", f"Method({name}", "--", "goose", "sim"], cwd=ROOT,
                             capture_output=True, text=True)
        assert out.stdout.split() == ["goose/methods/_builtin.py"], name


# -- layering: imports point down the layer order, and no module cycle -------------------
LAYERS = [
    ("goose.sources", "goose.theory", "goose.plugins", "goose.paths", "goose.kernels"),
    ("goose.trees",),
    ("goose.verify",),
    ("goose.methods",),
    ("goose.engine",),
    ("goose.hf", "goose.testing"),
    ("goose.bench",),
    ("sim",),
    ("goose.cli", "goose._cli_errors", "goose._cli_sampling", "goose._cli_predict", "goose._cli_batch", "goose"),
]
"""The layer order of DESIGN.md: a module may import its own layer's package and the
layers below, never above. ``goose`` (the package root, a re-export) and the command
line are the top; only they may import ``sim``."""


def _layer(module: str) -> tuple[int, str]:
    """(layer index, package) of a module: the longest listed package that contains it."""
    best = max((p for layer in LAYERS for p in layer if module == p or module.startswith(p + ".")), key=len)
    return next(i for i, layer in enumerate(LAYERS) if best in layer), best


def _modules(root: Path = ROOT) -> dict[str, Path]:
    files = sorted([*(root / "goose").rglob("*.py"), *(root / "sim").rglob("*.py")])
    return {_module(p) if root == ROOT else ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(
        ".__init__"): p for p in files}


def imports_of(path: Path, module: str, known: set[str]) -> set[str]:
    """Every goose/sim module ``path`` imports, lazy imports inside functions included:
    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module."""
    pkg = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in known else target)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m in known}


def layering_violations(modules: dict[str, Path]) -> list[str]:
    """Imports that point up the layer order (within a layer, the cycle check keeps order)."""
    bad = []
    for mod, path in modules.items():
        here, own = _layer(mod)
        for dep in sorted(imports_of(path, mod, set(modules))):
            there, theirs = _layer(dep)
            if there > here:
                bad.append(f"{mod} -> {dep} (layer {here} {own} imports layer {there} {theirs})")
    return bad


def import_cycles(modules: dict[str, Path]) -> list[list[str]]:
    """The module import cycles (strongly connected components of more than one module,
    or a module that imports itself), lazy imports included."""
    graph = {m: imports_of(p, m, set(modules)) - {m} for m, p in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def test_imports_follow_the_layer_order():
    bad = layering_violations(_modules())
    assert not bad, "imports that go up the layers:\n" + "\n".join(bad)


def test_no_import_cycles():
    cycles = import_cycles(_modules())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_layering_checks_catch_an_upward_import_and_a_cycle():
    # negative controls: a lazy upward import (trees -> hf) and a cycle (engine <-> a probe) must be flagged
    probe = ROOT / "goose" / "trees" / "_probe_for_layout_test.py"
    ring = ROOT / "goose" / "engine" / "_ring_for_layout_test.py"
    probe.write_text("def f():\n    from ..hf import HFTarget\n    return HFTarget\n")
    ring.write_text("from ._loop import decode\n")
    loop = ROOT / "goose" / "engine" / "_loop.py"
    original = loop.read_text()
    try:
        loop.write_text(original + "\nfrom . import _ring_for_layout_test  # noqa\n")
        modules = _modules()
        assert "goose.trees._probe_for_layout_test -> goose.hf (layer 1 goose.trees imports layer 5 goose.hf)" \
            in layering_violations(modules)
        assert ["goose.engine._loop", "goose.engine._ring_for_layout_test"] in import_cycles(modules)
    finally:
        loop.write_text(original)
        probe.unlink()
        ring.unlink()


def test_no_library_module_imports_sim():
    modules = _modules()
    users = sorted(m for m, p in modules.items() if m.startswith("goose") and "sim" in imports_of(p, m, set(modules))
                   | {d.partition(".")[0] for d in imports_of(p, m, set(modules))})
    assert set(users) <= {"goose.cli", "goose._cli_sampling", "goose._cli_predict"}, users
