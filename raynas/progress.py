"""One progress display for every long command (training, sweeps, fine-tuning, the demo).

``Progress`` prints two kinds of output: permanent lines (an epoch's summary,
a finished step) and one live status line (a bar, rates, time left). On a
terminal the status line is redrawn in place; elsewhere (a log file, CI) it
is printed at most every ``interval`` seconds, so logs stay readable.

Work that runs in Ray workers reports through a ``ProgressBoard`` actor:
workers ``post`` small events without waiting, and ``follow`` renders them
on the driver while the work runs::

    board = ProgressBoard.start()
    with follow(board, progress, render):        # render(event, progress)
        trainer.fit()                            # workers: board.post.remote({...})
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Any, Callable, Iterator, TextIO


def duration(seconds: float | None) -> str:
    """``m:ss`` or ``h:mm:ss`` (``?`` when unknown)."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def bar(done: float, total: float, width: int = 20) -> str:
    """``[#####.....]`` for ``done`` of ``total``."""
    filled = 0 if total <= 0 else min(width, int(round(width * done / total)))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def eta(elapsed: float, done: float, total: float) -> float | None:
    """Seconds left at the rate so far (None before anything is done)."""
    return None if done <= 0 else elapsed * (total - done) / done


class Progress:
    """Permanent lines and one live status line on ``stream`` (stdout by default).

    >>> import io
    >>> out = io.StringIO(); p = Progress(out, interval=0)
    >>> p.line("epoch 1/2: loss 1.23"); p.status("epoch 2/2 [##..] 5/10"); p.close()
    >>> out.getvalue().splitlines()
    ['epoch 1/2: loss 1.23', 'epoch 2/2 [##..] 5/10']
    """

    def __init__(self, stream: TextIO | None = None, interval: float = 15.0, prefix: str = ""):
        self.stream = stream or sys.stdout
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval
        self.prefix = prefix
        self._shown = ""  # the status line on screen (live mode)
        self._last_printed = 0.0
        self._pending = ""  # the newest status not yet printed (log mode)
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        """A permanent line (the status line is redrawn below it; in a log, an unprinted status is dropped)."""
        with self._lock:
            self._pending = ""
            self._clear()
            self.stream.write(f"{self.prefix}{text}\n")
            if self._shown:
                self.stream.write(self._shown)
            self.stream.flush()

    def status(self, text: str) -> None:
        """Replace the live status line."""
        text = f"{self.prefix}{text}"
        with self._lock:
            if self.live:
                self._clear()
                self._shown = text
                self.stream.write(text)
                self.stream.flush()
                return
            self._pending = text
            if time.monotonic() - self._last_printed >= self.interval:
                self._flush_pending()

    _current: "Progress | None" = None

    @contextlib.contextmanager
    def active(self) -> Iterator["Progress"]:
        """Make this the display ``Progress.current()`` returns while the body runs (for code that
        Ray rebuilt from a pickle, such as a restored Tune experiment's callbacks)."""
        before, Progress._current = Progress._current, self
        try:
            yield self
        finally:
            Progress._current = before

    @staticmethod
    def current(prefix: str = "") -> "Progress":
        """The active display, else a new one on stdout."""
        return Progress._current or Progress(prefix=prefix)

    def close(self) -> None:
        """End the status line (log mode: print the last status if it was not shown)."""
        with self._lock:
            if self.live and self._shown:
                self.stream.write("\n")
                self._shown = ""
            elif self._pending:
                self._flush_pending()
            self.stream.flush()

    def _flush_pending(self) -> None:
        self.stream.write(self._pending + "\n")
        self.stream.flush()
        self._pending = ""
        self._last_printed = time.monotonic()

    def _clear(self) -> None:
        if self.live and self._shown:
            self.stream.write("\r" + " " * len(self._shown) + "\r")


class ProgressBoard:
    """A Ray actor collecting progress events from workers for the driver to render."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def post(self, event: dict) -> None:
        self.events.append(event)

    def take(self) -> list[dict]:
        events, self.events = self.events, []
        return events

    @staticmethod
    def start():
        """A new board actor (no CPU; lives as long as its handle)."""
        import ray

        return ray.remote(ProgressBoard).options(num_cpus=0).remote()


@contextlib.contextmanager
def follow(board, progress: Progress, render: Callable[[dict, Progress], None],
           period: float = 0.5) -> Iterator[None]:
    """Render the board's events on the driver (in a thread) while the body runs."""
    import ray

    stop = threading.Event()

    def drain() -> None:
        for event in ray.get(board.take.remote(), timeout=30):  # a lost board never blocks the driver
            render(event, progress)

    def loop() -> None:
        while not stop.wait(period):
            try:
                drain()
            except Exception:  # a board gone with a failed run: the body reports the failure
                return

    thread = threading.Thread(target=loop, name="raynas-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        with contextlib.suppress(Exception):
            drain()
        progress.close()


def quiet_ray_logs(log_file: str, verbose: bool = False) -> None:
    """Send Ray's, Tune's and Train's own log records (INFO and up) to ``log_file`` unless ``verbose``.

    Call it after joining Ray (``raynas.cluster.connect`` keeps Ray's start-up notices quiet).
    """
    import logging

    if verbose:
        return
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    logger = logging.getLogger("ray")
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def status_fields(fields: dict[str, Any]) -> str:
    """``key value`` pairs joined for a status line (floats to 4 significant digits)."""
    return "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())


class WorkerProgress:
    """In a training worker: post step and epoch events to a ``ProgressBoard`` (rank 0 only; never waits).

    Step events go out at most every ``period`` seconds; ``render_training`` draws them.
    """

    def __init__(self, board, rank: int, epochs: int, steps_per_epoch: int, period: float = 1.0):
        self.board = board if rank == 0 else None
        self.epochs, self.steps, self.period = epochs, steps_per_epoch, period
        self._epoch_started = self._last = time.monotonic()
        self._images = 0

    def start_epoch(self) -> None:
        self._epoch_started = self._last = time.monotonic()
        self._images = 0

    def step(self, epoch: int, step: int, images: int) -> None:
        """``step`` steps of ``epoch`` (1-based) are done; ``images`` were trained on in this one."""
        self._images += images
        now = time.monotonic()
        if self.board is None or (now - self._last < self.period and step < self.steps):
            return
        self._last = now
        elapsed = now - self._epoch_started
        self.board.post.remote({"kind": "step", "epoch": epoch, "epochs": self.epochs, "step": step,
                                "steps": self.steps, "images_per_s": self._images / max(elapsed, 1e-9),
                                "eta_s": eta(elapsed, step, self.steps)})

    def epoch(self, metrics: dict[str, Any]) -> None:
        if self.board is not None:
            self.board.post.remote({"kind": "epoch", "epochs": self.epochs, "metrics": metrics})


def render_training(event: dict, progress: Progress) -> None:
    """Draw a ``WorkerProgress`` event: a live bar within the epoch, a line per finished epoch."""
    if event["kind"] == "step":
        progress.status(f"epoch {event['epoch']}/{event['epochs']} {bar(event['step'], event['steps'])} "
                        f"step {event['step']}/{event['steps']}  {event['images_per_s']:.1f} img/s  "
                        f"epoch ETA {duration(event['eta_s'])}")
    elif event["kind"] == "epoch":
        metrics = dict(event["metrics"])
        epoch = metrics.pop("epoch")
        progress.line(f"epoch {epoch}/{event['epochs']}  " + status_fields(metrics))
