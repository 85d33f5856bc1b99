"""The command line as a user runs it: ``python -m batchup --version | info | fetch | demo``.

Every test starts a fresh interpreter (with a time limit) and checks the exit
status and what is printed. ``fetch`` downloads from a local HTTP server on
127.0.0.1 that serves files generated here, set as the download mirror; the
child interpreter refuses any other address, as the suite does.
"""
from __future__ import annotations

import fcntl
import hashlib
import http.server
import importlib.metadata
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time

import pytest

import batchup
from batchup import config
from batchup._cli import build_parser
from batchup._cli.info import home_setting
from tests.datasets import fakes
from tests.records.local_http import LocalServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(batchup.__file__)))
TIMEOUT = 120

# Runs ``python -m batchup ARGS`` after refusing the network, shortening the retry backoff and trusting the
# digests of the test files.
CHILD = r"""
import dataclasses, importlib, json, os, runpy, socket, sys

_connect = socket.socket.connect

def _local_only(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and self.family in (socket.AF_INET, socket.AF_INET6) \
            and not host.startswith(("127.", "::1", "localhost")):
        raise OSError(f"the test may not reach the network (tried to connect to {host!r})")
    return _connect(self, address)

socket.socket.connect = _local_only
import batchup.config
batchup.config.BACKOFF = 0.01  # the documented knobs: no waiting between the attempts of a failing download
for name, digests in json.loads(os.environ.get("BATCHUP_TEST_DIGESTS", "{}")).items():
    module = importlib.import_module("batchup.datasets." + name)
    module.FILES = tuple(dataclasses.replace(f, sha256=digests.get(f.filename, f.sha256)) for f in module.FILES)
sys.argv = ["python -m batchup"] + sys.argv[1:]
runpy.run_module("batchup", run_name="__main__", alter_sys=True)
"""


@pytest.fixture
def env(tmp_path):
    """The environment of a child: this checkout's batchup, an empty home, no mirror, no TQDM_DISABLE."""
    out = {k: v for k, v in os.environ.items()
           if k not in (config.HOME_ENV, config.MIRROR_ENV, "BATCHUP_SHM_DIR", "TQDM_DISABLE")}
    out["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    out["HOME"] = str(tmp_path)
    out[config.HOME_ENV] = str(tmp_path / "home")
    return out


def run(env, *args, child=False):
    """Run ``python -m batchup *args`` (through CHILD when ``child``) and return the completed process."""
    cmd = [sys.executable, "-c", CHILD, *args] if child else [sys.executable, "-m", "batchup", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)


def assert_no_traceback(proc):
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr


# -- version and help --------------------------------------------------------------------------------

def test_version_prints_the_package_version(env):
    proc = run(env, "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"batchup {batchup.__version__}\n"


def test_no_command_is_a_usage_error(env):
    proc = run(env)
    assert proc.returncode == 2
    assert "usage: python -m batchup" in proc.stderr and "required: COMMAND" in proc.stderr
    assert_no_traceback(proc)


@pytest.mark.parametrize("args", [["--help"], ["demo", "--help"], ["info", "--help"], ["fetch", "--help"]])
def test_help_is_plain_text(env, args):
    proc = run(env, *args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: python -m batchup")
    assert "``" not in proc.stdout and ":func:" not in proc.stdout and ":doc:" not in proc.stdout


def test_top_level_help_lists_every_command(env):
    out = run(env, "--help").stdout
    for command in ("demo", "info", "fetch"):
        assert f"    {command} " in out


# -- demo options ------------------------------------------------------------------------------------

@pytest.mark.parametrize("option, value, message", [
    ("--batch-size", "0", "must be an int of at least 1, got '0'"),
    ("--batch-size", "-3", "must be an int of at least 1, got '-3'"),
    ("--batch-size", "8.5", "must be an int of at least 1, got '8.5'"),
    ("--batch-size", "many", "must be an int of at least 1, got 'many'"),
    ("--epochs", "0", "must be an int of at least 1, got '0'"),
    ("--epochs", "-1", "must be an int of at least 1, got '-1'"),
    ("--seed", "-1", "must be an int from 0 to 4294967295, got '-1'"),
    ("--seed", "4294967296", "must be an int from 0 to 4294967295, got '4294967296'"),
    ("--lr", "0", "must be a finite number greater than 0, got '0'"),
    ("--lr", "-0.1", "must be a finite number greater than 0, got '-0.1'"),
    ("--lr", "nan", "must be a finite number greater than 0, got 'nan'"),
    ("--lr", "inf", "must be a finite number greater than 0, got 'inf'"),
    ("--dataset", "imagenet", "invalid choice: 'imagenet'"),
])
def test_bad_demo_options_are_usage_errors(env, option, value, message):
    proc = run(env, "demo", option, value)
    assert proc.returncode == 2
    assert f"error: argument {option}: {message}" in proc.stderr
    assert proc.stdout == ""  # nothing was trained
    assert_no_traceback(proc)


def test_unknown_demo_option_is_a_usage_error(env):
    proc = run(env, "demo", "--epoch", "3", "--batchsize", "8")
    assert proc.returncode == 2
    assert "unrecognized arguments" in proc.stderr
    assert_no_traceback(proc)


def test_demo_prints_one_summary_line_per_epoch_without_a_terminal(env):
    proc = run(env, "demo", "--epochs", "3", "--batch-size", "32", "--seed", "5")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "digits: 1197 train / 300 validation / 300 test samples, 8x8 pixels"
    assert [line.split(":")[0] for line in lines[1:4]] == ["epoch 1", "epoch 2", "epoch 3"]
    assert all("validation loss" in line for line in lines[1:4])
    assert lines[4].startswith("test accuracy: ") and lines[4].endswith("on 300 samples")
    speed = float(lines[5].split("training speed: ")[1].split(" samples/s")[0].replace(",", ""))
    assert speed > 0 and "(3591 samples in" in lines[5]


def read_terminal(cmd, env, timeout=TIMEOUT):
    """Run ``cmd`` with a 40x160 pseudo-terminal as its stdin, stdout and stderr; return its exit status and output."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = subprocess.Popen(cmd, env=env, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        else:
            proc.kill()
            pytest.fail(f"{cmd} did not finish within {timeout} s")
        return proc.wait(timeout=30), b"".join(chunks).decode("utf-8", "replace")
    finally:
        os.close(master)


def test_demo_keeps_a_bar_per_epoch_on_a_terminal(env):
    status, screen = read_terminal([sys.executable, "-m", "batchup", "demo", "--epochs", "3", "--batch-size", "64"],
                                   env)
    assert status == 0, screen
    # each bar ends at 19/19 batches and keeps that epoch's validation result on screen
    for epoch in (1, 2, 3):
        finals = [frame for frame in screen.replace("\n", "\r").split("\r")
                  if frame.startswith(f"epoch {epoch}/3") and "19/19" in frame and "validation loss" in frame]
        assert finals, screen
    assert screen.count("validation loss") == 3
    assert "test accuracy" in screen


# -- info --------------------------------------------------------------------------------------------

def report(stdout):
    """Return the rows of an ``info`` report as {label: value}."""
    return dict(re.findall(r"^  (\S.*?)\s{2,}(.*)$", stdout, flags=re.M))


def test_info_reports_versions_and_settings(env, tmp_path):
    shm = tmp_path / "shm"
    shm.mkdir()
    env = dict(env, BATCHUP_MIRROR="http://127.0.0.1:9/mirror", BATCHUP_SHM_DIR=str(shm))
    proc = run(env, "info")
    assert proc.returncode == 0, proc.stderr
    rows = report(proc.stdout)
    assert rows["version"] == batchup.__version__
    assert rows["numpy"] == importlib.metadata.version("numpy")
    assert rows["python"].split()[0] == ".".join(map(str, sys.version_info[:3]))
    for dist in ("torch", "keras", "jax", "dask"):
        try:
            expected = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            expected = "not installed"
        assert rows[dist] == expected
    assert rows["tensorflow"].startswith(("not installed", "2."))
    home = tmp_path / "home"
    assert rows["batchup home"] == f"{home} (from $BATCHUP_HOME)"
    assert rows["data directory"] == f"{home / 'data'} (not created yet)"
    assert rows["mirror"] == "http://127.0.0.1:9/mirror (from $BATCHUP_MIRROR)"
    assert re.fullmatch(re.escape(f"{shm}, ") + r"[\d.]+ \w+ free \(from \$BATCHUP_SHM_DIR\)", rows["shared memory"])
    assert rows["config file"] == f"{tmp_path / '.batchup.cfg'} (not present)"
    assert not home.exists()  # info creates nothing


def test_info_imports_no_framework(env):
    code = ("import sys; from batchup._cli import main; main(['info']); "
            "print('imported:', sorted(m for m in ('torch', 'jax', 'keras', 'tensorflow', 'dask', 'pandas', "
            "'sklearn', 'h5py', 'zarr', 'scipy') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "imported: []"


def test_info_reads_the_config_file(env, tmp_path):
    (tmp_path / ".batchup.cfg").write_text(
        f"[paths]\ndata_dir = {tmp_path / 'from_cfg'}\n[download]\nmirror = http://127.0.0.1:9/m\n")
    del env[config.HOME_ENV]
    proc = run(env, "info")
    assert proc.returncode == 0, proc.stderr
    rows = report(proc.stdout)
    assert rows["config file"] == f"{tmp_path / '.batchup.cfg'} (present)"
    assert rows["batchup home"] == f"{tmp_path / 'from_cfg'} (from [paths] data_dir in {tmp_path / '.batchup.cfg'})"
    assert rows["mirror"] == "http://127.0.0.1:9/m (from [download] mirror)"


def test_info_survives_a_broken_config_file(env, tmp_path):
    (tmp_path / ".batchup.cfg").write_text("this is not an ini file\n")
    del env[config.HOME_ENV]
    proc = run(env, "info")
    assert proc.returncode == 0, proc.stderr
    rows = report(proc.stdout)
    assert rows["batchup home"].startswith("unavailable: ConfigError: cannot parse the batchup config file")
    assert rows["mirror"].startswith("unavailable: ConfigError")
    assert rows["numpy"] == importlib.metadata.version("numpy")  # the rest of the report is still there
    assert_no_traceback(proc)


def test_info_names_a_missing_shared_memory_folder(env, tmp_path):
    proc = run(dict(env, BATCHUP_SHM_DIR=str(tmp_path / "gone")), "info")
    assert proc.returncode == 0, proc.stderr
    assert report(proc.stdout)["shared memory"] == f"{tmp_path / 'gone'}, does not exist (from $BATCHUP_SHM_DIR)"


@pytest.mark.parametrize("where", ["env", "config", "default"])
def test_info_home_follows_the_precedence_of_config(tmp_path, monkeypatch, where):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(config.HOME_ENV, raising=False)
    if where == "env":
        monkeypatch.setenv(config.HOME_ENV, str(tmp_path / "env_home"))
    if where in ("env", "config"):
        (tmp_path / ".batchup.cfg").write_text(f"[paths]\ndata_dir = {tmp_path / 'cfg_home'}\n")
    config.reset_config()
    try:
        shown, _ = home_setting()
        assert shown == config.get_batchup_path()
    finally:
        config.reset_config()


# -- fetch -------------------------------------------------------------------------------------------

def digests(files):
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


@pytest.fixture
def mirror():
    """A local server with fake MNIST and CIFAR-10 files under ``<url>/<dataset>/<file>``."""
    mnist_files, cifar_files = fakes.mnist()[0], fakes.cifar10()[0]
    bodies = {f"mnist/{k}": v for k, v in mnist_files.items()}
    bodies.update({f"cifar10/{k}": v for k, v in cifar_files.items()})
    with LocalServer(bodies) as srv:
        srv.digests = {"mnist": digests(mnist_files), "cifar10": digests(cifar_files)}
        yield srv


def test_fetch_downloads_verifies_and_reports(env, mirror, tmp_path):
    env = dict(env, BATCHUP_MIRROR=mirror.url("files"), BATCHUP_TEST_DIGESTS=json.dumps(mirror.digests))
    proc = run(env, "fetch", "mnist", "cifar10", child=True)
    assert proc.returncode == 0, proc.stderr
    data = tmp_path / "home" / "data"
    lines = proc.stdout.splitlines()
    assert lines[0] == f"data directory: {data}"
    assert lines[1].startswith("[1/2] mnist: fetching (")
    assert lines[2].startswith("[1/2] mnist: ready in ") and lines[2].endswith("(train 30, test 12 samples)")
    assert lines[3].startswith("[2/2] cifar10: fetching (")
    assert lines[4].startswith("[2/2] cifar10: ready in ") and lines[4].endswith("(train 20, test 6 samples)")
    assert (data / "mnist").is_dir() and (data / "cifar10").is_dir()
    assert sum(mirror.hits.values()) == 5  # four MNIST files and one CIFAR-10 tarball, once each

    again = run(env, "fetch", "MNIST", child=True)  # cached now: opened, not downloaded
    assert again.returncode == 0, again.stderr
    assert "[1/1] mnist: ready in" in again.stdout
    assert sum(mirror.hits.values()) == 5


def test_fetch_failure_exits_1_with_the_reason(env, mirror):
    env = dict(env, BATCHUP_MIRROR=mirror.url("files/nothing-here"))
    proc = run(env, "fetch", "mnist", child=True)
    assert proc.returncode == 1
    assert "[1/1] mnist: FAILED: RuntimeError: could not load the MNIST dataset" in proc.stderr
    assert "404" in proc.stderr
    assert proc.stderr.rstrip().endswith("1 of 1 datasets could not be fetched: mnist")
    assert_no_traceback(proc)


def test_fetch_goes_on_after_a_failure(env, mirror):
    wrong = {"mnist": {name: "0" * 64 for name in mirror.digests["mnist"]}, "cifar10": mirror.digests["cifar10"]}
    env = dict(env, BATCHUP_MIRROR=mirror.url("files"), BATCHUP_TEST_DIGESTS=json.dumps(wrong))
    proc = run(env, "fetch", "mnist", "cifar10", child=True)
    assert proc.returncode == 1
    assert "[1/2] mnist: FAILED: RuntimeError: could not load the MNIST dataset" in proc.stderr
    assert "SHA-256" in proc.stderr
    assert "[2/2] cifar10: ready in" in proc.stdout
    assert proc.stderr.rstrip().endswith("1 of 2 datasets could not be fetched: mnist")
    assert_no_traceback(proc)


def test_fetch_rejects_unknown_names_before_downloading(env, tmp_path):
    proc = run(env, "fetch", "mnist", "imagenet")
    assert proc.returncode == 2
    assert "argument NAME: invalid choice: 'imagenet'" in proc.stderr
    assert not (tmp_path / "home").exists()
    assert_no_traceback(proc)


def test_fetch_needs_a_name(env):
    proc = run(env, "fetch")
    assert proc.returncode == 2
    assert "the following arguments are required: NAME" in proc.stderr


def test_fetch_with_an_unreadable_config_file_exits_1(env, tmp_path):
    (tmp_path / ".batchup.cfg").write_text("[paths\n")
    del env[config.HOME_ENV]
    proc = run(env, "fetch", "mnist", child=True)
    assert proc.returncode == 1
    assert proc.stderr.startswith("fetch failed: ConfigError: cannot parse the batchup config file")
    assert_no_traceback(proc)


def test_fetch_names_may_use_underscores_and_capitals():
    args = build_parser().parse_args(["fetch", "Fashion_MNIST", "svhn-extra", "STL10"])
    assert args.names == ["fashion-mnist", "svhn-extra", "stl10"]


class _Trickle(http.server.BaseHTTPRequestHandler):
    """Announces 1 MB, sends 1 kB, then waits until the test ends: a download that is under way."""

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 20))
        self.end_headers()
        self.wfile.write(b"x" * 1024)
        self.wfile.flush()
        self.server.started.set()
        self.server.release.wait(TIMEOUT)


def test_fetch_ctrl_c_exits_130_and_keeps_the_partial_download(env, tmp_path):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    srv.daemon_threads = True
    srv.started, srv.release = threading.Event(), threading.Event()
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    env = dict(env, BATCHUP_MIRROR=f"http://127.0.0.1:{srv.server_address[1]}/m")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, "fetch", "mnist"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert srv.started.wait(TIMEOUT), "the download never started"
        deadline = time.monotonic() + TIMEOUT  # interrupt once the partial file has been opened
        while not any((tmp_path / "home").rglob("*.part")):
            assert time.monotonic() < deadline and proc.poll() is None, "no partial download appeared"
            time.sleep(0.02)
        time.sleep(0.2)  # let the child read the first bytes (not needed for the checks below)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        srv.release.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        srv.shutdown()
        srv.server_close()
    assert proc.returncode == 130, err
    assert err.rstrip().endswith("interrupted: the partial download is kept and resumed by the next fetch")
    assert "[1/1] mnist: fetching" in out
    parts = list((tmp_path / "home").rglob("*.part"))
    assert len(parts) == 1 and parts[0].stat().st_size <= 1024  # what had arrived, kept for resuming
    assert "Traceback" not in err
