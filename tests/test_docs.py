"""The docs: tutorials run, the site builds strictly offline."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_tutorial_code_runs():
    text = (ROOT / "docs" / "tutorials" / "custom-source.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 4
    namespace: dict = {}
    exec(compile("\n".join(blocks), "custom-source.md", "exec"), namespace)  # noqa: S102
    assert "KeywordSource" in namespace and "MostConfidentChain" in namespace


@pytest.mark.skipif(shutil.which("mkdocs") is None and sys.modules.get("mkdocs") is None,
                    reason="mkdocs not installed (docs extra)")
def test_docs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    html = (tmp_path / "theory" / "index.html").read_text()
    assert "arithmatex" in html and (tmp_path / "assets" / "katex" / "katex.min.js").exists()
