"""``python -m batchup info``: versions and settings, for bug reports and for checking a set-up.

Framework versions come from the installed packages' metadata
(:mod:`importlib.metadata`), so no framework is imported: the command stays
quick and works even when a framework is broken. Nothing is created on disk.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import sys
from typing import Any, Callable

__all__ = ["add_parser", "collect", "home_setting", "mirror_setting", "render", "run", "shm_setting", "version_of"]

HELP = "show versions, the data directory, the mirror and the shared-memory folder"

#: (label, distributions that provide it); the first one installed is shown.
CORE = (("numpy", ("numpy",)), ("tqdm", ("tqdm",)), ("joblib", ("joblib",)))
FRAMEWORKS = (
    ("torch", ("torch",)),
    ("torchdata", ("torchdata",)),
    ("keras", ("keras",)),
    ("jax", ("jax",)),
    ("jaxlib", ("jaxlib",)),
    ("tensorflow", ("tensorflow", "tensorflow-cpu")),
    ("dask", ("dask",)),
    ("distributed", ("distributed",)),
)
FORMATS = (
    ("pandas", ("pandas",)),
    ("scikit-learn", ("scikit-learn",)),
    ("scipy", ("scipy",)),
    ("h5py", ("h5py",)),
    ("zarr", ("zarr",)),
    ("pillow", ("pillow",)),
    ("filelock", ("filelock",)),
)


def version_of(dists: tuple[str, ...]) -> str:
    """Return the version of the first installed distribution of ``dists`` (named when it is not the first).

    Examples
    --------
    >>> version_of(("no-such-distribution-here",))
    'not installed'
    """
    for dist in dists:
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        return version if dist == dists[0] else f"{version} ({dist})"
    return "not installed"


def _size(nbytes: int) -> str:
    """Return a byte count for people.

    Examples
    --------
    >>> _size(512), _size(3 << 20), _size(1536), _size(1 << 28)
    ('512 bytes', '3 MiB', '1.5 KiB', '256 MiB')
    """
    units = ("bytes", "KiB", "MiB", "GiB", "TiB")
    size, i = float(nbytes), 0
    while size >= 1024 and i < len(units) - 1:
        size, i = size / 1024, i + 1
    if i == 0:
        return f"{nbytes} bytes"
    return f"{size:.1f}".removesuffix(".0") + f" {units[i]}"


def home_setting() -> tuple[str, str]:
    """Return the batchup home and where that choice comes from, creating nothing.

    The precedence is :func:`batchup.config.get_batchup_path`'s (which also
    creates the folder): a non-empty ``$BATCHUP_HOME``, then ``[paths]
    data_dir`` in the config file, then ``~/.batchup``.

    Raises
    ------
    batchup.config.ConfigError, OSError
        If the config file is needed and cannot be read or parsed.
    """
    from batchup import config

    env = os.environ.get(config.HOME_ENV)
    if env:
        home, origin = env, f"from ${config.HOME_ENV}"
    else:
        parser = config.get_config()
        value = parser.get("paths", "data_dir").strip() if parser.has_option("paths", "data_dir") else ""
        if value:
            home, origin = value, f"from [paths] data_dir in {config.get_config_path()}"
        else:
            home, origin = os.path.join("~", ".batchup"), "the default"
    return os.path.abspath(os.path.expanduser(home)), origin


def mirror_setting() -> str:
    """Describe the download mirror: its URL and where it is set, or that the official hosts are used."""
    from batchup import config

    mirror = config.get_mirror()
    if mirror is None:
        return f"none, the official URLs (${config.MIRROR_ENV} and [download] mirror are not set)"
    origin = f"${config.MIRROR_ENV}" if os.environ.get(config.MIRROR_ENV) else "[download] mirror"
    return f"{mirror} (from {origin})"


def shm_setting() -> tuple[str, str]:
    """Return the folder process pools stage worker results in, and a note on its free space and origin.

    The folder is the one :mod:`batchup.parallel` picks for a new pool:
    ``$BATCHUP_SHM_DIR`` when set, else ``/dev/shm`` when it is writable and
    has enough free space, else the temp dir.
    """
    from batchup.parallel._shm import SHM_MIN_FREE, free_bytes, shm_dir
    from batchup.parallel.errors import SHM_ENV

    folder = shm_dir()
    if os.environ.get(SHM_ENV):
        origin = f"from ${SHM_ENV}"
    elif folder == "/dev/shm":
        origin = f"${SHM_ENV} is not set; /dev/shm has at least {_size(SHM_MIN_FREE)} free"
    else:
        origin = (f"${SHM_ENV} is not set and /dev/shm is missing, read-only or has less than "
                  f"{_size(SHM_MIN_FREE)} free, so the temp dir")
    if not os.path.isdir(folder):
        return folder, f"does not exist ({origin})"
    return folder, f"{_size(free_bytes(folder))} free ({origin})"


def _guard(fn: Callable[[], Any]) -> Any:
    """Call ``fn``; turn an error into a line of text, so that one bad setting does not hide the others."""
    try:
        return fn()
    except (OSError, ValueError, ImportError) as err:
        return f"unavailable: {type(err).__name__}: {err}"


def _home_lines() -> list[tuple[str, str]]:
    from batchup import config

    cfg = config.get_config_path()
    lines = [("config file", f"{cfg} ({'present' if os.path.isfile(cfg) else 'not present'})")]
    setting = _guard(home_setting)
    if isinstance(setting, str):
        return lines + [("batchup home", setting)]
    home, origin = setting
    data = os.path.join(home, "data")
    return lines + [("batchup home", f"{home} ({origin})"),
                    ("data directory", f"{data} ({'exists' if os.path.isdir(data) else 'not created yet'})")]


def collect() -> list[tuple[str, list[tuple[str, str]]]]:
    """Return the report as sections of (label, value) rows."""
    import batchup

    shm = _guard(shm_setting)
    return [
        ("batchup", [
            ("version", batchup.__version__),
            ("location", os.path.dirname(os.path.abspath(batchup.__file__))),
            ("python", f"{platform.python_version()} ({platform.python_implementation()}) at {sys.executable}"),
            ("platform", platform.platform()),
        ]),
        ("dependencies", [(label, version_of(dists)) for label, dists in CORE]),
        ("frameworks (versions from package metadata; none is imported)",
         [(label, version_of(dists)) for label, dists in FRAMEWORKS]),
        ("formats", [(label, version_of(dists)) for label, dists in FORMATS]),
        ("data", _home_lines() + [("mirror", _guard(mirror_setting))]),
        ("worker results", [("shared memory", shm if isinstance(shm, str) else f"{shm[0]}, {shm[1]}")]),
    ]


def render(sections: list[tuple[str, list[tuple[str, str]]]]) -> str:
    """Return the report as aligned plain text."""
    width = max(len(label) for _, rows in sections for label, _ in rows)
    out = []
    for title, rows in sections:
        out.append(f"{title}:")
        out.extend(f"  {label:<{width}}  {value}" for label, value in rows)
    return "\n".join(out)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``info`` command to the subparsers ``sub``."""
    p = sub.add_parser("info", help=HELP, description=(
        "Print the versions of batchup, Python, NumPy and the installed frameworks (read from\n"
        "package metadata, without importing them), the config file, the data directory and\n"
        "where its setting comes from, the download mirror, and the folder process pools use\n"
        "for worker results with its free space. Nothing is created or downloaded."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the report; the exit status is 0."""
    print(render(collect()))
    return 0
