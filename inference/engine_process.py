"""One launch of one engine: the guarded vLLM process, its log, and what its output says.

The supervisor owns one :class:`EngineProcess` per running engine. A reader thread copies
vLLM's output into the engine's rotating log file and keeps the lines of this launch for
progress and diagnosis; everything else happens on the supervisor's main thread.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import logging.handlers
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from inference.diagnosis import progress_of
from inference.launch_command import Launch, display_command
from inference.process_guard import GUARD_PREFIX

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


# The supervisor's environment holds the portal's secrets (DATABASE_URL, REDIS_URL, the
# secret key, mail passwords); vLLM gets only what a model server needs from it.
ENV_NAMES = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
        "LD_LIBRARY_PATH", "LD_PRELOAD", "CC", "CXX",
        "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
        "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    }
)  # fmt: skip
ENV_PREFIXES = (
    "LC_", "XDG_", "HF_", "HUGGING_FACE_", "TRANSFORMERS_", "TOKENIZERS_", "TORCH", "PYTORCH_", "TRITON_",
    "CUDA_", "NVIDIA_", "NCCL_", "VLLM_", "OMP_", "KMP_", "MKL_", "ONEDNN_", "DNNL_", "OPENBLAS_", "RAY_",
    # TIKTOKEN_ENCODINGS_BASE: where upstream openai-harmony finds gpt-oss's vocabulary offline.
    "TIKTOKEN_",
)  # fmt: skip
_GUARD_SCRIPT = Path(__file__).resolve().with_name("process_guard.py")
_LINE_END = re.compile(r"\r\n|\r|\n")


def engine_environment(inherited: Mapping[str, str], launch_env: Mapping[str, str]) -> dict[str, str]:
    """Return vLLM's environment: the allow-listed part of ``inherited`` plus the launch's own."""
    kept = {name: value for name, value in inherited.items() if name in ENV_NAMES or name.startswith(ENV_PREFIXES)}
    return {**kept, **launch_env}


def split_output(chunks: Iterable[bytes]) -> Iterator[str]:
    """Yield the lines of a byte stream, ending a line at \\n, \\r\\n or a lone \\r.

    Progress bars redraw themselves after a carriage return and end with a newline only when
    done; splitting at \\r too makes each drawing a line as soon as it is drawn. Blank lines
    are dropped.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    pending = ""
    for chunk in chunks:
        pending += decoder.decode(chunk)
        # A trailing CR may be the first half of CR LF: keep it until the next chunk.
        cut = len(pending) - 1 if pending.endswith("\r") else len(pending)
        *lines, rest = _LINE_END.split(pending[:cut])
        pending = rest + pending[cut:]
        yield from (line.rstrip() for line in lines if line.strip())
    pending += decoder.decode(b"", final=True)
    yield from (line.rstrip() for line in _LINE_END.split(pending) if line.strip())


class LaunchOutput:
    """The lines one launch printed (the last :data:`KEPT_LINES`), its load progress and its ready mark.

    Written by the reader thread, read by the supervisor; every method takes the lock.
    """

    def __init__(self) -> None:
        self._lines: deque[str] = deque(maxlen=KEPT_LINES)
        self._count = 0
        self._ready_at: int | None = None
        self._lock = threading.Lock()
        self._changed = True
        self.progress: float | None = None

    def add(self, line: str) -> None:
        progress = progress_of(line)
        with self._lock:
            self._lines.append(line)
            self._count += 1
            if progress is not None and (self.progress is None or progress > self.progress):
                self.progress = progress
            self._changed = True

    def mark_ready(self) -> None:
        """Remember where the launch became ready: later failures are read from here on."""
        with self._lock:
            self._ready_at = self._count

    def take_changes(self) -> bool:
        """Return True (once) when new output arrived since the last call."""
        with self._lock:
            changed, self._changed = self._changed, False
        return changed

    def recent(self, count: int = TAIL_LINES) -> list[str]:
        with self._lock:
            return list(self._lines)[-count:]

    def failure_lines(self) -> list[str]:
        """Return the lines that can explain a failure: those since ready, else the whole launch."""
        with self._lock:
            lines = list(self._lines)
            if self._ready_at is None:
                return lines
            since = min(len(lines), self._count - self._ready_at)
            return lines[len(lines) - since :] if since else []


class EngineProcess:
    """A running (or finished) launch of vLLM under the process guard; its output is :attr:`output`."""

    def __init__(self, name: str, launch: Launch) -> None:
        self.name = name
        self.launch = launch
        self.log = engine_log(name)
        self.output = LaunchOutput()
        self.vllm_pid: int | None = None
        self.started = time.monotonic()
        note(name, f"launching: {display_command(launch)}")
        # The guard is our child; vLLM is the guard's. Both die when we die (see process_guard).
        # The guard runs isolated (-I) from its file and vLLM in the log directory, so no
        # package of the portal's repository is on either one's import path.
        self.guard = subprocess.Popen(  # noqa: S603 - argv built by launch_command from a validated config
            [
                sys.executable,
                "-I",
                str(_GUARD_SCRIPT),
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
            env=engine_environment(os.environ, launch.env),
            cwd=str(engine_log_path(name).parent),
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"engine-log-{name}", daemon=True)
        self._reader.start()

    @property
    def progress(self) -> float | None:
        return self.output.progress

    def _read(self) -> None:
        stream = self.guard.stdout
        if stream is None:
            return
        descriptor = stream.fileno()
        for line in split_output(iter(lambda: os.read(descriptor, 65536), b"")):
            if line.startswith(GUARD_PREFIX):
                self.vllm_pid = int(line[len(GUARD_PREFIX) :])
                continue
            self.log.info("%s", line)
            self.output.add(line)

    def vllm_exited(self) -> bool:
        """True once vLLM's main process has ended, while the guard may still be stopping the rest."""
        if self.vllm_pid is None:
            return False
        try:
            stat = Path(f"/proc/{self.vllm_pid}/stat").read_text(encoding="utf-8")
        except OSError:
            return True
        # The state follows the command name, which is in parentheses and may hold spaces.
        return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")

    def poll(self) -> int | None:
        """Return the exit status once vLLM and its guard have ended, else None."""
        code = self.guard.poll()
        if code is not None:
            self._reader.join(timeout=5)
        return code

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
