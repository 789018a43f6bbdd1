"""The layout of a sweep's folder, in one place (the sweep runner and the analysis both use it)::

    OUT/sweep.json        what the sweep is: its config (``SweepConfig.dump()``), the objective's
                          record, metric, mode, constraint, dimensions
    OUT/tune/             the one Ray Tune experiment of the whole sweep (``Tuner.restore`` it;
                          ``ResultGrid.get_dataframe()`` has ``config/searcher`` and ``config/seed``)
    OUT/journal.jsonl     every finished evaluation as it arrives (so a killed sweep never
                          evaluates a finished architecture again)
    OUT/trials.parquet    one tidy row per proposal (``analysis.results``), written at the end
    OUT/raynas.log        Ray's and Tune's own log output (kept off the console)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

from raynas.errors import UserError


class SweepFolder:
    """Paths and files of the sweep in ``out``."""

    SETTINGS = "sweep.json"
    EXPERIMENT = "tune"
    JOURNAL = "journal.jsonl"
    TRIALS = "trials.parquet"
    LOG = "raynas.log"

    def __init__(self, out: str | os.PathLike):
        self.path = Path(out).expanduser().resolve()

    @property
    def settings_file(self) -> Path:
        return self.path / self.SETTINGS

    @property
    def experiment(self) -> Path:
        return self.path / self.EXPERIMENT

    @property
    def journal_file(self) -> Path:
        return self.path / self.JOURNAL

    @property
    def trials_file(self) -> Path:
        return self.path / self.TRIALS

    @property
    def log_file(self) -> Path:
        return self.path / self.LOG

    def exists(self) -> bool:
        """Whether a sweep was started here."""
        return self.settings_file.is_file()

    def read_settings(self) -> dict[str, Any]:
        if not self.exists():
            raise UserError(f"sweep directory {self.path}: no {self.SETTINGS} (not a raynas sweep)")
        return json.loads(self.settings_file.read_text())

    def create(self, settings: dict[str, Any]) -> None:
        """Make the folder and write ``sweep.json`` (the first thing a sweep writes)."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.settings_file.write_text(json.dumps(settings, indent=1))

    def append_journal(self, entry: dict[str, Any]) -> None:
        """One line, appended in a single write (a kill leaves at most a partial last line)."""
        line = (json.dumps(entry, separators=(",", ":"), default=float) + "\n").encode()
        fd = os.open(self.journal_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def journal(self) -> Iterator[dict[str, Any]]:
        """The complete lines of the journal (a partial last line is skipped)."""
        if not self.journal_file.is_file():
            return
        data = self.journal_file.read_bytes()
        for line in data[: data.rfind(b"\n") + 1].splitlines():
            if line.strip():
                yield json.loads(line)
