"""The demo's notebooks: the bundled ones copied into the user's working directory.

A copy the user edited is kept: ``.nbhooks-demo.json`` in the working directory remembers the
hash of each file as it was copied.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

QUICKSTART = "quickstart.ipynb"
MANIFEST = ".nbhooks-demo.json"


def bundled_notebooks_dir() -> Path:
    """The repository's ``notebooks/`` in a source checkout, else the wheel's ``_notebooks``."""
    package = Path(__file__).resolve().parent.parent  # nbhooks/
    repo = package.parent
    if (repo / "pyproject.toml").is_file() and (repo / "notebooks").is_dir():
        return repo / "notebooks"
    return package / "_notebooks"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_notebooks(src: Path, dest: Path) -> list[Path]:
    """Copy the files of ``src`` into ``dest`` without overwriting copies the user edited.

    ``dest/.nbhooks-demo.json`` remembers the hash of each file as copied: a file still equal
    to it is refreshed from ``src``; a file that differs was edited and is kept.
    """
    manifest_path = dest / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    sources = sorted(p for p in src.glob("*") if p.is_file() and not p.name.startswith("."))
    for source in sources:
        target = dest / source.name
        new_hash = _sha256(source)
        if target.exists() and _sha256(target) not in (new_hash, manifest.get(source.name)):
            print(f"nbhooks demo: keeping your edited {target}")
            continue
        shutil.copyfile(source, target)
        manifest[source.name] = new_hash
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return [dest / p.name for p in sources]


def write_fallback_quickstart(path: Path) -> None:
    """Write a minimal quickstart to ``path`` (used only when none is bundled)."""
    import nbformat

    cells = [
        nbformat.v4.new_markdown_cell(
            "# nbhooks demo\nA small dense network on scikit-learn's bundled digits."
        ),
        nbformat.v4.new_code_cell(
            "from nbhooks.demo import digits_input_fns, make_demo_estimator\n\n"
            "train_fn, eval_fn, train_eval_fn = digits_input_fns()\n"
            "estimator = make_demo_estimator()"
        ),
        nbformat.v4.new_code_cell(
            "estimator.train(train_fn, steps=500)\nestimator.evaluate(eval_fn)"
        ),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


def prepare_notebooks(workdir: Path) -> Path:
    """Copy the bundled notebooks into ``workdir``; return the path of the quickstart."""
    src = bundled_notebooks_dir()
    if src.is_dir():
        copy_notebooks(src, workdir)
    quickstart = workdir / QUICKSTART
    if not quickstart.exists():
        write_fallback_quickstart(quickstart)
    return quickstart
