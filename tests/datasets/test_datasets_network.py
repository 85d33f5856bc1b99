"""The real files from their official hosts (skipped unless BATCHUP_NETWORK_TESTS=1)."""
from __future__ import annotations

import numpy as np
import pytest

from batchup.datasets import mnist, usps


@pytest.mark.network
def test_real_mnist_matches_its_published_digests():
    ds = mnist.MNIST(n_val=10000)
    assert ds.train_X.shape == (50000, 1, 28, 28) and ds.test_X.shape == (10000, 1, 28, 28)
    assert ds.train_y.dtype == np.int32 and set(np.unique(ds.test_y)) == set(range(10))


@pytest.mark.network
def test_real_usps_matches_its_published_digest():
    ds = usps.USPS()
    assert ds.train_X.shape == (6562, 1, 16, 16) and ds.val_X.shape == (729, 1, 16, 16)
    assert ds.test_X.shape == (2007, 1, 16, 16) and 0.0 <= float(ds.test_X.min())
