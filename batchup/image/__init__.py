"""Image helpers: lazy array wrappers for image data (see :mod:`batchup.image.utils`)."""
from __future__ import annotations

__all__: list[str] = []
