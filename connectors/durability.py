"""What makes a new file's name outlive a power failure, for the node's state files."""

from __future__ import annotations

import os
from pathlib import Path


def sync_directory(directory: Path) -> None:
    """Sync `directory`: a file created or renamed in it is durable only once its entry is."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
