"""Shared adapter behaviour: seeds, structures, lazy framework imports and their errors."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from batchup.adapters import _common
from batchup.sources import ArrayDataSource


class TestResolveSeed:
    def test_in_order_values(self):
        """None, False and np.False_ mean no shuffling."""
        assert _common.resolve_seed(None) is None
        assert _common.resolve_seed(False) is None
        assert _common.resolve_seed(np.False_) is None

    def test_int_is_the_seed(self):
        assert _common.resolve_seed(7) == 7
        assert _common.resolve_seed(np.int64(7)) == 7

    def test_true_draws_a_fresh_seed(self):
        seed = _common.resolve_seed(True)
        assert isinstance(seed, int) and 0 <= seed < 2**32

    def test_rng_objects_are_drawn_from_once(self):
        a = _common.resolve_seed(np.random.RandomState(3))
        b = _common.resolve_seed(np.random.RandomState(3))
        assert a == b
        assert _common.resolve_seed(np.random.default_rng(3)) == _common.resolve_seed(np.random.default_rng(3))

    @pytest.mark.parametrize("bad", [-1, 2**32])
    def test_out_of_range(self, bad):
        with pytest.raises(ValueError, match="shuffle: an int seed must be in"):
            _common.resolve_seed(bad)

    @pytest.mark.parametrize("bad", ["yes", 1.5, object()])
    def test_wrong_type(self, bad):
        with pytest.raises(TypeError, match="shuffle must be None/False"):
            _common.resolve_seed(bad)


def test_epoch_e_is_the_core_iterator_with_epoch_e():
    """One seed scheme: the adapters' epoch e is batch_iterator(shuffle=seed, epoch=e)."""
    from batchup.adapters._stream import EpochStream
    from batchup.sources import ArrayDataSource

    src = ArrayDataSource([np.arange(23)])
    stream = EpochStream(src, 5, shuffle=7)
    for e in range(3):
        core = [b[0].tolist() for b in src.batch_iterator(5, shuffle=7, epoch=e)]
        assert [b[0].tolist() for b in stream.batches(e)] == core
        assert [stream.batch(e, i)[0].tolist() for i in range(len(stream))] == core


class TestStructure:
    def test_nested_tuple_and_dict(self):
        batch = ("a", "b", "y", "w")
        assert _common.apply_structure(batch, ((0, 1), 2, 3)) == (("a", "b"), "y", "w")
        assert _common.apply_structure(batch, ({"x1": 0, "x2": 1}, 2)) == ({"x1": "a", "x2": "b"}, "y")

    def test_lists_become_tuples(self):
        assert _common.apply_structure(("a", "b"), [[0], 1]) == (("a",), "b")

    def test_position_past_the_batch(self):
        with pytest.raises(IndexError, match="position 5 but the batch holds 2 arrays"):
            _common.apply_structure(("a", "b"), (0, 5))

    @pytest.mark.parametrize(
        "bad, err, msg",
        [((0, "x"), TypeError, r"structure\[1\]: leaves must be int"),
         ((0, -1), ValueError, r"structure\[1\]: positions must be >= 0"),
         ({1: 0}, TypeError, "dict keys must be strings")],
    )
    def test_bad_templates(self, bad, err, msg):
        with pytest.raises(err, match=msg):
            _common.check_structure(bad)


def test_as_source_accepts_lists_and_rejects_others():
    assert isinstance(_common.as_source([np.zeros(3)]), ArrayDataSource)
    with pytest.raises(TypeError, match="source must be a batchup data source or a list of arrays, got int"):
        _common.as_source(3)


_FRAMEWORKS = [
    ("batchup.adapters.torch", "torch", "torch", lambda m: m.as_iterable_dataset([np.zeros(4)], 2)),
    ("batchup.adapters.keras", "keras", "keras", lambda m: m.as_py_dataset([np.zeros(4)], 2)),
    ("batchup.adapters.jax", "jax", "jax", lambda m: m.prefetch_to_device([np.zeros(2)])),
    ("batchup.adapters.tf", "tensorflow", "tf", lambda m: m.as_tf_dataset([np.zeros(4)], 2)),
]


@pytest.mark.parametrize("module, framework, extra, call", _FRAMEWORKS, ids=[f[1] for f in _FRAMEWORKS])
def test_missing_framework_names_the_extra(monkeypatch, module, framework, extra, call):
    """A framework that cannot be imported gives an ImportError naming pip install batchup[extra]."""
    import importlib

    mod = importlib.import_module(module)
    monkeypatch.setitem(sys.modules, framework, None)  # makes "import <framework>" fail
    for cached in ("BatchPyDataset", "BatchIterableDataset"):
        monkeypatch.delitem(mod.__dict__, cached, raising=False)
    with pytest.raises(ImportError, match=rf"pip install batchup\[{extra}\]"):
        call(mod)


def test_importing_adapters_imports_no_framework():
    """The adapter modules themselves load without importing any framework."""
    code = (
        "import sys\n"
        "import batchup.adapters.keras, batchup.adapters.torch, batchup.adapters.jax, batchup.adapters.tf\n"
        "print(sorted(m for m in ('torch', 'keras', 'jax', 'tensorflow') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_keras_without_backend_explains_keras_backend(tmp_path):
    """Keras without KERAS_BACKEND falls back to TensorFlow; the error says how to choose a backend."""
    pytest.importorskip("keras")
    try:
        import tensorflow  # noqa: F401
        pytest.skip("TensorFlow is installed, so Keras' default backend works")
    except ImportError:
        pass
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["KERAS_HOME"] = str(tmp_path)  # Keras writes its config file there, not in the home folder
    code = (
        "import numpy as np\n"
        "from batchup.adapters.keras import as_py_dataset\n"
        "try:\n"
        "    as_py_dataset([np.zeros(4)], 2)\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert "set KERAS_BACKEND=jax" in out.stdout, out.stderr[-2000:]
