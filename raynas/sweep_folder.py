"""The layout of a sweep's folder, in one place (the sweep runner and the analysis both use it)::

    OUT/sweep.json        what the sweep is: its config (``SweepConfig.dump()``), the objective's
                          record, metric, mode, constraint, dimensions
    OUT/tune/             the one Ray Tune experiment of the whole sweep (``Tuner.restore`` it;
                          ``ResultGrid.get_dataframe()`` has ``config/searcher`` and ``config/seed``)
    OUT/journal.jsonl     every finished evaluation as it arrives (so a killed sweep never
                          evaluates a finished architecture again)
    OUT/epochs.jsonl      every epoch's report of trials that train (a search run per trial)
    OUT/trials.parquet    one tidy row per proposal (``analysis.results``), written at the end
    OUT/raynas.log        Ray's and Tune's own log output (kept off the console)
    OUT/score_noise.json  how much one architecture's score moves with the images scoring it
    OUT/finetune/         the fine-tuned winners: <arch_id>/model.onnx, model.pt, metrics.json
    OUT/rank_check/       how far the ranking holds (``raynas rank-check``): rank_check.json, what was
                          checked (plan.json), the fine-tuning runs (models/), their Tune experiment (tune/)
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
    EPOCHS = "epochs.jsonl"
    TRIALS = "trials.parquet"
    LOG = "raynas.log"
    NOISE = "score_noise.json"
    FINETUNE = "finetune"
    RANK_CHECK = "rank_check"

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

    @property
    def noise_file(self) -> Path:
        return self.path / self.NOISE

    @property
    def finetune(self) -> Path:
        return self.path / self.FINETUNE

    @property
    def rank_check(self) -> Path:
        return self.path / self.RANK_CHECK

    @property
    def rank_check_file(self) -> Path:
        return self.rank_check / "rank_check.json"

    @property
    def rank_check_plan(self) -> Path:
        return self.rank_check / "plan.json"

    @staticmethod
    def trial_dir_name(searcher: str, seed: int, trial_id: str) -> str:
        """``<searcher>_seed<k>_<trial id>``: a trial's folder under ``tune/``."""
        return f"{searcher}_seed{seed}_{trial_id}"

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

    @property
    def epochs_file(self) -> Path:
        return self.path / self.EPOCHS

    def append_journal(self, entry: dict[str, Any]) -> None:
        """A finished evaluation: one line, appended in a single write (a kill leaves at most a partial line)."""
        _append_line(self.journal_file, entry)

    def journal(self) -> Iterator[dict[str, Any]]:
        """The complete lines of the journal (a partial last line is skipped)."""
        return _read_lines(self.journal_file)

    def append_epoch(self, entry: dict[str, Any]) -> None:
        """One epoch's report of a trial that trains, appended like a journal line."""
        _append_line(self.epochs_file, entry)

    def epochs(self) -> Iterator[dict[str, Any]]:
        """The complete lines of ``epochs.jsonl``."""
        return _read_lines(self.epochs_file)


def _append_line(path: Path, entry: dict[str, Any]) -> None:
    line = (json.dumps(entry, separators=(",", ":"), default=float) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _read_lines(path: Path) -> Iterator[dict[str, Any]]:
    if not path.is_file():
        return
    data = path.read_bytes()
    for line in data[: data.rfind(b"\n") + 1].splitlines():
        if line.strip():
            yield json.loads(line)
