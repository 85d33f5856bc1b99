"""Every dataset file has an ordered list of URLs: tried in order, each verified, every failure reported.

A failed fetch leaves nothing behind: no partial file and no folder it made
(the lock files in ``<data dir>/.locks`` are kept on purpose).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from batchup import config
from batchup.datasets import cifar10, cifar100, dataset, fashion_mnist, mnist, stl, svhn, usps
from tests.datasets import fakes
from tests.datasets.conftest import closed_port, dataset_fails, failure_of, leftovers, sha256

MODULES = [mnist, fashion_mnist, svhn, cifar10, cifar100, stl, usps]
#: The files and digests of BatchUp 0.2.3 (host of the last URL : file name -> SHA-256).
SPEC_DIGESTS = {
    "yann.lecun.com:train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "yann.lecun.com:train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "yann.lecun.com:t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "yann.lecun.com:t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    "fashion-mnist.s3-website.eu-central-1.amazonaws.com:train-images-idx3-ubyte.gz":
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "fashion-mnist.s3-website.eu-central-1.amazonaws.com:train-labels-idx1-ubyte.gz":
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "fashion-mnist.s3-website.eu-central-1.amazonaws.com:t10k-images-idx3-ubyte.gz":
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "fashion-mnist.s3-website.eu-central-1.amazonaws.com:t10k-labels-idx1-ubyte.gz":
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    "ufldl.stanford.edu:train_32x32.mat": "435e94d69a87fde4fd4d7f3dd208dfc32cb6ae8af2240d066de1df7508d083b8",
    "ufldl.stanford.edu:test_32x32.mat": "cdce80dfb2a2c4c6160906d0bd7c68ec5a99d7ca4831afa54f09182025b6a75b",
    "ufldl.stanford.edu:extra_32x32.mat": "a133a4beb38a00fcdda90c9489e0c04f900b660ce8a316a5e854838379a71eb3",
    "dataset.bj.bcebos.com:cifar-10-python.tar.gz": "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    "dataset.bj.bcebos.com:cifar-100-python.tar.gz": "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
    "ai.stanford.edu:stl10_binary.tar.gz": "f31fd99273a1acb8609c8db427cebb1de3f71de77758cdc0e22956e1289b9866",
    "github.com:usps.h5": "ba768d9a9b11e79b31c1e40130647c4fc04e6afc1fb41a0d4b9f1176065482b4",
}


def _hosts(server, modes: list, files: dict[str, bytes]) -> tuple[str, ...]:
    """Serve ``files`` under /h0/, /h1/, ... with one mode per host; return the host base URLs."""
    bases = []
    for i, mode in enumerate(modes):
        for name, data in files.items():
            server.files[f"/h{i}/{name}"] = data
            server.modes[f"/h{i}/{name}"] = mode
        bases.append(f"{server.url}/h{i}/")
    return tuple(bases)


def _use_hosts(monkeypatch, module, files: dict[str, bytes], bases: tuple[str, ...]) -> None:
    table = tuple(dataclasses.replace(f, sha256=sha256(files[f.filename]), url=bases[0] + f.filename,
                                      fallback_urls=tuple(b + f.filename for b in bases[1:]))
                  for f in module.FILES)
    monkeypatch.setattr(module, "FILES", table)


class TestUrlTables:
    @pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
    def test_several_hosts_https_first(self, module):
        hosts = module.HOSTS
        assert len(hosts) >= 2 and len(set(hosts)) == len(hosts)
        assert hosts[0].startswith("https://") and all(h.startswith(("https://", "http://")) for h in hosts)
        assert all(h.endswith("/") for h in hosts)

    def test_the_shipped_tables(self):
        """As shipped: each file at every host of its module, with the SHA-256 BatchUp 0.2.3 published."""
        code = ("import json; from batchup.datasets import mnist, fashion_mnist, svhn, cifar10, cifar100, stl, usps\n"
                "mods = [mnist, fashion_mnist, svhn, cifar10, cifar100, stl, usps]\n"
                "print(json.dumps([[m.__name__, list(m.HOSTS), [[f.filename, list(f.urls), f.sha256] "
                "for f in m.FILES + getattr(m, 'EXTRA_FILES', ())]] for m in mods]))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        digests = {}
        for _, hosts, files in json.loads(out):
            for filename, urls, digest in files:
                assert urls == [h + filename for h in hosts]
                digests[urls[-1].split("://")[1].split("/")[0] + ":" + filename] = digest
        assert digests == SPEC_DIGESTS

    def test_fallback_urls_are_checked(self):
        with pytest.raises(ValueError, match=r"fallback_urls\[1\] must use the http or https scheme, got 'ftp://h/a'"):
            dataset.DownloadSourceFile("a", url="https://h/a", fallback_urls=["http://h/a", "ftp://h/a"])
        with pytest.raises(TypeError, match="fallback_urls must be a sequence of URLs, not str"):
            dataset.DownloadSourceFile("a", url="https://h/a", fallback_urls="http://h/a")
        with pytest.raises(TypeError, match="fallback_urls must be a sequence of URLs, not NoneType"):
            dataset.DownloadSourceFile("a", url="https://h/a", fallback_urls=None)
        f = dataset.DownloadSourceFile("a", url="https://h/a", fallback_urls=("http://g/a", "http://k/a"))
        assert str(f) == "downloadable file a from https://h/a (or 2 other URLs)"


class TestFallback:
    def test_urls_are_tried_in_order_until_one_serves(self, server, monkeypatch, batchup_home):
        files, ref = fakes.mnist()
        bases = _hosts(server, [404, 503, "ok", "ok"], files)
        _use_hosts(monkeypatch, mnist, files, bases)
        ds = mnist.MNIST(n_val=5)
        np.testing.assert_array_equal(ds.test_X_u8[:, 0], ref["test_X"])
        for name in files:
            assert [server.requests[f"/h{i}/{name}"] for i in range(4)] == [1, 3, 1, 0]

    def test_a_digest_mismatch_falls_through_to_the_next_url(self, server, monkeypatch):
        files, ref = fakes.mnist()
        bases = _hosts(server, ["flip", "ok"], files)
        _use_hosts(monkeypatch, mnist, files, bases)
        ds = mnist.MNIST(n_val=5)
        np.testing.assert_array_equal(ds.train_y[:3], ref["train_y"][:3])
        for name in files:  # the wrong copy was tried (three attempts, as BatchUp 0.2 did), then the right one
            assert server.requests[f"/h0/{name}"] == 3 and server.requests[f"/h1/{name}"] == 1

    def test_every_url_and_its_reason_in_the_final_error(self, server, monkeypatch):
        files = fakes.mnist()[0]
        refused = f"http://127.0.0.1:{closed_port()}/h3/"
        bases = _hosts(server, [404, 503, "flip"], files) + (refused,)
        _use_hosts(monkeypatch, mnist, files, bases)
        name = "train-images-idx3-ubyte.gz"
        with dataset_fails(config.DownloadError, "from any of its 4 URLs") as info:
            mnist.MNIST(n_val=5)
        lines = str(info.value).splitlines()
        assert lines[0].endswith(f"could not download {name} from any of its 4 URLs "
                                 f"(tried in this order; mirror setting: none (upstream URLs only)):")
        assert lines[1] == f"  1. {bases[0]}{name}: HTTP 404 Not Found (1 attempt)"
        assert lines[2] == f"  2. {bases[1]}{name}: HTTP 503 Service Unavailable (3 attempts)"
        good = sha256(files[name])
        assert re.fullmatch(rf"  3\. {re.escape(bases[2] + name)}: SHA-256 mismatch: expected {good}, "
                            r"got [0-9a-f]{64}\. \(3 attempts\)", lines[3])
        assert re.fullmatch(rf"  4\. {re.escape(refused + name)}: could not connect: .*Connection refused.* "
                            r"\(3 attempts\)", lines[4])
        cause = info.value.__cause__
        assert cause.status == 404 and [url for url, _ in cause.failures] == [b + name for b in bases]

    def test_wrong_file_everywhere_is_an_integrity_error(self, server, monkeypatch):
        files = fakes.mnist()[0]
        bases = _hosts(server, ["flip", "html"], files)
        _use_hosts(monkeypatch, mnist, files, bases)
        with dataset_fails(config.IntegrityError, "from any of its 2 URLs") as info:
            mnist.MNIST(n_val=5)
        assert "HTML page" in str(info.value).splitlines()[2]

    def test_the_first_file_fails_after_others_were_fetched(self, server, monkeypatch, batchup_home):
        """Files fetched before a failure are verified and kept for the next try; nothing else is."""
        files = fakes.mnist()[0]
        bases = _hosts(server, ["ok"], files)
        _use_hosts(monkeypatch, mnist, files, bases)
        server.modes[f"/h0/{mnist.FILES[2].filename}"] = 404
        with dataset_fails(config.DownloadError, "HTTP 404"):
            mnist.MNIST(n_val=5)
        temp = batchup_home / "data" / "temp" / "mnist"
        assert sorted(os.listdir(temp)) == sorted(f.filename for f in mnist.FILES[:2])
        server.modes[f"/h0/{mnist.FILES[2].filename}"] = "ok"
        mnist.MNIST(n_val=5)
        assert server.requests[f"/h0/{mnist.FILES[0].filename}"] == 1  # kept, not fetched again
        assert not (batchup_home / "data" / "temp").exists()


class TestMirrorSetting:
    def test_the_mirror_comes_first_then_the_upstream_urls(self, server, monkeypatch):
        files, ref = fakes.mnist()
        bases = _hosts(server, ["ok"], files)
        _use_hosts(monkeypatch, mnist, files, bases)
        monkeypatch.setenv(config.MIRROR_ENV, server.url + "/mirror")
        mnist.MNIST(n_val=5)  # the mirror has nothing: every file comes from upstream, after a 404
        for name in files:
            assert server.requests[f"/mirror/mnist/{name}"] == 1 and server.requests[f"/h0/{name}"] == 1
        assert server.connections == 1

    def test_a_served_mirror_is_the_only_source(self, publish, server, offline_upstreams):
        publish(mnist, fakes.mnist()[0], "mnist")
        mnist.MNIST(n_val=5)
        assert all(path.startswith("/mirror/mnist/") for path in server.requests)

    def test_mirror_only_keeps_to_the_mirror(self, server, monkeypatch):
        monkeypatch.setenv(config.MIRROR_ENV, server.url + "/mirror")
        monkeypatch.setenv(config.MIRROR_ONLY_ENV, "true")
        err = failure_of(mnist.fetch_mnist)
        assert isinstance(err.__cause__, config.DownloadError) and err.__cause__.status == 404
        assert "from any of its" not in str(err) and list(server.requests) == [
            "/mirror/mnist/train-images-idx3-ubyte.gz"]


class TestNothingLeftBehind:
    @pytest.mark.parametrize("module, fetch", [(mnist, "fetch_mnist"), (cifar10, "fetch_cifar10"),
                                               (usps, "usps_data"), (svhn, "fetch_svhn_extra")])
    def test_total_failure_leaves_only_lock_files(self, module, fetch, batchup_home):
        """Offline (every URL refused), a fetch leaves no temp folder, no partial file, no empty folder."""
        assert getattr(module, fetch)() is None
        data = batchup_home / "data"
        assert sorted(os.listdir(data)) == [".locks"]
        assert all(n.endswith(".lock") for n in os.listdir(data / ".locks"))
        assert leftovers(batchup_home) == []

    def test_interrupted_download_keeps_its_partial_bytes(self, server, monkeypatch, batchup_home):
        """Ctrl-C is not a failure: the partial bytes stay for the next call (see test_download_faults)."""
        from batchup import _fetch

        def interrupt(self, count, block_size, total_size):
            raise KeyboardInterrupt

        body = os.urandom(100_000)
        server.files["/f/big.bin"] = body
        monkeypatch.setattr(_fetch.Progress, "hook", interrupt)
        with pytest.raises(KeyboardInterrupt):
            config.download_data(os.path.join("temp", "big", "big.bin"), server.url + "/f/big.bin", sha256(body))
        part = batchup_home / "data" / "temp" / "big" / "big.bin.unverified.part"
        assert part.exists()
        part.unlink()
        for folder in (part.parent, part.parent.parent):
            folder.rmdir()

    def test_the_command_line_demo_offline(self, tmp_path):
        """``python -m batchup demo --dataset mnist`` with no reachable source: digits, and a clean home."""
        env = dict(os.environ, HOME=str(tmp_path), TQDM_DISABLE="1",
                   BATCHUP_MIRROR=f"http://127.0.0.1:{closed_port()}/mirror", BATCHUP_MIRROR_ONLY="1")
        env.pop(config.HOME_ENV, None)
        proc = subprocess.run([sys.executable, "-m", "batchup", "demo", "--dataset", "mnist", "--epochs", "1",
                               "--no-progress"], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert "MNIST is not available" in proc.stdout and "digits:" in proc.stdout
        home = tmp_path / ".batchup"
        assert sorted(os.listdir(home / "data")) == [".locks"] and leftovers(home) == []
