"""The reader of guide pages: which blocks run, skip markers, the page rules, line numbers kept."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import guide_blocks
import pytest

PAGE = textwrap.dedent("""\
    Title
    =====

    Some text:

    .. code-block:: python

       import math
       x = math.sqrt(16)

    Shown only:

    .. code-block:: bash

       pip install batchup

    .. batchup-test: skip internet
    .. code-block:: python

       download_everything()

    A session:

    .. code-block:: pycon
       :caption: checked output

       >>> x + 1
       5.0

    Indented inside a list:

    * item

      .. code-block:: python

         if x:
             y = 2
    """)


def write(tmp_path, text, name="page.rst"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def run_script(tmp_path, path, blocks):
    script = tmp_path / "page.py"
    script.write_text(guide_blocks.page_script(path, blocks), encoding="utf-8")
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)


def test_blocks_languages_markers_and_lines(tmp_path):
    blocks = guide_blocks.read_blocks(write(tmp_path, PAGE))
    assert [(b.language, b.line, b.skip) for b in blocks] == [
        ("python", 8, None), ("bash", 15, None), ("python", 20, "internet"), ("pycon", 27, None),
        ("python", 36, None),
    ]
    assert blocks[0].lines == ("import math", "x = math.sqrt(16)")
    assert blocks[4].lines == ("if x:", "    y = 2")
    assert [b.is_code for b in blocks] == [True, False, True, True, True]


def unmarked(path):
    return [b for b in guide_blocks.read_blocks(path) if not b.skip]


def test_script_keeps_the_page_line_numbers(tmp_path):
    path = write(tmp_path, PAGE)
    lines = guide_blocks.page_script(path, unmarked(path)).split("\n")
    assert lines[7] == "import math" and lines[35] == "if x:"
    assert "download_everything" not in "\n".join(lines)
    everything = guide_blocks.page_script(path, guide_blocks.read_blocks(path)).split("\n")
    assert everything[19] == "download_everything()"   # the caller decides what is left out


def test_a_page_that_runs_passes_and_its_session_output_is_checked(tmp_path):
    path = write(tmp_path, PAGE)
    out = run_script(tmp_path, path, unmarked(path))
    assert out.returncode == 0, out.stdout + out.stderr
    wrong = write(tmp_path, PAGE.replace("   5.0", "   6.0"), "wrong.rst")
    out = run_script(tmp_path, wrong, unmarked(wrong))
    assert out.returncode != 0
    assert "Expected:" in out.stdout and "the output shown on the page differs" in out.stderr


def test_an_error_names_the_line_of_the_page(tmp_path):
    path = write(tmp_path, PAGE.replace("x = math.sqrt(16)", "x = undefined_name"))
    out = run_script(tmp_path, path, unmarked(path))
    assert "line 9" in out.stderr and "NameError" in out.stderr


@pytest.mark.parametrize("text, match", [
    ("Text::\n\n   x = 1\n", r"bare '::' literal blocks at lines \[6\]"),
    (".. batchup-test: skip network\n.. code-block:: python\n\n   x = 1\n", "reason in"),
    (".. batchup-test: run\n.. code-block:: python\n\n   x = 1\n", "expected"),
    (".. batchup-test: skip internet\n\nA paragraph.\n", "not followed by a code block"),
    ("Text.\n\n.. batchup-test: skip internet\n", "not followed by a code block"),
    (".. code-block:: python\n\nText.\n", "empty code block"),
])
def test_page_rules_are_enforced(tmp_path, text, match):
    with pytest.raises(guide_blocks.PageFormatError, match=match):
        guide_blocks.read_blocks(write(tmp_path, "Title\n=====\n\n" + text))
