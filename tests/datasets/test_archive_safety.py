"""Archives, pickles and conversion (reliability.md F13-F16): hostile or broken inputs never become caches."""
from __future__ import annotations

import io
import os
import pickle
import re
import stat
import tarfile

import numpy as np
import pytest

from batchup import config
from batchup._errors import UnsafePickleError
from batchup.datasets import _archive, _cifar, cifar10
from tests.datasets import fakes
from tests.datasets.conftest import dataset_fails


def _tar(add) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        ok = tarfile.TarInfo("cifar-10-batches-py/readme")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"hi"))
        add(tar)
    return buf.getvalue()


def _file(name, data=b"evil", mode=0o644):
    def add(tar):
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), mode
        tar.addfile(info, io.BytesIO(data))
    return add


def _link(name, target, kind):
    def add(tar):
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, target
        tar.addfile(info)
    return add


def _fifo(name):
    def add(tar):
        info = tarfile.TarInfo(name)
        info.type = tarfile.FIFOTYPE
        tar.addfile(info)
    return add


UNSAFE = {
    "dotdot": ("../evil", _file("../evil")),
    "nested-dotdot": ("a/../../evil", _file("a/../../evil")),
    "absolute": ("/abs/evil", _file("/abs/evil")),
    "symlink-abs": ("passwd", _link("passwd", "/etc/passwd", tarfile.SYMTYPE)),
    "symlink-up": ("up", _link("up", "../../x", tarfile.SYMTYPE)),
    "hardlink-out": ("hard", _link("hard", "../../outside", tarfile.LNKTYPE)),
    "fifo": ("pipe", _fifo("pipe")),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_f13_unsafe_members_are_refused_before_anything_is_written(publish, batchup_home, tmp_path, case):
    member, add = UNSAFE[case]
    publish(cifar10, {"cifar-10-python.tar.gz": _tar(add)}, "cifar10")
    before = set(os.listdir(tmp_path)) | {"batchup_home"}
    with dataset_fails(config.UnsafeArchiveError, f"member {re.escape(repr(member))}"):
        cifar10.CIFAR10()
    data = batchup_home / "data"
    assert not (data / cifar10.CACHE).exists()
    assert os.listdir(data / "temp" / "cifar10") == ["cifar-10-python.tar.gz"]  # kept for the next try
    assert set(os.listdir(tmp_path)) == before and not os.path.exists("/abs/evil")


def test_f13_setuid_bits_are_cleared(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(_tar(_file("cifar-10-batches-py/tool", b"#!", 0o4755 | 0o2000)))
    dest = _archive.safe_extract(str(archive), str(tmp_path / "out"))
    mode = os.stat(os.path.join(dest, "cifar-10-batches-py", "tool")).st_mode
    assert not mode & (stat.S_ISUID | stat.S_ISGID) and mode & stat.S_IXUSR


def test_f14_truncated_archive_with_matching_digest(publish, batchup_home):
    whole = fakes.cifar10()[0]["cifar-10-python.tar.gz"]
    publish(cifar10, {"cifar-10-python.tar.gz": whole[: len(whole) // 2]}, "cifar10")
    with dataset_fails(config.ArchiveError, "cifar-10-python.tar.gz"):
        cifar10.CIFAR10()
    assert not (batchup_home / "data" / cifar10.CACHE).exists()


def test_f14_not_a_tar_file(publish):
    publish(cifar10, {"cifar-10-python.tar.gz": b"just some bytes" * 100}, "cifar10")
    with dataset_fails(config.ArchiveError, "cannot read the archive"):
        cifar10.CIFAR10()


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_f15_pickle_calling_a_global_is_refused(publish, batchup_home, tmp_path):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"data": _Evil(marker), "labels": [0]}, protocol=2)
    files, _ = fakes.cifar10(extra={"cifar-10-batches-py/data_batch_1": evil})
    publish(cifar10, files, "cifar10")
    with dataset_fails(pickle.UnpicklingError, r"refusing to load the global (posix|os)\.system") as info:
        cifar10.CIFAR10()
    assert isinstance(info.value.__cause__, UnsafePickleError)
    assert cifar10.fetch_cifar10() is None  # the 0.2 fetch function reports it and gives None
    assert not marker.exists() and not (batchup_home / "data" / cifar10.CACHE).exists()


def test_f15_planted_object_array_in_the_cache_is_refused_and_rebuilt(publish, batchup_home, tmp_path):
    files, ref = fakes.cifar10()
    srv = publish(cifar10, files, "cifar10")
    cifar10.CIFAR10(n_val=5)
    marker = tmp_path / "pwned"
    planted = np.empty(len(ref["train_y"]), dtype=object)
    planted[:] = [_Evil(marker)] * len(planted)
    np.save(batchup_home / "data" / cifar10.CACHE / "train_y.npy", planted, allow_pickle=True)
    ds = cifar10.CIFAR10(n_val=5)  # refused, re-converted
    assert not marker.exists()
    np.testing.assert_array_equal(np.concatenate([ds.train_y, ds.val_y]), ref["train_y"])
    assert sum(srv.requests.values()) == 2  # the tarball was fetched again after its clean-up


def test_f15_truncated_cache_file_is_rebuilt(publish, batchup_home):
    files, ref = fakes.cifar10()
    publish(cifar10, files, "cifar10")
    cifar10.CIFAR10(n_val=5)
    path = batchup_home / "data" / cifar10.CACHE / "test_X_u8.npy"
    path.write_bytes(path.read_bytes()[:-100])
    ds = cifar10.CIFAR10(n_val=5)
    np.testing.assert_array_equal(ds.test_X_u8, ref["test_X"])


def test_f16_crash_during_conversion_leaves_no_cache_and_keeps_the_source(publish, batchup_home, monkeypatch):
    files, ref = fakes.cifar10()
    srv = publish(cifar10, files, "cifar10")
    calls = []
    real = _cifar.images

    def crash_halfway(batch, member):
        calls.append(member)
        if len(calls) == 3:
            raise MemoryError("simulated crash at 50 %")
        return real(batch, member)

    monkeypatch.setattr(_cifar, "images", crash_halfway)
    with pytest.raises(MemoryError):
        cifar10.CIFAR10()
    data = batchup_home / "data"
    assert not (data / cifar10.CACHE).exists()
    assert [n for n in os.listdir(data) if n.startswith("cifar10")] == []
    monkeypatch.setattr(_cifar, "images", real)
    # a SIGKILLed conversion leaves its temporary folder: the next fetch sweeps it
    (data / "cifar10.tmp-999999").mkdir()
    (data / "cifar10.tmp-999999" / "train_X_u8.npy").write_bytes(b"half")
    ds = cifar10.CIFAR10(n_val=5)
    np.testing.assert_array_equal(ds.test_X_u8, ref["test_X"])
    assert sum(srv.requests.values()) == 1  # the verified tarball was reused
    assert not (data / "cifar10.tmp-999999").exists()
    assert not (data / "temp").exists()  # source cleaned up after success, and its folders with it


def test_unfinished_cache_folder_is_not_trusted(publish, batchup_home):
    files, ref = fakes.cifar10()
    publish(cifar10, files, "cifar10")
    (batchup_home / "data" / cifar10.CACHE).mkdir(parents=True)
    ds = cifar10.CIFAR10(n_val=0)
    assert len(ds.train_y) == len(ref["train_y"])


def test_missing_member_is_named(publish):
    files, _ = fakes.cifar10()
    buf = io.BytesIO(files["cifar-10-python.tar.gz"])
    with tarfile.open(fileobj=buf) as src:
        members = {m.name: src.extractfile(m).read() for m in src.getmembers()
                   if not m.name.endswith("test_batch")}
    publish(cifar10, {"cifar-10-python.tar.gz": fakes.tar_gz(members)}, "cifar10")
    with dataset_fails(config.ArchiveError, "test_batch"):
        cifar10.CIFAR10()


def test_restricted_unpickler_loads_numpy_arrays_from_numpy1_pickles(tmp_path):
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    data = pickle.dumps({"data": arr}, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    path = tmp_path / "p"
    path.write_bytes(data)
    np.testing.assert_array_equal(_archive.load_pickle(str(path))["data"], arr)
    path.write_bytes(data[:20])
    with pytest.raises(config.ArchiveError, match="not a valid pickle"):
        _archive.load_pickle(str(path))
