"""Tiny files in each dataset's real on-disk format, with the arrays they should convert to."""
from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
import tempfile

import numpy as np


def tar_gz(members: dict[str, bytes]) -> bytes:
    """Return a .tar.gz holding ``members`` (name -> bytes) as regular files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _idx(arr: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return gzip.compress(header + arr.astype(np.uint8).tobytes())


def mnist(seed: int = 0, n_train: int = 30, n_test: int = 12) -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train_X": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_y": rng.integers(0, 10, n_train).astype(np.uint8),
        "test_X": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_y": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    arrays["train_X"][0, 0, 0], arrays["train_X"][0, 0, 1] = 0, 255
    files = {
        "train-images-idx3-ubyte.gz": _idx(arrays["train_X"]),
        "train-labels-idx1-ubyte.gz": _idx(arrays["train_y"]),
        "t10k-images-idx3-ubyte.gz": _idx(arrays["test_X"]),
        "t10k-labels-idx1-ubyte.gz": _idx(arrays["test_y"]),
    }
    return files, arrays


def _pickle(obj: object) -> bytes:
    return pickle.dumps(obj, protocol=2)


def cifar10(seed: int = 0, per_batch: int = 4, n_test: int = 6,
            extra: dict[str, bytes] | None = None) -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, (5 * per_batch + n_test, 3072), dtype=np.uint8)
    y = rng.integers(0, 10, len(X))
    members = {}
    for i in range(5):
        sl = slice(i * per_batch, (i + 1) * per_batch)
        members[f"cifar-10-batches-py/data_batch_{i + 1}"] = _pickle(
            {"batch_label": f"training batch {i + 1} of 5", "labels": y[sl].tolist(), "data": X[sl],
             "filenames": [f"img{j}.png" for j in range(per_batch)]})
    members["cifar-10-batches-py/test_batch"] = _pickle(
        {"batch_label": "testing batch 1 of 1", "labels": y[-n_test:].tolist(), "data": X[-n_test:]})
    members["cifar-10-batches-py/batches.meta"] = _pickle({"label_names": ["airplane"] * 10})
    members.update(extra or {})
    arrays = {"train_X": X[:-n_test].reshape(-1, 3, 32, 32), "train_y": y[:-n_test],
              "test_X": X[-n_test:].reshape(-1, 3, 32, 32), "test_y": y[-n_test:]}
    return {"cifar-10-python.tar.gz": tar_gz(members)}, arrays


def cifar100(seed: int = 0, n_train: int = 25, n_test: int = 7) -> tuple[dict[str, bytes], dict]:
    rng = np.random.default_rng(seed)
    out = {}
    members = {}
    for split, n in (("train", n_train), ("test", n_test)):
        X = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine, coarse = rng.integers(0, 100, n), rng.integers(0, 20, n)
        members[f"cifar-100-python/{split}"] = _pickle(
            {"data": X, "fine_labels": fine.tolist(), "coarse_labels": coarse.tolist()})
        out[f"{split}_X"], out[f"{split}_y"], out[f"{split}_y_coarse"] = X.reshape(-1, 3, 32, 32), fine, coarse
    out["class_names"] = [f"fine_{i}" for i in range(100)]
    out["class_names_coarse"] = [f"coarse_{i}" for i in range(20)]
    members["cifar-100-python/meta"] = _pickle(
        {"fine_label_names": out["class_names"], "coarse_label_names": out["class_names_coarse"]})
    return {"cifar-100-python.tar.gz": tar_gz(members)}, out


def _savemat(X: np.ndarray, y: np.ndarray) -> bytes:
    from scipy.io import savemat

    buf = io.BytesIO()
    savemat(buf, {"X": X, "y": y})
    return buf.getvalue()


def svhn(seed: int = 0, n_train: int = 20, n_test: int = 9,
         n_extra: int = 11) -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    files, arrays = {}, {}
    for name, key, n in (("train_32x32.mat", "train", n_train), ("test_32x32.mat", "test", n_test),
                         ("extra_32x32.mat", "extra", n_extra)):
        X = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        y = rng.integers(0, 10, n)
        y[0] = 0
        files[name] = _savemat(X.transpose(2, 3, 1, 0), np.where(y == 0, 10, y).astype(np.uint8)[:, None])
        arrays[f"{key}_X"], arrays[f"{key}_y"] = X, y
    return files, arrays


def stl(seed: int = 0, n_train: int = 20, n_test: int = 10, n_unl: int = 7,
        fold_size: int = 6) -> tuple[dict[str, bytes], dict]:
    rng = np.random.default_rng(seed)
    members, arrays = {}, {}
    for split, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unl)):
        X = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)
        members[f"stl10_binary/{split}_X.bin"] = X.swapaxes(2, 3).tobytes()  # column-major images
        arrays[f"{split}_X"] = X
        if split != "unlabeled":
            y = rng.integers(0, 10, n)
            members[f"stl10_binary/{split}_y.bin"] = (y + 1).astype(np.uint8).tobytes()
            arrays[f"{split}_y"] = y
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    members["stl10_binary/class_names.txt"] = ("\n".join(names) + "\n").encode()
    folds = [rng.choice(n_train, fold_size, replace=False) for _ in range(10)]
    members["stl10_binary/fold_indices.txt"] = "".join(" ".join(map(str, f)) + " \n" for f in folds).encode()
    arrays["folds"], arrays["class_names"] = folds, names
    return {"stl10_binary.tar.gz": tar_gz(members)}, arrays


def usps(seed: int = 0, n_train: int = 40, n_test: int = 15) -> tuple[dict[str, bytes], dict]:
    import h5py

    rng = np.random.default_rng(seed)
    arrays = {}
    fd, path = tempfile.mkstemp(suffix=".h5")
    os.close(fd)
    try:
        with h5py.File(path, "w") as f:
            g = f.create_group("usps")
            for split, n in (("train", n_train), ("test", n_test)):
                arrays[f"{split}_X"] = rng.random((n, 1, 16, 16)).astype(np.float32)
                arrays[f"{split}_y"] = rng.integers(0, 10, n).astype(np.int32)
                g[f"{split}_X"] = arrays[f"{split}_X"]
                g[f"{split}_y"] = arrays[f"{split}_y"]
        with open(path, "rb") as f:
            data = f.read()
    finally:
        os.remove(path)
    return {"usps.h5": data}, arrays
