"""Thin bridges from batchup data sources to deep-learning frameworks.

One module per framework, each imported on its own and each importing its
framework only when one of its functions is called:

* :mod:`batchup.adapters.keras`: a ``keras.utils.PyDataset`` over a
  random-access source, or a generator for any other source;
* :mod:`batchup.adapters.torch`: an ``IterableDataset`` for
  ``DataLoader(batch_size=None)`` that splits batches between the loader's
  workers and the ``torch.distributed`` ranks, and a plain iterator of tensors;
* :mod:`batchup.adapters.jax`: prefetching batches onto devices, and the
  process shard of a multi-process JAX run;
* :mod:`batchup.adapters.tf`: a ``tf.data.Dataset`` through ``from_generator``.

Importing ``batchup.adapters`` (or ``batchup``) imports no framework; a missing
framework raises an ``ImportError`` that names the extra to install, for
example ``pip install batchup[torch]``.
"""
from __future__ import annotations

__all__: list = []
