"""The README runs as written: every shell and Python block, in order, as a new user would type them.

The blocks run in a scratch folder holding a copy of ``samples/`` (so the
README's relative paths resolve as they do at the repository root, and
``import irc`` finds the installed package, not the checkout).  A block is
skipped only when the line before it says so in an HTML comment
(``<!-- not run by tests/test_readme.py: why -->``): the install commands,
which CI itself runs (the ``irc ...`` commands on those lines still run), the
ones that need a running Dask scheduler, and the benchmarks (started with
``--help`` below).  Blocks
that need an optional extra (nir, dask) are skipped when it is missing.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
SKIP = re.compile(r"<!--\s*not run by tests/test_readme\.py")
NEEDS = {"--emit nir": "nir", ".nir": "nir", "dask": "dask", "--workers": "dask", "[cluster]": "dask"}


def blocks() -> list[tuple[int, str, str]]:
    """(line, language, text) of every fenced bash/python block not marked as skipped."""
    lines = open(README).read().splitlines()
    out, i = [], 0
    while i < len(lines):
        m = re.match(r"^```(bash|python)\s*$", lines[i])
        if not m:
            i += 1
            continue
        prev = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        text = "\n".join(lines[i + 1:end])
        if not SKIP.search(prev):
            out.append((i + 1, m.group(1), text))
        elif m.group(1) == "bash":  # the irc commands of a skipped line still run (the quickstart's, after pip)
            irc_parts = [p.strip() for line in text.splitlines() for p in line.split("&&") if p.strip().startswith("irc ")
                         and "--scheduler" not in p]  # those need the scheduler the skipped block starts
            if irc_parts:
                out.append((i + 1, "bash", "\n".join(irc_parts)))
        i = end + 1
    return out


def missing_extra(text: str) -> str | None:
    for marker, module in NEEDS.items():
        if marker in text and importlib.util.find_spec(module) is None:
            return module
    return None


def test_the_readme_has_runnable_blocks():
    found = blocks()
    assert sum(lang == "python" for _, lang, _ in found) >= 2 and sum(lang == "bash" for _, lang, _ in found) >= 4


@pytest.mark.slow
def test_every_readme_block_runs_as_written(tmp_path):
    shutil.copytree(os.path.join(ROOT, "samples"), tmp_path / "samples")
    env = dict(os.environ, IRC_PROGRESS_INTERVAL="3600", MPLBACKEND="Agg")
    env.pop("PYTHONPATH", None)
    ran = 0
    for line, lang, text in blocks():
        if lang == "bash":  # a command that needs a missing extra is left out, the others run
            text = "\n".join(c for c in text.replace("\\\n", " ").splitlines() if not missing_extra(c))
            cmd = ["bash", "-e", "-o", "pipefail", "-c", text]
        elif missing_extra(text):
            continue
        else:
            cmd = [sys.executable, "-c", text]
        start = time.perf_counter()
        r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        print(f"README.md:{line} ({lang}): {time.perf_counter() - start:.1f} s")
        assert r.returncode == 0, f"README.md:{line} ({lang}) failed:\n{text}\n--- stderr:\n{r.stderr[-3000:]}"
        assert "Traceback" not in r.stderr, f"README.md:{line}: {r.stderr[-3000:]}"
        ran += 1
    assert ran >= 6


def scripts() -> list[str]:
    """The benchmarks a user runs (files with a __main__ guard; the others are their helpers)."""
    folder = os.path.join(ROOT, "benchmarks")
    return sorted(f for f in os.listdir(folder) if f.endswith(".py") and "__main__" in open(os.path.join(folder, f)).read())


@pytest.mark.parametrize("script", scripts())
def test_benchmarks_start_from_the_repository_root(script):
    """`python benchmarks/x.py --help` from the repo root: the checkout imports as the installed package."""
    r = subprocess.run([sys.executable, os.path.join("benchmarks", script), "--help"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "usage" in r.stdout.lower()


def test_the_api_imports_from_the_repository_root():
    code = "import irc; g = irc.load('samples/digits/digits_cnn.onnx'); print(g.inputs[0].shape)"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "('N', 1, 8, 8)" in r.stdout


def test_the_readme_op_table_is_what_the_registries_say():
    """The README's op table is exactly `python -m irc.optable` (regenerate it when an op is added)."""
    from irc.optable import BEGIN, END, render

    with open(README, encoding="utf-8") as f:
        text = f.read()
    assert BEGIN in text and END in text, "README lost its op-table markers"
    table = text[text.index(BEGIN) + len(BEGIN):text.index(END)].strip("\n")
    assert table == render().strip("\n"), "README op table is stale: paste `python -m irc.optable` into it"
    # the ops issue 13 added are all in it, each with its frontend name
    for name in ("Pow", "Sqrt", "Sum", "HardSigmoid", "HardSwish", "Erf", "Gelu", "LRN", "Resize", "ConvTranspose",
                 "LSTM", "GRU", "LayerNormalization"):
        assert f"| `{name}` | yes |" in table
    assert "If" in table.split("ONNX operators:")[1].split("Keras layers:")[0].replace("\n", " ").split(", ")
