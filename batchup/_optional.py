"""Import optional packages, naming the batchup extra that installs them.

The core needs NumPy alone; frameworks and formats (pandas, h5py, scipy,
torch, ...) are imported only by the feature that uses them, through
:func:`import_optional`, so a missing one fails with the ``pip install``
command that fixes it.
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
        If the module cannot be imported; the message names the feature, the
        import error and the ``pip install`` command, and chains the cause.

    Examples
    --------
    >>> import_optional("json", "none", "this example").__name__
    'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{feature} needs {module}, which could not be imported ({err}); "
            f"install it with: pip install batchup[{extra}]"
        ) from err
