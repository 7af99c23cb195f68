"""One mode for every file of a checkpoint: what the umask allows (0o666 & ~umask), as a file
opened for writing gets. Writers that go through tempfile.mkstemp (transformers' atomic save of
model.safetensors) would leave their files 0600 and the rest 0644."""

from __future__ import annotations

import os
from pathlib import Path


def umask() -> int:
    """The process's umask, read without changing it where Linux shows it (/proc), so no other
    thread ever creates a file under a temporary mask."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def set_file_modes(directory: Path) -> None:
    """Give every regular file under `directory` the mode a new file gets (0o666 & ~umask)."""
    mode = 0o666 & ~umask()
    for path in Path(directory).rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(mode)
