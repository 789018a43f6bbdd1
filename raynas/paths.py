"""Where shared data lives: ``$RAYNAS_DATA`` or ``../shared/data`` beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """The folder holding ``camvid/`` and ``nb201/`` (may not exist on a user's clone)."""
    return Path(os.environ.get("RAYNAS_DATA", REPO_ROOT.parent / "shared" / "data"))
