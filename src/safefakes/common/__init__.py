"""Shared helpers: errors, atomic output, progress bars."""

from safefakes.common.errors import SafefakesError
from safefakes.common.io import atomic_directory, atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = ["SafefakesError", "atomic_directory", "atomic_write_bytes", "atomic_write_json", "atomic_write_text"]
