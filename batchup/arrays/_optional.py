"""Import an optional dependency, or explain which batchup extra provides it.

pandas, scikit-learn, h5py, zarr and pillow are extras: batchup never
imports them at package import time, only inside the feature that needs
them, and a missing one raises an ImportError that says what to install.
"""
from __future__ import annotations

import importlib
from typing import Any

__all__ = ["import_optional"]


def import_optional(module: str, extra: str, feature: str) -> Any:
    """Return the imported ``module`` or raise an ImportError naming ``extra``.

    Parameters
    ----------
    module : str
        The module to import, for example ``"pandas"`` or ``"PIL.Image"``.
    extra : str
        The batchup extra that installs it (``pip install batchup[extra]``).
    feature : str
        What needs it, for the message.

    Raises
    ------
    ImportError
        If the module cannot be imported; the message names the feature and
        the ``pip install`` command.

    Examples
    --------
    >>> import_optional("json", "none", "this example").__name__
    'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.partition(".")[0]
        raise ImportError(
            f"{feature} needs the optional package {top!r}, which is not installed; "
            f"install it with: pip install batchup[{extra}]"
        ) from err
