"""File-backed, out-of-core, table and inventory sources through the worker pools equal the serial stream."""
from __future__ import annotations

import numpy as np
import pytest

from batchup.arrays import FileArray, read_npy
from batchup.records import FileDataEncoder, InventorySource, LabelTargetEncoder
from batchup.sources import ArrayDataSource
from batchup.tables import DataFrameSource
from tests.helpers import assert_batches_equal, stream

parallel = pytest.importorskip("batchup.parallel")
prep = pytest.importorskip("sklearn.preprocessing")

N = 30


@pytest.fixture(scope="module")
def npy_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("npy")
    for i in range(N):
        np.save(root / f"{i}.npy", np.full(4, i, dtype=np.int32))
    return root


def _read(fh):  # noqa: ANN001 - module level, so it pickles
    return np.load(fh)


def _serial_and_pooled(ds, kind: str, bs: int = 7):  # noqa: ANN001
    serial = stream(ds.batch_iterator(bs, shuffle=5))
    pooled_ds = parallel.prefetch(ds, 2, kind=kind)
    try:
        pooled = stream(pooled_ds.batch_iterator(bs, shuffle=5))
    finally:
        pooled_ds.close()
    return serial, pooled


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_file_array(npy_dir, kind):
    """A FileArray source gives the serial batches in thread and process pools."""
    fa = FileArray([f"{i}.npy" for i in range(N)], read_npy, base_dir=npy_dir, max_workers=2)
    serial, pooled = _serial_and_pooled(ArrayDataSource([fa, np.arange(N)]), kind)
    assert_batches_equal(pooled, serial)


def test_memmap_in_process_pool(tmp_path):
    """A memmap source (sorted reads in the workers) gives the serial batches."""
    mm = np.memmap(tmp_path / "m.dat", dtype=np.float32, mode="w+", shape=(N, 3))
    mm[:] = np.arange(N * 3).reshape(N, 3)
    mm.flush()
    ro = np.memmap(tmp_path / "m.dat", dtype=np.float32, mode="r", shape=(N, 3))
    serial, pooled = _serial_and_pooled(ArrayDataSource([ro]), "process")
    assert_batches_equal(pooled, serial)


def test_dataframe_source_in_process_pool():
    """A DataFrameSource with sklearn encoders is prepared in worker processes."""
    cats = np.array(["a", "b", "c"])[np.arange(N) % 3]
    le = prep.LabelEncoder().fit(cats)
    ds = DataFrameSource({"c": cats, "v": np.arange(N)}, x_structure=[("c", le), "v"], y_structure="v")
    serial, pooled = _serial_and_pooled(ds, "process")
    assert_batches_equal(pooled, serial)


def test_inventory_source_in_thread_pool(npy_dir):
    """An InventorySource loading files is prepared in worker threads."""
    inventory = {"file_name": [f"{i}.npy" for i in range(N)], "label": [i % 2 for i in range(N)]}
    ds = InventorySource(inventory, FileDataEncoder(_read, npy_dir), LabelTargetEncoder())
    serial, pooled = _serial_and_pooled(ds, "thread")
    assert_batches_equal(pooled, serial)
