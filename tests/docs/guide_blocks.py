"""Read the code blocks of a user-guide page and turn them into the script a reader would run.

The rules, which the guide pages follow:

* Python is written in ``.. code-block:: python`` and runs, in page order, in one interpreter.
* ``.. code-block:: pycon`` is an interactive session: it runs in the same interpreter, and the
  output the page shows is checked (doctest, with ``ELLIPSIS`` and ``NORMALIZE_WHITESPACE``).
* Other languages (``bash``, ``shell``, ``text``, ``ini``, ...) are shown, not run.
* A bare ``::`` literal block is refused: its language would be implicit, and Python hidden in one
  would never be run. Write ``.. code-block:: python`` (or ``text``) instead.
* A block that cannot run on a test machine is marked by an RST comment on the line before it
  (blank lines between are allowed): ``.. batchup-test: skip <reason>``, where the reason is one of
  :data:`SKIP_REASONS`. The page test skips exactly those blocks and reports why.
"""
from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

#: Why a block may be left out of a page's run, and what that means.
SKIP_REASONS = {
    "internet": "downloads from the internet",
    "cluster": "needs a Dask or Ray cluster",
    "launcher": "needs several processes started together (torchrun, or one process per rank)",
    "tensorflow": "needs TensorFlow, which the test extras leave out",
}

RUN_LANGUAGES = frozenset({"python", "python3", "py"})
SESSION_LANGUAGES = frozenset({"pycon"})

_DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\.[ \t]+(?:code-block|code|sourcecode)::[ \t]*(?P<lang>\S*)[ \t]*$")
_MARKER = re.compile(r"^[ \t]*\.\.[ \t]+batchup-test:(?P<rest>.*)$")
_OPTION = re.compile(r"^[ \t]*:[\w-]+:")


@dataclass(frozen=True)
class Block:
    """One code block of a page."""

    language: str   # "" for a bare ``::`` literal block
    line: int       # 1-based line of the block's first line of content
    lines: tuple    # the content, dedented
    skip: str | None = None

    @property
    def is_code(self) -> bool:
        """Whether the block is Python or a Python session (marked or not)."""
        return self.language in RUN_LANGUAGES | SESSION_LANGUAGES


class PageFormatError(ValueError):
    """A page breaks the rules of the module docstring."""


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _content(lines: list, start: int, parent_indent: int, *, options: bool) -> tuple:
    """Return (first content line index, content lines, index after the block)."""
    i = start
    if options:
        while i < len(lines) and lines[i].strip() and _OPTION.match(lines[i]) and _indent(lines[i]) > parent_indent:
            i += 1
    while i < len(lines) and not lines[i].strip():
        i += 1
    first = i
    while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > parent_indent):
        i += 1
    end = i
    while end > first and not lines[end - 1].strip():
        end -= 1
    return first, lines[first:end], i


def read_blocks(path: Path) -> list:
    """Every code and literal block of the page at ``path``, with its skip marker."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list = []
    pending: tuple | None = None   # (line number, reason) of a marker waiting for its block
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = _MARKER.match(line)
        directive = _DIRECTIVE.match(line)
        if marker:
            words = marker.group("rest").split()
            if len(words) != 2 or words[0] != "skip" or words[1] not in SKIP_REASONS:
                raise PageFormatError(
                    f"{path.name}:{i + 1}: expected '.. batchup-test: skip <reason>' with a reason "
                    f"in {sorted(SKIP_REASONS)}, got {line.strip()!r}")
            if pending is not None:
                raise PageFormatError(f"{path.name}:{pending[0]}: skip marker not followed by a code block")
            pending = (i + 1, words[1])
            i += 1
            continue
        if directive or (line.rstrip().endswith("::") and not line.lstrip().startswith("..")):
            if directive:
                language = directive.group("lang").lower()
                first, content, i = _content(lines, i + 1, _indent(line), options=True)
            else:
                language = ""
                first, content, i = _content(lines, i + 1, _indent(line), options=False)
            if not content:
                raise PageFormatError(f"{path.name}:{first}: empty code block")
            blocks.append(Block(language, first + 1, tuple(textwrap.dedent("\n".join(content)).split("\n")),
                                pending[1] if pending else None))
            pending = None
            continue
        if line.strip() and pending is not None:
            raise PageFormatError(f"{path.name}:{pending[0]}: skip marker not followed by a code block")
        i += 1
    if pending is not None:
        raise PageFormatError(f"{path.name}:{pending[0]}: skip marker not followed by a code block")
    bare = [b.line for b in blocks if b.language == ""]
    if bare:
        raise PageFormatError(
            f"{path.name}: bare '::' literal blocks at lines {bare}; write '.. code-block:: python' "
            "(run by the page test) or '.. code-block:: text' (shown only)")
    return blocks


def page_script(path: Path, blocks: list) -> str:
    """The Python blocks among ``blocks`` as one script whose line numbers are the page's.

    The caller chooses the blocks (leaving out the marked ones it cannot run).

    A traceback from the script therefore points at the line of the ``.rst`` file. A ``pycon`` block
    becomes one line that runs it as a doctest in the script's globals.
    """
    n_lines = len(path.read_text(encoding="utf-8").splitlines())
    out = [""] * n_lines
    for block in blocks:
        if not block.is_code:
            continue
        if block.language in SESSION_LANGUAGES:
            session = "\n".join(block.lines) + "\n"
            out[block.line - 1] = (
                "import doctest as _dt; _runner = _dt.DocTestRunner(optionflags=_dt.ELLIPSIS | _dt.NORMALIZE_WHITESPACE); "
                f"_runner.run(_dt.DocTestParser().get_doctest({session!r}, globals(), {path.name!r}, {path.name!r}, "
                f"{block.line - 1}), clear_globs=False); "
                "assert not _runner.failures, 'the output shown on the page differs (see above)'"
            )
        else:
            for k, text in enumerate(block.lines):
                out[block.line - 1 + k] = text
    return "\n".join(out) + "\n"
