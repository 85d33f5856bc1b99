"""Every public name has a numpydoc docstring whose Parameters and Returns match the code.

Checked with :func:`numpydoc.validate.validate`, one test per name, so a failure names the object
and the check:

* **GL08** the object has a docstring;
* **PR01** every parameter of the signature is documented, **PR02** nothing else is, and **PR03**
  in the signature's order (options taken through ``**kwargs`` are described under ``**kwargs``);
* **RT01** a function that returns a value has a Returns section, **YD01** a generator a Yields
  section;
* **GL06** / **GL07** the sections are numpydoc's, in numpydoc's order (Sphinx renders others as
  plain text).

*Public* means: listed in the ``__all__`` of a public module (a module of ``batchup`` with no
path component starting with ``_``: the facades ``batchup.data_source``, ``batchup.sampling``,
``batchup.work_pool``, ``batchup.config``, the ``batchup.datasets.*`` modules, every package and
its modules), and the public methods and properties of the public classes among them, wherever
in the class's bases they are defined, ``__call__`` included. Other special methods
(``__len__``, ``__iter__``, ...) mean what Python says they mean and are not checked. An object
is checked once, under the name of its definition, however many facades re-export it (so
BatchUp 0.2 aliases such as ``RandomAccessBatchIterator`` are checked as ``BatchIterator``).

What is left out, and why:

* an override with no docstring of its own and the same signature as a documented method of a
  base class: ``help()`` and Sphinx show the inherited docstring, so the base's is checked
  (an override whose signature differs needs its own);
* methods and properties defined outside batchup (``Exception``, ``tuple``, framework base
  classes): their projects document them;
* module constants in ``__all__`` (``FILES``, ``HOSTS``, ``CLASS_NAMES``, ...): documented by
  ``#:`` comments, which numpydoc does not read;
* parameters whose names start with ``_`` (``_owns_pool``, ``_label``, ``_first_number``):
  internal hooks between batchup's own modules, never a user's argument;
* the signature of a ``typing.Protocol`` (``RecordEncoderProtocol``, ``BatchEncoderProtocol``):
  a protocol is never instantiated, its ``(*args, **kwargs)`` is ``Protocol``'s own;
* the PEP 562 module ``__getattr__`` hooks of ``batchup.adapters.keras`` and
  ``batchup.adapters.torch``: private functions. The classes they build on first use
  (``BatchPyDataset``, ``BatchIterableDataset``; not in ``__all__``, since listing them would
  import the framework) are users' objects all the same, and are checked by
  ``test_lazily_built_class_docstrings``, which skips when the framework is missing.

``EXEMPT`` names any other object left out, with the reason; it is empty, and an entry that no
longer names a public object fails ``test_exemptions_are_current``.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any, Iterator

import pytest
from numpydoc.docscrape import get_doc_object
from numpydoc.validate import Validator, validate

import batchup

CHECKS = frozenset({"GL06", "GL07", "GL08", "PR01", "PR02", "PR03", "RT01", "YD01"})

#: name -> why its docstring is not validated.
EXEMPT: dict[str, str] = {}

#: Classes built on first use by a PEP 562 ``__getattr__`` (importing the framework), with the
#: module that provides the framework.
LAZY_CLASSES = {
    "batchup.adapters.keras.BatchPyDataset": "keras",
    "batchup.adapters.torch.BatchIterableDataset": "torch",
}


def public_modules() -> list[str]:
    """Return the dotted names of batchup's public modules, ``batchup`` itself included."""
    names = ["batchup"]
    for info in pkgutil.walk_packages(batchup.__path__, "batchup."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def _signature_key(obj: Any) -> Any:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    return [(p.name, p.kind, repr(p.default)) for p in sig.parameters.values()]


def _unwrap(raw: Any) -> Any:
    return raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw


def _documented(cls: type, attr: str) -> tuple[type, Any] | None:
    """Return the class and object whose docstring ``cls.attr`` shows, or None to skip it."""
    mro = cls.__mro__
    i = next((k for k, base in enumerate(mro) if attr in vars(base)), None)
    if i is None:  # pragma: no cover - dir() lists only attributes found in the MRO (or a metaclass)
        return None
    owner = mro[i]
    raw = _unwrap(vars(owner)[attr])
    if not (inspect.isfunction(raw) or isinstance(raw, property)):
        return None  # data attributes and nested classes
    if raw.__doc__ is None:
        # An undocumented override shows the docstring it inherits, if its signature is the same.
        for base in mro[i + 1:]:
            inherited = _unwrap(vars(base).get(attr))
            if inherited is not None and getattr(inherited, "__doc__", None):
                if isinstance(raw, property) or _signature_key(raw) == _signature_key(inherited):
                    owner, raw = base, inherited
                break
    if not (owner.__module__ or "").startswith("batchup"):
        return None
    return owner, raw


def class_members(cls: type) -> Iterator[tuple[str, Any]]:
    """Yield ``(dotted name, object)`` for the public methods and properties of ``cls``."""
    for attr in sorted(dir(cls)):
        if attr.startswith("_") and attr != "__call__":
            continue
        found = _documented(cls, attr)
        if found is not None:
            owner, obj = found
            yield f"{owner.__module__}.{owner.__qualname__}.{attr}", obj


def public_objects() -> dict[str, Any]:
    """Return every public function, class, method and property, by the name of its definition."""
    seen: dict[int, str] = {}
    objects: dict[str, Any] = {}

    def add(name: str, obj: Any) -> None:
        if id(obj) not in seen:
            seen[id(obj)] = name
            objects[name] = obj

    for module_name in public_modules():
        module = importlib.import_module(module_name)
        for attr in getattr(module, "__all__", ()):
            obj = getattr(module, attr)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                add(f"{obj.__module__}.{obj.__qualname__}", obj)
    for obj in [o for o in objects.values() if inspect.isclass(o)]:
        for name, member in class_members(obj):
            add(name, member)
    return dict(sorted(objects.items()))


class _Validator(Validator):
    """numpydoc's validator with the two parameter rules of the module docstring."""

    def __init__(self, obj_name: Any) -> None:
        super().__init__(get_doc_object(obj_name))

    @property
    def signature_parameters(self) -> tuple:
        if inspect.isclass(self.obj) and getattr(self.obj, "_is_protocol", False):
            return ()
        return tuple(p for p in super().signature_parameters if not p.lstrip("*").startswith("_"))


def docstring_errors(obj: Any) -> list[str]:
    """Return the failed checks of ``obj``'s docstring as ``"CODE: message"`` lines."""
    result = validate(obj, validator_cls=_Validator)
    return [f"{code}: {message}" for code, message in result["errors"] if code in CHECKS]


OBJECTS = public_objects()


@pytest.mark.parametrize("name", [n for n in OBJECTS if n not in EXEMPT])
def test_docstring(name: str) -> None:
    errors = docstring_errors(OBJECTS[name])
    assert not errors, f"{name}:\n  " + "\n  ".join(errors)


@pytest.mark.parametrize("name", sorted(LAZY_CLASSES))
def test_lazily_built_class_docstrings(name: str) -> None:
    pytest.importorskip(LAZY_CLASSES[name])
    module_name, _, attr = name.rpartition(".")
    cls = getattr(importlib.import_module(module_name), attr)
    found = {name: cls, **dict(class_members(cls))}
    errors = [f"{n}: {e}" for n, obj in found.items() for e in docstring_errors(obj)]
    assert not errors, "\n".join(errors)


def test_the_walk_finds_the_public_api() -> None:
    """The collection is not vacuous: the facades' names, methods and properties are in it."""
    assert "batchup.sources.array.ArrayDataSource" in OBJECTS  # via batchup.data_source too
    assert "batchup.sources.base.AbstractDataSource.batch_iterator" in OBJECTS
    assert "batchup.samplers.base.num_batches" in OBJECTS
    assert "batchup.parallel.pool.WorkerThreadPool" in OBJECTS
    assert "batchup.config.download_and_verify" in OBJECTS
    assert "batchup.datasets.mnist.MNIST" in OBJECTS
    assert any(isinstance(obj, property) for obj in OBJECTS.values())
    assert not any(name.rpartition(".")[2].startswith("_") and not name.endswith("__call__")
                   for name in OBJECTS)


def test_exemptions_are_current() -> None:
    stale = sorted(set(EXEMPT) - set(OBJECTS))
    assert not stale, f"EXEMPT names that are no longer public objects: {stale}"
