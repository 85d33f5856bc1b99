"""The "Variable-length sequences" guide page runs as written and prints what it shows.

Every ``.. code-block:: python`` block of the page runs in order in one fresh
interpreter; a ``.. code-block:: text`` block right after one is its expected
output.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "guide" / "35_variable_length_sequences.rst"

DRIVER = """
import contextlib, io, json, sys
blocks = json.loads(sys.stdin.read())
ns = {"__name__": "__main__"}
outputs = []
for i, code in enumerate(blocks):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(code, f"<guide block {i}>", "exec"), ns)
    outputs.append(buf.getvalue())
print(json.dumps(outputs))
"""


def page_blocks(path: Path) -> list:
    """Return ``[(kind, text)]`` for the code blocks of an rst page, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(".. code-block:: "):
            kind = line.split("::", 1)[1].strip()
            i += 1
            body = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith("   ")):
                body.append(lines[i])
                i += 1
            blocks.append((kind, textwrap.dedent("\n".join(body)).strip("\n")))
            continue
        i += 1
    return blocks


def test_guide_page_runs_and_prints_what_it_shows(tmp_path):
    blocks = page_blocks(PAGE)
    code = [text for kind, text in blocks if kind == "python"]
    assert len(code) >= 10
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER], input=json.dumps(code), capture_output=True, text=True,
        cwd=tmp_path, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    outputs = iter(json.loads(proc.stdout.splitlines()[-1]))
    checked = 0
    for (kind, _code), nxt in zip(blocks, blocks[1:] + [("", "")]):
        if kind != "python":
            continue
        printed = next(outputs).rstrip("\n")
        if nxt[0] == "text":
            assert printed == nxt[1], f"block printed:\n{printed}\nthe page shows:\n{nxt[1]}"
            checked += 1
    assert checked >= 10
