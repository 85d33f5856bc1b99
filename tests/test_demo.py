"""The main job: ``python -m batchup demo`` trains on the shipped digits."""
from __future__ import annotations

import io
import subprocess
import sys

import pytest

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


@pytest.mark.parametrize("options, error, message", [
    ({"epochs": 0}, ValueError, "epochs must be a positive int, got 0"),
    ({"epochs": 2.0}, TypeError, "epochs must be an int, got 2.0"),
    ({"batch_size": -1}, ValueError, "batch_size must be a positive int, got -1"),
    ({"batch_size": True}, TypeError, "batch_size must be an int, got True"),
    ({"seed": -1}, ValueError, r"seed must be an int from 0 to 2\*\*32 - 1, got -1"),
    ({"seed": 2**32}, ValueError, "seed must be an int from 0 to 2"),
    ({"seed": "0"}, TypeError, "seed must be an int, got '0'"),
    ({"lr": 0.0}, ValueError, "lr must be a finite number greater than 0, got 0.0"),
    ({"lr": float("nan")}, ValueError, "lr must be a finite number greater than 0, got nan"),
    ({"lr": "0.1"}, TypeError, "lr must be a number, got '0.1'"),
    ({"dataset": "cifar"}, ValueError, "dataset must be 'digits' or 'mnist', got 'cifar'"),
])
def test_demo_rejects_bad_options_before_training(options, error, message):
    lines = []
    with pytest.raises(error, match=message):
        run_demo(progress=False, out=lines.append, **options)
    assert lines == []


def test_demo_accepts_the_largest_seed():
    lines = []
    accuracy = run_demo(epochs=2, seed=2**32 - 1, progress=False, out=lines.append)
    assert 0.0 <= accuracy <= 1.0
    assert sum("validation loss" in line for line in lines) == 2


def test_demo_with_progress_but_no_terminal_prints_the_epoch_lines(monkeypatch):
    """Without a terminal no bar is drawn, so the summaries still reach ``out``."""
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal, even under pytest -s
    lines = []
    run_demo(epochs=2, progress=True, out=lines.append)
    assert [line.split(":")[0] for line in lines[1:3]] == ["epoch 1", "epoch 2"]
