"""Every standard dataset loads from a local mirror through its public class."""
from __future__ import annotations

import os

import numpy as np
import pytest

from batchup import config
from batchup.datasets import cifar10, cifar100, fashion_mnist, mnist, stl, svhn, usps
from batchup.image.utils import ImageArrayUInt8ToFloat32
from batchup.sources import ArrayDataSource
from tests.datasets import fakes
from tests.datasets.conftest import dataset_fails


def _check_float_view(view, u8, lower=0.0, upper=1.0):
    assert isinstance(view, ImageArrayUInt8ToFloat32)
    assert view.shape == u8.shape and view.dtype == np.float32
    if len(u8):
        got = view[:]
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, u8.astype(np.float32) * ((upper - lower) / 255.0) + lower, rtol=1e-6)


class TestMNIST:
    def test_loads_shapes_dtypes_splits_and_labels(self, publish):
        files, ref = fakes.mnist()
        srv = publish(mnist, files, "mnist")
        ds = mnist.MNIST(n_val=10)
        assert ds.train_X_u8.shape == (20, 1, 28, 28) and ds.train_X_u8.dtype == np.uint8
        assert ds.val_X_u8.shape == (10, 1, 28, 28) and ds.test_X_u8.shape == (12, 1, 28, 28)
        np.testing.assert_array_equal(ds.train_X_u8[:, 0], ref["train_X"][:20])
        np.testing.assert_array_equal(ds.val_X_u8[:, 0], ref["train_X"][20:])
        np.testing.assert_array_equal(ds.test_X_u8[:, 0], ref["test_X"])
        for y, want in ((ds.train_y, ref["train_y"][:20]), (ds.val_y, ref["train_y"][20:]),
                        (ds.test_y, ref["test_y"])):
            assert y.dtype == np.int32
            np.testing.assert_array_equal(y, want)
        for split in ("train", "val", "test"):
            _check_float_view(getattr(ds, f"{split}_X"), getattr(ds, f"{split}_X_u8"))
        assert float(ds.train_X[0, 0, 0, 0]) == 0.0 and float(ds.train_X[0, 0, 0, 1]) == 1.0
        assert sum(srv.requests.values()) == 4

    def test_default_n_val_larger_than_the_fake_set_is_refused(self, publish):
        publish(mnist, fakes.mnist()[0], "mnist")
        with pytest.raises(ValueError, match="there are 30 training samples"):
            mnist.MNIST()

    def test_value_range_and_empty_validation(self, publish, batchup_home):
        srv = publish(mnist, fakes.mnist()[0], "mnist")
        ds = mnist.MNIST(n_val=0, val_lower=-1.0, val_upper=1.0)
        assert ds.val_X_u8.shape == (0, 1, 28, 28) and ds.val_X_u8.dtype == np.uint8
        assert ds.val_y.shape == (0,) and ds.val_y.dtype == np.int32
        assert len(ds.train_y) == 30
        _check_float_view(ds.train_X, ds.train_X_u8, -1.0, 1.0)
        again = mnist.MNIST(n_val=None)
        assert len(again.train_y) == 30 and sum(srv.requests.values()) == 4
        assert not (batchup_home / "data" / "temp").exists()  # the sources and their folders are gone
        mnist.delete_cache()
        assert not (batchup_home / "data" / mnist.CACHE).exists()

    @pytest.mark.parametrize("n_val, exc, match", [
        (-1, ValueError, "n_val must be between 0 and 29"),
        (30, ValueError, "got 30"),
        (2.5, TypeError, "n_val must be an int"),
        (True, TypeError, "n_val"),
    ])
    def test_bad_n_val(self, publish, n_val, exc, match):
        publish(mnist, fakes.mnist()[0], "mnist")
        with pytest.raises(exc, match=match):
            mnist.MNIST(n_val=n_val)

    def test_sources_serve_batches(self, publish):
        publish(mnist, fakes.mnist()[0], "mnist")
        ds = mnist.MNIST(n_val=10)
        src = ds.train_source()
        assert isinstance(src, ArrayDataSource) and src.num_samples() == 20
        X, y = next(iter(src.batch_iterator(8, shuffle=0)))
        assert X.shape == (8, 1, 28, 28) and X.dtype == np.float32 and y.dtype == np.int32
        Xu, yu = next(iter(ds.source("test", uint8=True).batch_iterator(5)))
        assert Xu.dtype == np.uint8
        np.testing.assert_array_equal(Xu, ds.test_X_u8[:5])
        assert ds.val_source(include_indices=True).num_samples() == 10
        with pytest.raises(ValueError, match="split must be one of 'train', 'val', 'test', got 'dev'"):
            ds.source("dev")


def test_fashion_mnist_is_kept_apart_from_mnist(publish, batchup_home):
    m_files, m_ref = fakes.mnist(seed=1)
    f_files, f_ref = fakes.mnist(seed=2, n_train=25)
    publish(mnist, m_files, "mnist")
    publish(fashion_mnist, f_files, "fashion-mnist")
    f = fashion_mnist.FashionMNIST(n_val=5)
    m = mnist.MNIST(n_val=5)
    np.testing.assert_array_equal(f.test_X_u8[:, 0], f_ref["test_X"])
    np.testing.assert_array_equal(m.test_X_u8[:, 0], m_ref["test_X"])
    assert f.train_X.shape == (20, 1, 28, 28) and m.train_X.shape == (25, 1, 28, 28)
    assert f.class_names[9] == "Ankle boot"
    fashion_mnist.delete_cache()
    assert (batchup_home / "data" / mnist.CACHE).exists()
    assert not (batchup_home / "data" / fashion_mnist.CACHE).exists()


def test_svhn_train_test_and_extra(publish):
    files, ref = fakes.svhn()
    publish(svhn, files, "svhn")
    publish(svhn, files, "svhn", attr="EXTRA_FILES")
    ds = svhn.SVHN(n_val=5)
    assert ds.train_X_u8.shape == (15, 3, 32, 32) and ds.test_X_u8.shape == (9, 3, 32, 32)
    np.testing.assert_array_equal(ds.train_X_u8, ref["train_X"][:15])
    np.testing.assert_array_equal(ds.val_X_u8, ref["train_X"][15:])
    np.testing.assert_array_equal(ds.test_X_u8, ref["test_X"])
    np.testing.assert_array_equal(np.concatenate([ds.train_y, ds.val_y]), ref["train_y"])
    assert ds.train_y[0] == 0 and ds.train_y.dtype == np.int32 and ds.test_y.max() <= 9
    _check_float_view(ds.test_X, ds.test_X_u8)
    extra = svhn.SVHNExtra()
    assert extra.X_u8.shape == (11, 3, 32, 32) and extra.X.dtype == np.float32
    np.testing.assert_array_equal(extra.X_u8, ref["extra_X"])
    np.testing.assert_array_equal(extra.y, ref["extra_y"])
    assert extra.source("all").num_samples() == 11
    svhn.delete_cache()


def test_cifar10(publish):
    files, ref = fakes.cifar10()
    publish(cifar10, files, "cifar10")
    ds = cifar10.CIFAR10(n_val=5)
    assert ds.train_X_u8.shape == (15, 3, 32, 32) and ds.val_X_u8.shape == (5, 3, 32, 32)
    np.testing.assert_array_equal(np.concatenate([ds.train_X_u8, ds.val_X_u8]), ref["train_X"])
    np.testing.assert_array_equal(ds.test_X_u8, ref["test_X"])
    np.testing.assert_array_equal(np.concatenate([ds.train_y, ds.val_y]), ref["train_y"])
    np.testing.assert_array_equal(ds.test_y, ref["test_y"])
    assert ds.class_names == ["airplane", "automobile", "bird", "cat", "deer",
                              "dog", "frog", "horse", "ship", "truck"]
    _check_float_view(ds.val_X, ds.val_X_u8)


def test_cifar100_fine_coarse_and_names(publish):
    files, ref = fakes.cifar100()
    publish(cifar100, files, "cifar100")
    ds = cifar100.CIFAR100(n_val=5)
    assert ds.train_X.shape == (20, 3, 32, 32) and ds.test_X.shape == (7, 3, 32, 32)
    np.testing.assert_array_equal(np.concatenate([ds.train_y, ds.val_y]), ref["train_y"])
    np.testing.assert_array_equal(np.concatenate([ds.train_y_coarse, ds.val_y_coarse]), ref["train_y_coarse"])
    np.testing.assert_array_equal(ds.test_y_coarse, ref["test_y_coarse"])
    assert ds.train_y_coarse.dtype == np.int32 and len(ds.val_y_coarse) == 5
    assert ds.class_names == ref["class_names"] and ds.class_names_coarse == ref["class_names_coarse"]
    X, y, yc = next(iter(ds.source("test", coarse=True).batch_iterator(7)))
    np.testing.assert_array_equal(yc, ref["test_y_coarse"])
    empty = cifar100.CIFAR100(n_val=0)
    assert empty.val_y_coarse.shape == (0,) and len(empty.train_y_coarse) == 25


def test_stl_folds_splits_and_unlabelled(publish):
    files, ref = fakes.stl()
    publish(stl, files, "stl10")
    ds = stl.STL(n_val_folds=1)
    assert len(ds.tr_folds) == 10 and all(f.dtype == np.int32 for f in ds.tr_folds)
    for got, want in zip(ds.tr_folds, ref["folds"]):
        np.testing.assert_array_equal(got, want)
    val = ref["folds"][-1]
    np.testing.assert_array_equal(ds.val_X_u8, ref["train_X"][val])
    np.testing.assert_array_equal(ds.val_y, ref["train_y"][val])
    train = np.setdiff1d(np.arange(20), val)
    np.testing.assert_array_equal(ds.train_X_u8, ref["train_X"][train])
    np.testing.assert_array_equal(ds.test_X_u8, ref["test_X"])
    np.testing.assert_array_equal(ds.test_y, ref["test_y"])
    np.testing.assert_array_equal(ds.unl_X_u8, ref["unlabeled_X"])
    assert ds.class_names == ref["class_names"]
    _check_float_view(ds.train_X, ds.train_X_u8)
    (unl,) = next(iter(ds.source("unlabeled").batch_iterator(7)))
    assert unl.dtype == np.float32 and unl.shape == (7, 3, 96, 96)

    three = stl.STL(n_val_folds=3)
    joined = np.concatenate(ref["folds"][-3:])
    assert len(three.val_y) == len(np.unique(joined))  # overlapping folds: each index once
    assert len(three.train_y) + len(three.val_y) == 20
    none = stl.STL(n_val_folds=None)
    assert len(none.train_y) == 20 and none.val_X_u8.shape == (0, 3, 96, 96)
    with pytest.raises(ValueError, match="n_val_folds must be between 0 and 10"):
        stl.STL(n_val_folds=11)


def test_usps_float32_splits(publish):
    files, ref = fakes.usps()
    publish(usps, files, "usps")
    ds = usps.USPS(n_val=10)
    assert ds.train_X.shape == (30, 1, 16, 16) and ds.train_X.dtype == np.float32
    np.testing.assert_array_equal(ds.val_X, ref["train_X"][30:])
    np.testing.assert_array_equal(ds.test_y, ref["test_y"])
    assert 0.0 <= ds.test_X.min() and ds.test_X.max() <= 1.0 and ds.train_y.dtype == np.int32
    empty = usps.USPS(n_val=0)
    assert empty.val_X.shape == (0, 1, 16, 16) and empty.val_X.dtype == np.float32
    with pytest.raises(ValueError, match="no uint8 images"):
        ds.source("train", uint8=True)


def test_usps_failed_fetch_raises(server, monkeypatch):
    monkeypatch.setenv(config.MIRROR_ENV, server.url + "/nothing")
    with dataset_fails(config.DownloadError, "HTTP 404") as info:
        usps.USPS()
    assert info.value.__cause__.status == 404 and "mirror setting: " + server.url in str(info.value)


def test_importing_dataset_modules_creates_nothing(tmp_path, monkeypatch):
    import importlib
    import subprocess
    import sys

    home = tmp_path / "fresh"
    code = ("import batchup.config, batchup.datasets.dataset\n"
            + "".join(f"import batchup.datasets.{m}\n" for m in
                      ("mnist", "fashion_mnist", "svhn", "cifar10", "cifar100", "stl", "usps")))
    env = dict(os.environ, BATCHUP_HOME=str(home), HOME=str(tmp_path))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
    assert not home.exists() and not (tmp_path / ".batchup").exists()
    importlib.import_module("batchup.datasets")
