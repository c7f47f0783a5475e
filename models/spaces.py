"""Hugging Face Spaces (ZeroGPU) support: ``gpu`` marks a function that needs the GPU.

On a Space with the ``spaces`` package installed, ``gpu`` is ``spaces.GPU``, which attaches a GPU
for the duration of each call. Everywhere else it returns the function unchanged.
"""

from __future__ import annotations

import importlib.util
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable[..., object])


def spaces_available() -> bool:
    """Whether the ``spaces`` package (Hugging Face Spaces) is importable."""
    return importlib.util.find_spec("spaces") is not None


def gpu(fn: F) -> F:
    """Wrap ``fn`` with ``spaces.GPU`` when running on Spaces; a no-op elsewhere."""
    if not spaces_available():
        return fn
    import spaces  # type: ignore[import-not-found]

    return spaces.GPU(fn)  # type: ignore[no-any-return]
