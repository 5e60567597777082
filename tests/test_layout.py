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
