"""The main job: ``python -m batchup demo`` trains on the shipped digits."""
from __future__ import annotations

import subprocess
import sys

from batchup.__main__ import main
from batchup.demo import load_digits, run_demo


def test_digits_are_shipped_and_well_formed():
    X, y = load_digits()
    assert X.shape == (1797, 1, 8, 8) and X.dtype.name == "float32"
    assert 0.0 <= X.min() and X.max() <= 1.0
    assert sorted(set(y.tolist())) == list(range(10))


def test_demo_beats_ninety_percent():
    lines = []
    accuracy = run_demo(epochs=20, batch_size=64, seed=0, progress=False, out=lines.append)
    assert accuracy > 0.90
    assert any(line.startswith("test accuracy") for line in lines)
    assert any("samples/s" in line for line in lines)
    assert sum("validation loss" in line for line in lines) == 20


def test_demo_is_reproducible():
    a = run_demo(epochs=2, seed=3, progress=False, out=lambda s: None)
    b = run_demo(epochs=2, seed=3, progress=False, out=lambda s: None)
    assert a == b


def test_command_line_options(capsys):
    assert main(["demo", "--epochs", "1", "--batch-size", "32", "--seed", "1", "--no-progress"]) == 0
    assert "test accuracy" in capsys.readouterr().out


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "batchup", "demo", "--epochs", "2"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "test accuracy" in out.stdout
