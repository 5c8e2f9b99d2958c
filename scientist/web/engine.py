"""The browser's engine on an existing archive: archive.db.open_reader (read-only; it neither
creates nor migrates the archive, and an unusable one raises a one-line ArchiveError)."""

from archive.db import ArchiveError as ArchiveUnreadable
from archive.db import open_reader as reader_engine

__all__ = ["ArchiveUnreadable", "reader_engine"]
