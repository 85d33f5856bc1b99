"""The drivers of the conformance suite: every way a pipeline can be driven.

Each driver is registered with :func:`~tests.conformance.registry.register_driver`
(see :class:`~tests.conformance.registry.Driver` for the two kinds). Drivers
run in registration order; JAX comes last because it starts threads of its
own, and the process drivers fork.
"""
from __future__ import annotations

import itertools
from typing import Any, Callable

import numpy as np

from tests.conformance.registry import Env, EpochRun, Sampler, Shard, Source, register_driver

__all__ = ["numpy_batch"]

def _serial(env: Env, ds: Any) -> Callable:
    return ds.batch_iterator


def _prefetched(par_of: Callable) -> Callable:
    """An iterator driver over a ParallelDataSource made by ``par_of(env, ds)``; iterators are closed."""

    def open_(env: Env, ds: Any) -> Callable:
        par = par_of(env, ds)
        env.case_closers.append(par.close)

        def make(bs: Any, shuffle: Any = None, **options: Any) -> Any:
            it = par.batch_iterator(bs, shuffle, **options)
            env.case_closers.append(it.close)
            return it

        return make

    return open_


def _process_pool(env: Env) -> Any:
    from batchup.parallel.process_pool import WorkerProcessPool

    return env.resource("processes", lambda: WorkerProcessPool(2))


def _joblib_pool(env: Env) -> Any:
    def make() -> Any:
        import joblib

        from batchup.parallel import JoblibWorkerPool

        with joblib.parallel_config(backend="loky", n_jobs=2):
            return JoblibWorkerPool()

    def close(pool: Any) -> None:
        pool.close()
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True)

    return env.resource("joblib", make, lambda: close(env._resources["joblib"]))


def numpy_batch(batch: Any) -> Any:
    """Turn tensors and device arrays back into NumPy arrays, keeping the nesting."""
    if isinstance(batch, (tuple, list)):
        return type(batch)(numpy_batch(b) for b in batch)
    if isinstance(batch, dict):
        return {k: numpy_batch(v) for k, v in batch.items()}
    if isinstance(batch, np.ndarray):
        return batch
    if callable(getattr(batch, "numpy", None)):  # torch and TensorFlow tensors
        return batch.numpy()
    if type(batch).__module__.startswith(("jax", "jaxlib")):
        return np.asarray(batch)
    return batch


def _keras_py_dataset(env: Env, ds: Any) -> Callable:
    from batchup.adapters.keras import as_py_dataset

    def run(bs: Any, shuffle: Any, drop_last: bool, shard: Any, epochs: list, limit: Any, out: EpochRun) -> None:
        pyds = as_py_dataset(ds, bs, shuffle=shuffle, drop_last=drop_last, shard=shard, epoch=epochs[0])
        out.seed = pyds.batches.seed
        pyds.on_epoch_end()  # Keras calls it before the first epoch too; nothing was served, so no move
        for e in epochs:
            assert pyds.epoch == e, f"the PyDataset is at epoch {pyds.epoch}, expected {e}"
            n = len(pyds)
            batches = out.start_epoch(n)
            for i in range(n):
                batches.append(pyds[i])
            pyds.on_epoch_end()

    return run


def _keras_generator(env: Env, ds: Any) -> Callable:
    from batchup.adapters.keras import as_generator

    def run(bs: Any, shuffle: Any, drop_last: bool, shard: Any, epochs: list, limit: Any, out: EpochRun) -> None:
        gen = as_generator(ds, bs, shuffle=shuffle, drop_last=drop_last, shard=shard, epochs=len(epochs))
        out.flat = True
        out.start_epoch(None).extend(itertools.islice(gen, limit))  # extend keeps what came before an error

    return run


def _torch(num_workers: int, persistent: bool = False) -> Callable:
    def open_(env: Env, ds: Any) -> Callable:
        import torch

        from batchup.adapters.torch import as_iterable_dataset

        def run(bs: Any, shuffle: Any, drop_last: bool, shard: Any, epochs: list, limit: Any, out: EpochRun) -> None:
            dset = as_iterable_dataset(ds, bs, shuffle=shuffle, drop_last=drop_last, shard=shard, epoch=epochs[0])
            out.seed = dset.stream.seed
            loader = torch.utils.data.DataLoader(
                dset, batch_size=None, num_workers=num_workers, persistent_workers=persistent
            )
            try:
                for e in epochs:
                    dset.set_epoch(e)  # reaches persistent workers through shared memory
                    try:
                        length = len(dset)
                    except TypeError:
                        length = None
                    batches = out.start_epoch(length)
                    it = iter(loader)
                    try:
                        batches.extend(numpy_batch(b) for b in itertools.islice(it, limit))
                    finally:
                        if not persistent:
                            _shutdown(it)
                        del it
            finally:
                _shutdown(getattr(loader, "_iterator", None))

        return run

    return open_


def _shutdown(it: Any) -> None:
    """Stop a DataLoader iterator's worker processes now (not whenever it is collected)."""
    shutdown = getattr(it, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


def _torch_tensors(env: Env, ds: Any) -> Callable:
    from batchup.adapters.torch import iter_tensors

    def make(bs: Any, shuffle: Any = None, **options: Any) -> Any:
        return iter_tensors(ds.batch_iterator(bs, shuffle, **options))

    return make


def _tf_data(env: Env, ds: Any) -> Callable:
    from batchup.adapters.tf import as_tf_dataset

    def run(bs: Any, shuffle: Any, drop_last: bool, shard: Any, epochs: list, limit: Any, out: EpochRun) -> None:
        tds = as_tf_dataset(ds, bs, shuffle=shuffle, drop_last=drop_last, shard=shard, epoch=epochs[0])
        cardinality = int(tds.cardinality())
        for _ in epochs:  # every pass over a tf.data dataset is the next epoch
            batches = out.start_epoch(cardinality if cardinality >= 0 else None)
            batches.extend(numpy_batch(b) for b in itertools.islice(iter(tds), limit))

    return run


def _jax(env: Env, ds: Any) -> Callable:
    from batchup.adapters.jax import prefetch_to_device

    def make(bs: Any, shuffle: Any = None, **options: Any) -> Any:
        return prefetch_to_device(ds.batch_iterator(bs, shuffle, **options), size=2)

    return make


def _jax_expect(batch: Any) -> Any:
    """JAX stores 64-bit values as 32-bit unless ``jax_enable_x64`` is set (its documented default)."""
    import jax

    def leaf(x: Any) -> Any:
        if isinstance(x, np.ndarray):
            return x.astype(jax.dtypes.canonicalize_dtype(x.dtype))
        return x

    if isinstance(batch, (tuple, list)):
        return type(batch)(_jax_expect(b) for b in batch)
    return leaf(batch)


def _identity(state: Any) -> Any:
    return state


def _pydataset_refuses(src: Source, smp: Sampler, shard: Shard) -> tuple | None:
    if smp.endless and not src.bounded:
        return ValueError, "repeats forever"
    return None


register_driver("serial", "iterator", _serial, to_core_state=_identity, from_core_state=_identity)
register_driver("inline", "iterator", _prefetched(lambda env, ds: ds.prefetch(0)),
                to_core_state=_identity, from_core_state=_identity)
register_driver("threads", "iterator", _prefetched(lambda env, ds: ds.prefetch(2, kind="thread")),
                to_core_state=_identity, from_core_state=_identity)
# One process pool (and one joblib pool) serves every case of a module: ds.prefetch(2) is exactly
# ParallelDataSource(ds, buffer, WorkerProcessPool(2)), and starting processes per case would
# dominate the run time.
register_driver("processes", "iterator", _prefetched(lambda env, ds: _process_pool(env).parallel_data_source(ds, 4)),
                to_core_state=_identity, from_core_state=_identity)
register_driver("joblib", "iterator", _prefetched(lambda env, ds: _joblib_pool(env).parallel_data_source(ds, 4)),
                to_core_state=_identity, from_core_state=_identity, needs=("joblib",))
register_driver("torch_0", "epochs", _torch(0), adapter=True, walks_epochs=True, needs=("torch",))
register_driver("torch_2", "epochs", _torch(2), adapter=True, walks_epochs=True, needs=("torch",))
register_driver("torch_2_persistent", "epochs", _torch(2, persistent=True), adapter=True, walks_epochs=True,
                needs=("torch",))
register_driver("torch_iter_tensors", "iterator", _torch_tensors, needs=("torch",),
                to_core_state=lambda s: s["inner"], from_core_state=lambda s: {"kind": "tensors", "inner": s})
register_driver("keras_py_dataset", "epochs", _keras_py_dataset, adapter=True, walks_epochs=True,
                refuses=_pydataset_refuses, needs=("keras",))
register_driver("keras_generator", "epochs", _keras_generator, adapter=True, walks_epochs=True,
                from_epoch_zero=True, needs=("keras",))
def _tf_same_error(core_error: BaseException, error: BaseException) -> bool:
    """tf.data re-raises an exception from the Python generator as a ``tf.errors.OpError`` naming it."""
    import tensorflow as tf

    return isinstance(error, tf.errors.OpError) and f"{type(core_error).__name__}: {core_error}" in str(error)


# Runs only where TensorFlow imports (CI's TensorFlow venv); skipped here.
register_driver("tf_data", "epochs", _tf_data, adapter=True, walks_epochs=True, needs=("tensorflow",),
                same_error=_tf_same_error)
# Last: JAX starts threads of its own, and the process drivers above fork.
register_driver("jax", "iterator", _jax, expect=_jax_expect,
                to_core_state=lambda s: s["inner"], from_core_state=lambda s: {"kind": "device_prefetch", "inner": s},
                needs=("jax",))
