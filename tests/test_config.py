"""batchup.config: home, data paths, config file, mirror and the URLs tried (reliability.md F17, F18, rows 41-44)."""
from __future__ import annotations

import os

import pytest

from batchup import config


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(config.HOME_ENV, raising=False)
    monkeypatch.delenv(config.MIRROR_ENV, raising=False)
    monkeypatch.delenv(config.MIRROR_ONLY_ENV, raising=False)
    config.reset_config()
    yield
    config.reset_config()


def _write_cfg(tmp_path, text):
    (tmp_path / ".batchup.cfg").write_text(text)
    config.reset_config()


def test_default_home_is_created_lazily(tmp_path):
    assert not (tmp_path / ".batchup").exists()
    assert config.get_batchup_path() == str(tmp_path / ".batchup")
    assert (tmp_path / ".batchup").is_dir()
    assert config.get_data_dir() == str(tmp_path / ".batchup" / "data")
    assert not (tmp_path / ".batchup" / "data").exists()


def test_env_var_is_honoured_and_followed_at_runtime(tmp_path, monkeypatch):
    monkeypatch.setenv(config.HOME_ENV, str(tmp_path / "one"))
    assert config.get_batchup_path() == str(tmp_path / "one")
    monkeypatch.setenv(config.HOME_ENV, str(tmp_path / "two"))
    assert config.get_batchup_path() == str(tmp_path / "two")


def test_config_file_data_dir_with_tilde(tmp_path):
    _write_cfg(tmp_path, "[paths]\ndata_dir = ~/from_cfg\n")
    assert config.get_batchup_path() == str(tmp_path / "from_cfg")


def test_precedence_env_beats_config_file(tmp_path, monkeypatch):
    _write_cfg(tmp_path, "[paths]\ndata_dir = ~/from_cfg\n")
    monkeypatch.setenv(config.HOME_ENV, str(tmp_path / "from_env"))
    assert config.get_batchup_path() == str(tmp_path / "from_env")


def test_row43_empty_env_var_is_unset(tmp_path, monkeypatch):
    _write_cfg(tmp_path, "[paths]\ndata_dir = ~/from_cfg\n")
    monkeypatch.setenv(config.HOME_ENV, "")
    assert config.get_batchup_path() == str(tmp_path / "from_cfg")


def test_row42_home_is_a_file(tmp_path, monkeypatch):
    f = tmp_path / "afile"
    f.write_text("x")
    monkeypatch.setenv(config.HOME_ENV, str(f))
    with pytest.raises(NotADirectoryError, match="afile") as info:
        config.get_batchup_path()
    assert isinstance(info.value, RuntimeError)  # BatchUp 0.2 raised RuntimeError here


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_parent(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    monkeypatch.setenv(config.HOME_ENV, str(ro / "home"))
    try:
        with pytest.raises(PermissionError, match="home"):
            config.get_batchup_path()
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("text, line", [
    ("no section header\n", "line: 1"),
    ("[paths]\ndata_dir = a\n  \n!!!\n", "line  4|line 4"),
    ("[paths]\ndata_dir = a\ndata_dir = b\n", "line  3|line 3"),
])
def test_row44_malformed_config_names_file_and_line(tmp_path, text, line):
    _write_cfg(tmp_path, text)
    with pytest.raises(config.ConfigError, match=".batchup.cfg") as info:
        config.get_batchup_path()
    assert any(alt in str(info.value) for alt in line.split("|"))


def test_config_is_cached_until_reset(tmp_path):
    _write_cfg(tmp_path, "[paths]\ndata_dir = ~/a\n")
    assert config.get_batchup_path() == str(tmp_path / "a")
    (tmp_path / ".batchup.cfg").write_text("[paths]\ndata_dir = ~/b\n")
    assert config.get_batchup_path() == str(tmp_path / "a")
    config.reset_config()
    assert config.get_batchup_path() == str(tmp_path / "b")


class TestDataPath:
    def test_relative_names(self, tmp_path, monkeypatch):
        monkeypatch.setenv(config.HOME_ENV, str(tmp_path / "h"))
        assert config.get_data_path("mnist") == str(tmp_path / "h" / "data" / "mnist")
        assert config.get_data_path(os.path.join("temp", "x.gz")) == str(tmp_path / "h" / "data" / "temp" / "x.gz")

    @pytest.mark.parametrize("name", ["/tmp/x", "../x", "a/../../x", "", "a/.."])
    def test_f18_names_outside_the_data_dir(self, tmp_path, monkeypatch, name):
        monkeypatch.setenv(config.HOME_ENV, str(tmp_path / "h"))
        with pytest.raises(ValueError, match="inside the batchup data directory"):
            config.get_data_path(name)

    def test_replaceable_helpers(self, monkeypatch, tmp_path):
        monkeypatch.setattr(config, "get_batchup_path", lambda: str(tmp_path / "custom"))
        assert config.get_data_path("f") == str(tmp_path / "custom" / "data" / "f")
        monkeypatch.setattr(config, "get_data_dir", lambda: str(tmp_path / "dd"))
        assert config.get_data_path("f") == str(tmp_path / "dd" / "f")


class TestMirror:
    def test_none_by_default(self):
        assert config.get_mirror() is None
        assert config.mirror_url("http://h/a/b.gz", "ds") == "http://h/a/b.gz"

    def test_config_file_then_env(self, tmp_path, monkeypatch):
        _write_cfg(tmp_path, "[download]\nmirror = http://cfg.example/data\n")
        assert config.mirror_url("http://h/a/b.gz", "ds") == "http://cfg.example/data/ds/b.gz"
        monkeypatch.setenv(config.MIRROR_ENV, "https://env.example/m/")
        assert config.mirror_url("http://h/a/b.gz") == "https://env.example/m/b.gz"

    def test_bad_mirror(self, monkeypatch):
        monkeypatch.setenv(config.MIRROR_ENV, "/some/folder")
        with pytest.raises(config.ConfigError, match="http or https"):
            config.get_mirror()


class TestSourceUrls:
    URLS = ["https://a.example/x/f.gz", "http://b.example/f.gz"]

    def test_upstream_urls_in_order_without_a_mirror(self):
        assert config.source_urls(self.URLS, "ds") == self.URLS
        assert config.source_urls(self.URLS + self.URLS[:1]) == self.URLS  # duplicates dropped

    def test_the_mirror_comes_first(self, monkeypatch):
        monkeypatch.setenv(config.MIRROR_ENV, "http://m.example/data")
        assert config.source_urls(self.URLS, "ds") == ["http://m.example/data/ds/f.gz"] + self.URLS

    @pytest.mark.parametrize("value", ["1", "true", "Yes", " on "])
    def test_mirror_only_from_the_environment(self, monkeypatch, value):
        monkeypatch.setenv(config.MIRROR_ENV, "http://m.example/data")
        monkeypatch.setenv(config.MIRROR_ONLY_ENV, value)
        assert config.get_mirror_only() is True
        assert config.source_urls(self.URLS, "ds") == ["http://m.example/data/ds/f.gz"]

    def test_mirror_only_from_the_config_file_and_env_wins(self, tmp_path, monkeypatch):
        _write_cfg(tmp_path, "[download]\nmirror = http://cfg.example/m\nmirror_only = true\n")
        assert config.get_mirror_only() is True and config.source_urls(self.URLS) == ["http://cfg.example/m/f.gz"]
        monkeypatch.setenv(config.MIRROR_ONLY_ENV, "off")
        assert config.get_mirror_only() is False and len(config.source_urls(self.URLS)) == 3

    def test_mirror_only_without_a_mirror_changes_nothing(self, monkeypatch):
        monkeypatch.setenv(config.MIRROR_ONLY_ENV, "1")
        assert config.source_urls(self.URLS) == self.URLS

    def test_bad_values(self, monkeypatch):
        monkeypatch.setenv(config.MIRROR_ONLY_ENV, "maybe")
        with pytest.raises(config.ConfigError, match="mirror_only must be one of 1, true, .* got 'maybe'"):
            config.get_mirror_only()
        with pytest.raises(ValueError, match="urls must hold at least one URL"):
            config.source_urls([])


def test_check_sha256():
    assert config.check_sha256("A" * 64) == "a" * 64
    assert config.check_sha256(None) is None
    with pytest.raises(ValueError, match="64 hex"):
        config.check_sha256("xyz")


def test_file_lock_is_exclusive_across_threads(tmp_path):
    import threading

    order = []
    path = str(tmp_path / "f")
    inside = threading.Event()

    def second():
        with config.file_lock(path):
            order.append("second")

    with config.file_lock(path):
        t = threading.Thread(target=second)
        t.start()
        inside.wait(0.3)
        order.append("first")
    t.join(10)
    assert order == ["first", "second"]
    assert os.path.exists(path + ".lock")  # outside the data directory the lock file sits beside the path
    assert not os.path.exists(path)
