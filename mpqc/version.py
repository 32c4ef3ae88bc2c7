"""The installed version of mpqc."""

from __future__ import annotations

from importlib import metadata

__all__ = ["__version__"]

try:
    __version__ = metadata.version("mpqc")
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
