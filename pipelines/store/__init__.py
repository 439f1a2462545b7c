"""Transactional stores (Icechunk repositories of Zarr v3 groups)."""

from pipelines.store.archive import Archive, ArchiveError, WriteReport, open_archive

__all__ = ["Archive", "ArchiveError", "WriteReport", "open_archive"]
