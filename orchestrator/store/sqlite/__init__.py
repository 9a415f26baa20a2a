"""The SQLite store, the embedded default: the store (reads, and writes through the writer
process), the writer process (a standard-library-only script), the schema's migrations."""

from .store import SQLiteStore

__all__ = ["SQLiteStore"]
