"""``python -m batchup demo --dataset mnist``: MNIST when available, the shipped digits otherwise."""
from __future__ import annotations

import pytest

from batchup import config
from batchup.__main__ import main
from batchup.datasets import mnist
from batchup.demo import run_demo
from tests.datasets import fakes


def test_demo_trains_on_mnist_when_available(publish):
    publish(mnist, fakes.mnist(n_train=60, n_test=20)[0], "mnist")
    lines = []
    acc = run_demo(epochs=2, batch_size=16, progress=False, out=lines.append, dataset="mnist")
    assert lines[0] == "mnist: 50 train / 10 validation / 20 test samples, 28x28 pixels"
    assert "test accuracy" in lines[-2] and "on 20 samples" in lines[-2] and 0.0 <= acc <= 1.0


def test_demo_falls_back_to_digits(server, monkeypatch):
    monkeypatch.setenv(config.MIRROR_ENV, server.url + "/empty")
    lines = []
    run_demo(epochs=1, progress=False, out=lines.append, dataset="mnist")
    assert lines[0].startswith("MNIST is not available (RuntimeError: could not load the MNIST dataset")
    assert "HTTP 404" in lines[0]
    assert lines[1].startswith("digits: 1197 train")


def test_cli_option(publish, capsys):
    publish(mnist, fakes.mnist(n_train=60, n_test=20)[0], "mnist")
    assert main(["demo", "--dataset", "mnist", "--epochs", "1", "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith("mnist: 50 train")
    with pytest.raises(SystemExit):
        main(["demo", "--dataset", "imagenet"])
    with pytest.raises(ValueError, match="dataset must be 'digits' or 'mnist'"):
        run_demo(epochs=1, dataset="cifar")
