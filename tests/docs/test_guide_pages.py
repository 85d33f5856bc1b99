"""Every user-guide page runs as written: its code blocks, in order, in a fresh interpreter.

Each page becomes the script a reader would paste together (see ``guide_blocks``), run by a new
Python in an empty temporary folder with the suite's environment (``KERAS_BACKEND=jax``, no
progress bars, batchup's and Keras' homes inside the folder) and a time limit. The script cannot
reach the internet: blocks that need it, a cluster, a launcher or TensorFlow carry a
``.. batchup-test: skip <reason>`` comment and are left out, and the test names them. Two pages
run at a time (on two cores the pages take about half as long as one after the other).
"""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import guide_blocks
import pytest

import batchup

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide"
PAGES = sorted(p for p in GUIDE.glob("*.rst") if p.name != "index.rst")  # index.rst: the contents
JOBS = min(2, os.cpu_count() or 1)  # pages run at once
PAGE_TIMEOUT = 300  # seconds: a hang guard; the slowest page (Keras) needs about 30 s of CPU

# Runs the page's script as ``__main__`` (so ``if __name__ == "__main__":`` blocks run, as for a
# reader's file) after refusing connections to anything but this machine.
RUNNER = textwrap.dedent("""\
    import runpy, socket, sys
    _connect = socket.socket.connect
    def _local_only(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and isinstance(host, str) \\
                and not host.startswith(("127.", "::1", "localhost")):
            raise OSError(f"a guide page may not reach the internet (tried {host!r}); "
                          "mark the block '.. batchup-test: skip internet'")
        return _connect(self, address)
    socket.socket.connect = _local_only
    sys.argv = [sys.argv[1]]
    runpy.run_path(sys.argv[0], run_name="__main__")
""")


def _tensorflow_installed() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def _left_out(block: guide_blocks.Block) -> bool:
    """Blocks marked for TensorFlow run where it is installed (the CI's TensorFlow venv)."""
    return block.skip is not None and not (block.skip == "tensorflow" and _tensorflow_installed())


def _marked_blocks():
    for page in PAGES:
        try:
            blocks = guide_blocks.read_blocks(page)
        except guide_blocks.PageFormatError:
            continue  # test_page_runs_as_written reports it
        for block in blocks:
            if block.skip:
                yield pytest.param(page, block, id=f"{page.stem}-line{block.line}")


def test_the_guide_has_pages():
    assert len(PAGES) >= 20, [p.name for p in PAGES]


def _run_page(page: Path, tmp: Path) -> tuple:
    """Run the page's script; return ``(returncode or None on timeout, stdout, stderr)``, or None
    when nothing on the page runs here."""
    run = [b for b in guide_blocks.read_blocks(page) if b.is_code and not _left_out(b)]
    if not run:
        return None
    script = tmp / (page.stem + ".py")
    script.write_text(guide_blocks.page_script(page, run), encoding="utf-8")
    work = tmp / "cwd"
    work.mkdir()
    env = dict(os.environ)
    env.update({
        "KERAS_BACKEND": "jax",      # as tests/conftest.py; the Keras page says to choose one
        "TQDM_DISABLE": "1",
        "BATCHUP_HOME": str(tmp / "batchup-home"),
        "KERAS_HOME": str(tmp / "keras-home"),
        "MPLBACKEND": "Agg",
        "PYTHONPATH": os.pathsep.join([str(Path(batchup.__file__).parents[1]), env.get("PYTHONPATH", "")]),
    })
    # A session of its own, so that a page that hangs is ended with its worker processes.
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(script)], cwd=work, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=PAGE_TIMEOUT)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return None, out, err


@pytest.fixture(scope="module")
def page_results(request, tmp_path_factory):
    """Start the selected pages JOBS at a time (most of a page's time is one busy core: imports,
    compiling), in the order the tests ask for them; each test waits for its own page."""
    selected = [item.callspec.params["page"] for item in request.session.items
                if getattr(item, "originalname", None) == "test_page_runs_as_written"]
    with ThreadPoolExecutor(max_workers=JOBS) as pool:
        futures = {page: pool.submit(_run_page, page, tmp_path_factory.mktemp(page.stem)) for page in selected}
        yield futures
        for future in futures.values():
            future.cancel()  # after -x or Ctrl-C, start no more pages


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_page_runs_as_written(page, page_results):
    result = page_results[page].result()
    if result is None:
        pytest.skip(f"{page.name}: every runnable block is marked (see test_marked_block_is_left_out)")
    returncode, out, err = result
    if returncode is None:
        pytest.fail(f"{page.name} did not finish in {PAGE_TIMEOUT} s; output so far:\n{out[-3000:]}\n{err[-6000:]}")
    assert returncode == 0, f"{page.name} failed (line numbers are the page's):\n{out[-3000:]}\n{err[-6000:]}"


@pytest.mark.parametrize("page, block", list(_marked_blocks()))
def test_marked_block_is_left_out(page, block):
    """One skipped item per marked block, so the run's summary says what was left out and why."""
    if not _left_out(block):
        return  # TensorFlow is installed: the block ran with its page
    pytest.skip(f"{page.name} line {block.line}: {guide_blocks.SKIP_REASONS[block.skip]}")
