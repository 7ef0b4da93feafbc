"""One launch of one engine: the guarded vLLM process, its log, and what its output says.

The supervisor owns one :class:`EngineProcess` per running engine. A reader thread copies
vLLM's output into the engine's rotating log file and keeps the lines of this launch for
progress and diagnosis; everything else happens on the supervisor's main thread.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from inference.diagnosis import progress_of
from inference.process_guard import GUARD_PREFIX
from inference.vllm_args import Launch, display_command

# Lines of one launch kept in memory for diagnosis (the file keeps everything).
KEPT_LINES = 3000
TAIL_LINES = 80


def engine_log_path(name: str) -> Path:
    """Return the path of an engine's log file (rotated next to it as .1, .2, ...)."""
    return Path(settings.ENGINE_LOG_DIR) / f"engine-{name}.log"


def note(name: str, text: str) -> None:
    """Write a supervisor line, with its own timestamp, into an engine's log file."""
    stamp = timezone.localtime().strftime("%Y-%m-%d %H:%M:%S")
    engine_log(name).info("[supervisor %s] %s", stamp, text)


def engine_log(name: str) -> logging.Logger:
    """Return the logger that writes an engine's rotating log file."""
    logger = logging.getLogger(f"portal.engine_log.{name}")
    if not logger.handlers:
        path = engine_log_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=settings.ENGINE_LOG_MAX_BYTES, backupCount=settings.ENGINE_LOG_BACKUPS, encoding="utf-8"
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


class EngineProcess:
    """A running (or finished) launch of vLLM under the process guard."""

    def __init__(self, name: str, launch: Launch) -> None:
        self.name = name
        self.launch = launch
        self.log = engine_log(name)
        self.lines: deque[str] = deque(maxlen=KEPT_LINES)
        self.progress: float | None = None
        self.vllm_pid: int | None = None
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._changed = True
        note(name, f"launching: {display_command(launch)}")
        env = {**os.environ, **launch.env}
        # The guard is our child; vLLM is the guard's. Both die when we die (see process_guard).
        self.guard = subprocess.Popen(  # noqa: S603 - argv built by vllm_args from a validated config
            [
                sys.executable,
                "-m",
                "inference.process_guard",
                "--parent",
                str(os.getpid()),
                "--grace",
                str(settings.ENGINE_STOP_GRACE),
                "--",
                *launch.argv,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(settings.BASE_DIR),
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"engine-log-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stream = self.guard.stdout
        if stream is None:
            return
        for raw in iter(stream.readline, b""):
            # Progress bars redraw with carriage returns; the last drawing is the current one.
            line = raw.decode("utf-8", "replace").rstrip("\n").split("\r")[-1].rstrip()
            if line.startswith(GUARD_PREFIX):
                self.vllm_pid = int(line[len(GUARD_PREFIX) :])
                continue
            self.log.info("%s", line)
            progress = progress_of(line)
            with self._lock:
                self.lines.append(line)
                if progress is not None and (self.progress is None or progress > self.progress):
                    self.progress = progress
                self._changed = True

    def poll(self) -> int | None:
        """Return the exit status once vLLM and its guard have ended, else None."""
        code = self.guard.poll()
        if code is not None:
            self._reader.join(timeout=5)
        return code

    def take_changes(self) -> bool:
        """Return True (once) when new output arrived since the last call."""
        with self._lock:
            changed, self._changed = self._changed, False
        return changed

    def recent_lines(self, count: int = TAIL_LINES) -> list[str]:
        with self._lock:
            return list(self.lines)[-count:]

    def all_lines(self) -> list[str]:
        with self._lock:
            return list(self.lines)

    def stop(self) -> int:
        """Stop vLLM and everything it started; return the exit status."""
        if self.guard.poll() is None:
            note(self.name, "stopping (SIGTERM)")
            self.guard.send_signal(signal.SIGTERM)
            try:
                self.guard.wait(timeout=settings.ENGINE_STOP_GRACE + 10)
            except subprocess.TimeoutExpired:
                # The guard itself hangs: take the whole group down directly.
                if self.vllm_pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.vllm_pid, signal.SIGKILL)
                self.guard.kill()
                self.guard.wait()
        code = self.poll()
        note(self.name, f"exited with status {code}")
        return code if code is not None else -1
