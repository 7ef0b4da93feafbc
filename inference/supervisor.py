"""The engine supervisor: reconcile each engine's actual process with its desired state.

``manage.py runengine`` runs :class:`Supervisor` on an engine host. Every tick it reads the
configs, starts, stops or restarts vLLM to match what admins asked for, polls ``/health``,
scrapes ``/metrics``, and writes what it saw to :class:`~inference.models.EngineState` (with
a heartbeat, so readers can tell a live supervisor from a dead one). After a crash it
retries with exponential backoff; after ``ENGINE_MAX_CRASHES`` crashes in a row it stops
retrying and reports a crash loop until an admin starts the engine again.

A ready engine is still asked for ``/health`` every :data:`READY_HEALTH_INTERVAL` seconds;
after :data:`HEALTH_FAILURES` failed checks in a row it counts as hung and is treated like a
crash. Entering ``crashed`` (the first crash of a streak) or ``crash_loop`` is logged at
ERROR and mailed to the portal's admins (:mod:`inference.alerts`).
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import close_old_connections
from django.utils import timezone

from inference import telemetry
from inference.alerts import tell_admins
from inference.audit_events import record_engine
from inference.diagnosis import Diagnosis, diagnose
from inference.engine_address import (
    EngineAddress,
    SocketDirError,
    listener_is_ours,
    parse_address,
    release_socket_dir,
    remove_stale_socket,
    socket_address,
    socket_path,
)
from inference.engine_process import EngineProcess, note
from inference.external_probe import ExternalProbe
from inference.launch_command import build_launch, engine_python
from inference.models import EngineConfig, EngineState
from inference.status import supervisor_alive

log = logging.getLogger(__name__)
State = EngineState.State

# While starting, /health is asked every second (a refusal is expected until the server is up).
STARTING_HEALTH_INTERVAL = 1.0
STARTING_HEALTH_TIMEOUT = 3.0
# Once ready: every few seconds, with a timeout generous enough for a busy 2-core host.
READY_HEALTH_INTERVAL = 5.0
READY_HEALTH_TIMEOUT = 5.0
# Failed checks in a row before a ready engine counts as hung (about 15-30 s of silence).
HEALTH_FAILURES = 3


@dataclass
class Runner:
    """What the supervisor tracks for one engine between ticks."""

    process: EngineProcess | None = None
    fingerprint: str = ""
    launched_at: datetime | None = None
    next_health: float = 0.0
    next_metrics: float = 0.0
    previous_metrics: tuple[datetime, telemetry.MetricsReading] | None = None
    health_failures: int = 0
    warned_foreign: bool = False


class Supervisor:
    """Reconcile loop over the engines of this host (all, or the one named)."""

    def __init__(self, only: str | None = None) -> None:
        self.only = only
        self.host = telemetry.host_name()
        self.pid = os.getpid()
        self.runners: dict[int, Runner] = {}
        self.stopping = False
        self._next_host_reading = 0.0
        self._next_prune = 0.0
        # One client per engine address (a socket needs its own transport).
        self._clients: dict[str, httpx.Client] = {}
        self.external = ExternalProbe(self.host, self.pid)

    # --- loop -------------------------------------------------------------------------
    def run(self) -> None:
        """Run until SIGTERM/SIGINT, then stop every engine this supervisor started."""
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        log.info("engine supervisor started on %s (pid %s)", self.host, self.pid)
        try:
            while not self.stopping:
                started = time.monotonic()
                close_old_connections()
                try:
                    self.tick()
                except Exception:  # one bad tick (e.g. a database hiccup) must not kill the engines
                    log.exception("supervisor tick failed; retrying")
                time.sleep(max(0.05, settings.ENGINE_TICK_SECONDS - (time.monotonic() - started)))
        finally:
            self.shutdown()

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def shutdown(self) -> None:
        """Stop all engines started here and record them as stopped."""
        for engine_id, runner in list(self.runners.items()):
            if runner.process is not None:
                runner.process.stop()
                runner.process = None
                stopped = EngineState.objects.filter(pk=engine_id).first()
                if stopped is not None:
                    self._forget_socket(stopped)
                config = EngineConfig.objects.filter(pk=engine_id).first()
                if config is not None:
                    record_engine("stopped", config, reason="supervisor stopped")
            # Only rows this supervisor wrote: an engine another supervisor runs is not stopped.
            EngineState.objects.filter(pk=engine_id, supervisor_host=self.host, supervisor_pid=self.pid).update(
                state=State.STOPPED, progress=None, pid=None, api_key="", base_url="", exited_at=timezone.now(),
                message="supervisor stopped", updated_at=timezone.now(),
            )  # fmt: skip
        self.close_clients()
        release_socket_dir()
        self.external.shutdown()
        log.info("engine supervisor stopped")

    def close_clients(self) -> None:
        """Close the HTTP clients of the engines' addresses."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def managed(self) -> list[EngineConfig]:
        engines = EngineConfig.objects.select_related("state").order_by("name")
        if self.only:
            engines = engines.filter(name=self.only)
        return list(engines)

    def tick(self) -> None:
        """Reconcile every managed engine once; record host telemetry and prune samples."""
        now = time.monotonic()
        if now >= self._next_host_reading:
            telemetry.record_host()
            self._next_host_reading = now + settings.ENGINE_METRICS_INTERVAL
        if now >= self._next_prune:
            telemetry.prune_samples()
            self._next_prune = now + 60
        seen = set()
        for config in self.managed():
            seen.add(config.pk)
            state = getattr(config, "state", None) or EngineState.objects.create(engine=config)
            if not self._claim(config, state):
                continue
            if config.is_external:  # not ours to start: only probed (inference.external_probe)
                self.external.observe(config, state)
                continue
            self.reconcile(config, state, self.runners.setdefault(config.pk, Runner()))
        self.external.forget(seen)
        for engine_id in set(self.runners) - seen:  # deleted configs
            runner = self.runners.pop(engine_id)
            if runner.process is not None:
                runner.process.stop()

    def _claim(self, config: EngineConfig, state: EngineState) -> bool:
        """Only one supervisor manages an engine: skip it while another one's heartbeat is fresh."""
        mine = state.supervisor_host == self.host and state.supervisor_pid == self.pid
        if mine or not supervisor_alive(state) or not state.supervisor_host:
            return True
        runner = self.runners.setdefault(config.pk, Runner())
        if not runner.warned_foreign:
            log.warning(
                "engine %s is managed by the supervisor %s pid %s; leaving it alone",
                config.name, state.supervisor_host, state.supervisor_pid,
            )  # fmt: skip
            runner.warned_foreign = True
        return False

    # --- one engine -------------------------------------------------------------------
    def reconcile(self, config: EngineConfig, state: EngineState, runner: Runner) -> None:
        """Bring one engine one step closer to its desired state and save what was seen."""
        changed: set[str] = {"heartbeat_at", "supervisor_host", "supervisor_pid"}
        state.heartbeat_at = timezone.now()
        state.supervisor_host, state.supervisor_pid = self.host, self.pid
        if config.desired_state == EngineConfig.Desired.RUNNING:
            self._keep_running(config, state, runner, changed)
        else:
            self._keep_stopped(config, state, runner, changed)
        if runner.process is not None and runner.process.output.take_changes():
            state.log_tail = "\n".join(runner.process.output.recent())
            changed.add("log_tail")
        state.save(update_fields=[*sorted(changed), "updated_at"])

    def _keep_stopped(self, config: EngineConfig, state: EngineState, runner: Runner, changed: set[str]) -> None:
        if runner.process is not None:
            self._set(state, changed, state=State.STOPPING, message="engine stopping")
            state.save(update_fields=[*sorted(changed), "updated_at"])
            runner.process.stop()
            runner.process = None
            self._forget_socket(state)
            record_engine("stopped", config, reason="stop requested")
        if state.state != State.STOPPED or state.crash_count:
            self._set(
                state, changed, state=State.STOPPED, progress=None, pid=None, api_key="", base_url="",
                message="engine stopped", crash_count=0, next_retry_at=None, exited_at=timezone.now(),
                running_requests=0, waiting_requests=0,
            )  # fmt: skip

    def _keep_running(self, config: EngineConfig, state: EngineState, runner: Runner, changed: set[str]) -> None:
        restart_asked = config.restart_requested_at is not None and (
            runner.launched_at is None or config.restart_requested_at > runner.launched_at
        )
        if runner.process is None:
            if state.state == State.CRASH_LOOP and not self._restart_after_failure(config, state):
                return
            if state.state == State.CRASHED and state.next_retry_at and timezone.now() < state.next_retry_at:
                if self._restart_after_failure(config, state):
                    self._set(state, changed, next_retry_at=timezone.now())
                return
            if self._restart_after_failure(config, state):
                self._set(state, changed, crash_count=0)
            self._launch(config, state, runner, changed)
            return
        code = runner.process.poll()
        if code is not None:
            self._crashed(config, state, runner, code, changed)
            return
        fingerprint = self._fingerprint(config)
        if restart_asked or (fingerprint and fingerprint != runner.fingerprint):
            reason = "restart requested" if restart_asked else "configuration changed"
            note(config.name, f"{reason}: restarting")
            self._set(state, changed, state=State.STOPPING, message=f"restarting ({reason})")
            state.save(update_fields=[*sorted(changed), "updated_at"])
            runner.process.stop()
            runner.process = None
            record_engine("restarted", config, reason=reason)
            self._launch(config, state, runner, changed)
            return
        self._observe(config, state, runner, changed)

    def _restart_after_failure(self, config: EngineConfig, state: EngineState) -> bool:
        """An admin's start/restart newer than the last exit clears a crash loop."""
        return bool(
            config.restart_requested_at and (state.exited_at is None or config.restart_requested_at > state.exited_at)
        )

    def _fingerprint(self, config: EngineConfig) -> str:
        try:
            return build_launch(config, engine_python(), api_key="", mark="", socket=socket_path(config)).fingerprint
        except (ValidationError, SocketDirError):
            return ""

    def _forget_socket(self, state: EngineState) -> None:
        """Remove a stopped launch's socket file and its client (the next launch binds afresh)."""
        address = parse_address(state.base_url)
        client = self._clients.pop(address.text, None)
        if client is not None:
            client.close()
        if address.socket_path:
            remove_stale_socket(Path(address.socket_path))

    def _launch(self, config: EngineConfig, state: EngineState, runner: Runner, changed: set[str]) -> None:
        api_key = secrets.token_urlsafe(32)
        mark = f"{config.name}:{uuid.uuid4().hex}"
        try:
            socket = socket_path(config)
            launch = build_launch(config, engine_python(), api_key=api_key, mark=mark, socket=socket)
        except SocketDirError as exc:
            diagnosis = Diagnosis("socket_dir", str(exc), ["Make the directory private (mode 0700, owned by the "
                                  "portal's user) or choose another with PORTAL_ENGINE_SOCKET_DIR."])  # fmt: skip
            self._fail(config, state, changed, diagnosis, code=None, final=True)
            return
        except ValidationError as exc:
            diagnosis = Diagnosis("bad_flag", "The extra flags are invalid: " + " ".join(exc.messages),
                                  ["Correct the extra flags in the engine config."])  # fmt: skip
            self._fail(config, state, changed, diagnosis, code=None, final=True)
            return
        # A previous launch's socket file would make vLLM's bind fail; the directory is ours alone.
        remove_stale_socket(socket)
        runner.process = EngineProcess(config.name, launch)
        runner.fingerprint = launch.fingerprint
        runner.launched_at = timezone.now()
        runner.next_health = time.monotonic() + STARTING_HEALTH_INTERVAL
        runner.health_failures = 0
        runner.previous_metrics = None
        self._set(
            state, changed, state=State.STARTING, progress=0.0, message="engine starting",
            pid=None, api_key=api_key, base_url=socket_address(socket), fingerprint=launch.fingerprint,
            launched_at=runner.launched_at, ready_at=None, next_retry_at=None, running_requests=0, waiting_requests=0,
            kv_cache_usage=None, log_tail="",
        )  # fmt: skip
        log.info("engine %s launching on %s", config.name, socket)
        record_engine("started", config, socket=str(socket), fingerprint=launch.fingerprint)

    def _observe(self, config: EngineConfig, state: EngineState, runner: Runner, changed: set[str]) -> None:
        process = runner.process
        if process is None:
            return
        if process.vllm_pid and state.pid != process.vllm_pid:
            self._set(state, changed, pid=process.vllm_pid)
        now = time.monotonic()
        if state.state != State.READY:
            if process.progress is not None and process.progress != state.progress:
                self._set(state, changed, state=State.LOADING, progress=process.progress,
                          message=f"model loading {round(process.progress * 100)}%")  # fmt: skip
            if now >= runner.next_health:
                runner.next_health = now + STARTING_HEALTH_INTERVAL
                if self._healthy(process, state.base_url):
                    process.output.mark_ready()
                    runner.health_failures = 0
                    runner.next_health = now + READY_HEALTH_INTERVAL
                    self._set(state, changed, state=State.READY, progress=None, message="ready",
                              ready_at=timezone.now())  # fmt: skip
                    seconds = (timezone.now() - (runner.launched_at or timezone.now())).total_seconds()
                    note(config.name, f"ready after {seconds:.1f} s")
                    log.info("engine %s ready after %.1f s", config.name, seconds)
            return
        if now >= runner.next_health:
            runner.next_health = now + READY_HEALTH_INTERVAL
            if not self._still_healthy(config, state, runner, changed):
                return
        if (
            state.crash_count
            and state.ready_at
            and (timezone.now() - state.ready_at > timedelta(seconds=settings.ENGINE_STABLE_SECONDS))
        ):
            self._set(state, changed, crash_count=0)
        if now >= runner.next_metrics:
            runner.next_metrics = now + settings.ENGINE_METRICS_INTERVAL
            self._scrape(config, state, runner, changed)

    def _still_healthy(self, config: EngineConfig, state: EngineState, runner: Runner, changed: set[str]) -> bool:
        """Check a ready engine's /health; after HEALTH_FAILURES misses in a row, stop it as hung."""
        if self._healthy(runner.process, state.base_url, timeout=READY_HEALTH_TIMEOUT):
            runner.health_failures = 0
            return True
        if runner.process is None or runner.process.vllm_exited():
            return True  # it crashed rather than hung: poll() reports it once the guard has cleaned up
        runner.health_failures += 1
        log.warning("engine %s: /health failed (%d of %d)", config.name, runner.health_failures, HEALTH_FAILURES)
        if runner.health_failures < HEALTH_FAILURES:
            return True
        process, runner.process = runner.process, None
        note(config.name, f"/health failed {HEALTH_FAILURES} times in a row: stopping the hung engine")
        self._set(state, changed, state=State.STOPPING, message="engine not answering; stopping it")
        state.save(update_fields=[*sorted(changed), "updated_at"])
        code = process.stop()
        state.log_tail = "\n".join(process.output.recent())
        changed.add("log_tail")
        diagnosis = Diagnosis(
            "unresponsive",
            f"The engine stopped answering /health ({HEALTH_FAILURES} checks in a row failed) and was stopped.",
            [
                "See the log below for what it was doing. If it happens under load, lower max sequences "
                f"(now {config.max_num_seqs}) or max model length (now {config.max_model_len or 'the model maximum'}).",
            ],
        )
        self._fail(config, state, changed, diagnosis, code=code, final=False)
        return False

    def _client(self, address: EngineAddress) -> httpx.Client:
        client = self._clients.get(address.text)
        if client is None:
            client = self._clients[address.text] = address.client(timeout=httpx.Timeout(3.0))
        return client

    def _healthy(self, process: EngineProcess | None, base_url: str, timeout: float = STARTING_HEALTH_TIMEOUT) -> bool:
        """True when the process we launched answers 200 on /health.

        Whoever listens on the socket must be our guard's descendant: an answer from any other
        process (one that bound the path first) is no sign of our engine.
        """
        address = parse_address(base_url)
        if process is None or not listener_is_ours(address, process.guard.pid):
            return False
        try:
            return self._client(address).get(address.url("/health"), timeout=timeout).status_code == 200
        except httpx.HTTPError:
            return False

    def _scrape(self, config: EngineConfig, state: EngineState, runner: Runner, changed: set[str]) -> None:
        address = parse_address(state.base_url)
        try:
            response = self._client(address).get(address.url("/metrics"))
            response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("engine %s: /metrics failed: %s", config.name, exc)
            return
        reading = telemetry.parse_metrics(response.text)
        telemetry.record_sample(config, reading, runner.previous_metrics)
        runner.previous_metrics = (timezone.now(), reading)
        self._set(state, changed, running_requests=reading.running, waiting_requests=reading.waiting,
                  kv_cache_usage=reading.kv_cache_usage)  # fmt: skip

    def _crashed(self, config: EngineConfig, state: EngineState, runner: Runner, code: int, changed: set[str]) -> None:
        process = runner.process
        if process is None:
            return
        runner.process = None
        state.log_tail = "\n".join(process.output.recent())
        changed.add("log_tail")
        diagnosis = diagnose(process.output.failure_lines(), config, exit_code=code)
        note(config.name, f"engine exited with status {code}: {diagnosis.summary}")
        self._fail(config, state, changed, diagnosis, code=code, final=False)

    def _fail(
        self,
        config: EngineConfig,
        state: EngineState,
        changed: set[str],
        diagnosis: Diagnosis,
        *,
        code: int | None,
        final: bool,
    ) -> None:
        crashes = state.crash_count + 1
        loop = final or crashes >= settings.ENGINE_MAX_CRASHES
        delay = min(settings.ENGINE_RESTART_BACKOFF_MAX, settings.ENGINE_RESTART_BACKOFF * 2 ** (crashes - 1))
        now = timezone.now()
        if loop:
            message = f"engine failed {crashes} times in a row and was stopped: {diagnosis.summary}"
        else:
            message = f"engine crashed; restarting in {delay:.0f} s: {diagnosis.summary}"
        self._set(
            state, changed, state=State.CRASH_LOOP if loop else State.CRASHED, progress=None, pid=None, api_key="",
            message=message[:300], failure_kind=diagnosis.kind, diagnosis=diagnosis.summary,
            remedies=diagnosis.remedies, last_exit_code=code, crash_count=crashes, exited_at=now,
            next_retry_at=None if loop else now + timedelta(seconds=delay), running_requests=0, waiting_requests=0,
        )  # fmt: skip
        log.error("engine %s: %s (%s)", config.name, message, diagnosis.evidence or "no evidence line")
        record_engine("crashed", config, outcome="crash_loop" if loop else "crashed", exit_code=code,
                      kind=diagnosis.kind, diagnosis=diagnosis.summary, crashes=crashes)  # fmt: skip
        # One mail per episode: the first crash of a streak, and the crash loop that ends it.
        if loop or crashes == 1:
            tell_admins(config, message, diagnosis)

    @staticmethod
    def _set(row: EngineState, changed: set[str], /, **values: Any) -> None:
        for name, value in values.items():
            setattr(row, name, value)
            changed.add(name)
