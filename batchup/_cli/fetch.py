"""``python -m batchup fetch NAME ...``: download, verify and convert standard datasets ahead of time.

Each dataset is fetched through its public class (``batchup.datasets.mnist.MNIST()`` and so
on), which downloads the source files (with the download layer's progress bars on stderr),
checks their SHA-256, converts them into the cache and opens it. A dataset already in the
cache is only opened.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import time
from typing import Any, Callable

__all__ = ["DATASETS", "add_parser", "dataset_name", "run"]


@dataclasses.dataclass(frozen=True)
class DatasetEntry:
    """A dataset the command can fetch: the class ``batchup.datasets.<module>.<cls>``.

    ``options`` go to the class; they ask for no validation split, so that a
    dataset of any size opens and every training sample is counted once.
    """

    module: str
    cls: str
    about: str
    options: tuple = (("n_val", 0),)

    def load(self) -> Any:
        """Construct the dataset class, which fetches, verifies and converts it unless it is cached."""
        module = importlib.import_module(f"batchup.datasets.{self.module}")
        return getattr(module, self.cls)(**dict(self.options))


#: The names ``fetch`` accepts (``_`` may be written for ``-``, in any case).
DATASETS = {
    "mnist": DatasetEntry("mnist", "MNIST", "handwritten digits, 70,000 28x28 (about 12 MB)"),
    "fashion-mnist": DatasetEntry("fashion_mnist", "FashionMNIST", "clothing, 70,000 28x28 (about 30 MB)"),
    "cifar10": DatasetEntry("cifar10", "CIFAR10", "10 classes, 60,000 32x32 colour (about 170 MB)"),
    "cifar100": DatasetEntry("cifar100", "CIFAR100", "100 classes, 60,000 32x32 colour (about 170 MB)"),
    "svhn": DatasetEntry("svhn", "SVHN", "house numbers, 99,289 32x32 colour (about 250 MB; needs scipy)"),
    "svhn-extra": DatasetEntry("svhn", "SVHNExtra", "531,131 more SVHN images (about 1.3 GB; needs scipy)",
                               options=()),
    "stl10": DatasetEntry("stl", "STL", "113,000 96x96 colour, most unlabelled (about 2.6 GB)",
                          options=(("n_val_folds", 0),)),
    "usps": DatasetEntry("usps", "USPS", "handwritten digits, 9,298 16x16 (needs h5py)"),
}

HELP = "download and verify datasets ahead of time"


def dataset_name(text: str) -> str:
    """Normalise a dataset name as typed: lower case, ``_`` read as ``-``.

    Examples
    --------
    >>> dataset_name("Fashion_MNIST")
    'fashion-mnist'
    """
    return text.strip().lower().replace("_", "-")


def _description() -> str:
    width = max(map(len, DATASETS))
    names = "\n".join(f"  {name:<{width}}  {entry.about}" for name, entry in DATASETS.items())
    return (
        "Download the named datasets, check every file against its SHA-256 and convert\n"
        "them into batchup's cache, so that later runs (or machines without internet that\n"
        "share the data directory) find them ready. A dataset already cached is only opened.\n\n"
        f"datasets:\n{names}\n\n"
        "The data directory is $BATCHUP_HOME/data (default ~/.batchup/data); a download\n"
        "mirror can be set with $BATCHUP_MIRROR ('python -m batchup info' shows both). The exit\n"
        "status is 0 when every dataset is ready, 1 when one failed, 130 on Ctrl-C."
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``fetch`` command to the subparsers ``sub``."""
    p = sub.add_parser("fetch", help=HELP, description=_description(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="+", type=dataset_name, choices=list(DATASETS), metavar="NAME",
                   help="one or more of the datasets listed above")
    p.set_defaults(run=run)


def _split_sizes(ds: Any) -> str:
    """Return "train 60,000, test 10,000" for a loaded dataset (its public splits; empty ones left out)."""
    sizes = ((split, ds.source(split).num_samples()) for split in getattr(ds, "splits", ()))
    return ", ".join(f"{split} {n:,}" for split, n in sizes if n)


def _say(line: str) -> None:
    print(line, flush=True)


def _warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def fetch_all(names: list[str], out: Callable[[str], Any] = _say, err: Callable[[str], Any] = _warn) -> list[str]:
    """Fetch each dataset of ``names`` in turn; report on ``out`` and ``err``; return the names that failed."""
    failed = []
    unique = list(dict.fromkeys(names))
    for i, name in enumerate(unique, 1):
        tag = f"[{i}/{len(unique)}] {name}"
        out(f"{tag}: fetching ({DATASETS[name].about})")
        start = time.perf_counter()
        try:
            ds = DATASETS[name].load()
            sizes = _split_sizes(ds)
        except (RuntimeError, OSError, ImportError, ValueError) as e:
            failed.append(name)
            err(f"{tag}: FAILED: {type(e).__name__}: {e}")
            continue
        out(f"{tag}: ready in {time.perf_counter() - start:.1f} s ({sizes} samples)")
    return failed


def run(args: argparse.Namespace) -> int:
    """Fetch ``args.names``; return 0 when all are ready, 1 when one failed, 130 on Ctrl-C."""
    from batchup import config

    try:
        _say(f"data directory: {config.get_data_dir()}")
        failed = fetch_all(args.names)
    except KeyboardInterrupt:
        print("interrupted: the partial download is kept and resumed by the next fetch", file=sys.stderr)
        return 130
    except (OSError, ValueError) as e:  # an unusable home or config file, before any dataset
        print(f"fetch failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if failed:
        print(f"{len(failed)} of {len(set(args.names))} datasets could not be fetched: {', '.join(failed)}",
              file=sys.stderr)
        return 1
    return 0
