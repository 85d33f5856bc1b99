"""FileArray: an array-like whose samples are files, read only when indexed.

A folder of images (or ``.npy`` files, or audio clips) and a CSV naming them
is the commonest dataset that does not fit in memory. :class:`FileArray`
turns the list of file names and a loader function ("path -> array") into
an object with ``__len__`` and ``__getitem__``, so it can sit in an
:class:`~batchup.sources.ArrayDataSource` next to the labels: samplers,
shuffling, resume and the worker pools then work unchanged, and a file is
read only when a batch that contains it is drawn.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import numpy as np

from batchup._checks import is_int, positive_int

__all__ = ["FileArray"]


class FileArray:
    """An array-like over a list of files: ``fa[i]`` is ``loader(path_i)``.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        One file per sample (a list, a NumPy array or a pandas Series of
        names). Kept as a NumPy array of ``str``.
    loader : callable
        ``loader(path) -> array``; called once per file read. It must return
        arrays of the same shape (and dtype) for every file, because a batch
        stacks them. :func:`~batchup.arrays.read_image` and
        :func:`~batchup.arrays.read_npy` are ready-made loaders.
    base_dir : str or os.PathLike, optional
        Joined in front of every relative path.
    max_workers : int, optional
        Keyword-only. Read the files of one batch with this many threads
        (file reads and most decoders release the GIL). ``None`` (default)
        reads them one after the other in the calling thread; both give the
        same batches.

    Raises
    ------
    TypeError
        If ``loader`` is not callable or ``paths`` is a single string.
    ValueError
        If ``paths`` is not one-dimensional.

    Notes
    -----
    Indexing with an int returns one sample; with a slice or a 1-D integer
    array it returns ``np.stack`` of the samples (an empty selection gives an
    array of length 0). A file that cannot be found raises
    ``FileNotFoundError`` naming the file and the sample index; any other
    error from ``loader`` propagates with a note naming the file. The object
    holds no open files or threads (a batch's thread pool lives only while
    that batch is read), so it pickles to worker processes.

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> for i in range(5):
    ...     np.save(os.path.join(folder, f"{i}.npy"), np.full(3, i))
    >>> fa = FileArray([f"{i}.npy" for i in range(5)], np.load, base_dir=folder)
    >>> len(fa), fa[4].tolist()
    (5, [4, 4, 4])
    >>> fa[np.array([3, 0])].tolist()
    [[3, 3, 3], [0, 0, 0]]

    In a data source, files are read batch by batch:

    >>> from batchup.sources import ArrayDataSource
    >>> ds = ArrayDataSource([fa, np.arange(5)])
    >>> [(x.shape, y.tolist()) for x, y in ds.batch_iterator(2)]
    [((2, 3), [0, 1]), ((2, 3), [2, 3]), ((1, 3), [4])]
    """

    def __init__(
        self,
        paths: Sequence[Any],
        loader: Callable[[str], Any],
        base_dir: Any = None,
        *,
        max_workers: int | None = None,
    ) -> None:
        if not callable(loader):
            raise TypeError(f"loader must be callable (path -> array), got {loader!r}")
        if isinstance(paths, (str, bytes, os.PathLike)):
            raise TypeError(f"paths must be a sequence of file names, got the single path {paths!r}")
        names = [os.fspath(p) for p in paths]
        arr = np.array(names, dtype=str) if names else np.zeros(0, dtype=str)
        if arr.ndim != 1:
            raise ValueError(f"paths must be one-dimensional, got shape {arr.shape}")
        if max_workers is not None:
            max_workers = positive_int("max_workers", max_workers)
        self.paths = arr
        self.loader = loader
        self.base_dir = None if base_dir is None else os.fspath(base_dir)
        self.max_workers = max_workers

    def __len__(self) -> int:
        return len(self.paths)

    def path(self, i: int) -> str:
        """Return the full path of sample ``i`` (``base_dir`` joined in front).

        Parameters
        ----------
        i : int
            The sample's position (negative counts from the end).

        Returns
        -------
        str
            The path the loader is called with for sample ``i``.
        """
        name = str(self.paths[i])
        return name if self.base_dir is None else os.path.join(self.base_dir, name)

    def __getitem__(self, index: Any) -> Any:
        if is_int(index):
            i = int(index)
            n = len(self)
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of range for a FileArray of {n} files")
            return self._load(i % n if n else i)
        if isinstance(index, slice):
            positions = np.arange(*index.indices(len(self)))
        else:
            positions = np.asarray(index)
            if positions.ndim != 1 or (positions.size and positions.dtype.kind not in "iu"):
                raise TypeError(
                    f"a FileArray is indexed by an int, a slice or a 1-D integer array, got {index!r}"
                )
            positions = positions.astype(np.intp, copy=False)
            n = len(self)
            if positions.size and (positions.max() >= n or positions.min() < -n):
                bad = positions[(positions >= n) | (positions < -n)][0]
                raise IndexError(f"index {int(bad)} is out of range for a FileArray of {n} files")
            positions = positions % n if n else positions
        return self._load_many(positions)

    def _load(self, i: int) -> Any:
        path = self.path(i)
        try:
            return self.loader(path)
        except FileNotFoundError as err:
            raise FileNotFoundError(
                err.errno, f"FileArray sample {i}: file not found: {path!r}", path
            ) from err
        except Exception as err:
            _note(err, f"while FileArray loaded sample {i} from {path!r}")
            raise

    def _load_many(self, positions: np.ndarray) -> np.ndarray:
        if len(positions) == 0:
            return np.zeros((0,), dtype=np.float32)
        items = [int(i) for i in positions]
        if self.max_workers is None or self.max_workers == 1 or len(items) == 1:
            samples = [self._load(i) for i in items]
        else:
            workers = min(self.max_workers, len(items))
            with ThreadPoolExecutor(workers, thread_name_prefix="batchup-filearray") as ex:
                samples = list(ex.map(self._load, items))
        try:
            return np.stack([np.asarray(s) for s in samples])
        except ValueError as err:
            shapes: dict[tuple, int] = {}  # shape -> the first sample that has it
            for i, s in zip(items, samples):
                shapes.setdefault(np.shape(s), i)
            detail = ", ".join(f"{shape} (sample {i}: {self.path(i)!r})" for shape, i in shapes.items())
            raise ValueError(
                f"FileArray cannot stack a batch: the loader returned arrays of different shapes: {detail}"
            ) from err

    def __repr__(self) -> str:
        where = "" if self.base_dir is None else f", base_dir={self.base_dir!r}"
        name = getattr(self.loader, "__name__", type(self.loader).__name__)
        return f"FileArray(<{len(self)} files>, loader={name}{where})"


def _note(err: BaseException, text: str) -> None:
    add = getattr(err, "add_note", None)  # Python 3.11+
    if add is not None:
        add(text)
