"""Watch external engines: probe ``/health``, ``/v1/models`` and ``/metrics`` and write their state.

Run by the supervisor (``manage.py runengine``), never by a web request: every
``EXTERNAL_ENGINE_PROBE_SECONDS`` each external engine this supervisor claims is probed in
a worker thread (a slow engine must not hold up the reconcile loop of the managed ones), and
the result is written to its :class:`~inference.models.EngineState` like a managed engine's:

- ``ready`` — ``/v1/models`` lists the models (every pinned one); running and waiting
  requests from vLLM's ``/metrics`` when it exposes them, else counted as 0;
- ``unreachable`` — no connection, a timeout, an HTTP error from ``/health``, or an address
  no longer allowed; one failed probe is enough, so new requests stop going there at once;
- ``unauthorized`` — HTTP 401/403 (a wrong key), or a stored key that cannot be decrypted;
- ``tls_error`` — the certificate was not accepted (unknown CA, wrong host, expired);
- ``incompatible`` — ``/v1/models`` is missing or is not an OpenAI model list;
- ``degraded`` — a pinned model is no longer listed (or none is listed).
"""

from __future__ import annotations

import logging
import ssl
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from django.conf import settings
from django.utils import timezone

from inference import telemetry
from inference.engine_address import external_address
from inference.engine_secrets import EngineKeyError, engine_api_key
from inference.external_engines import address_allowed
from inference.models import EngineConfig, EngineState

log = logging.getLogger(__name__)
State = EngineState.State


@dataclass(frozen=True)
class ProbeResult:
    """What one probe saw: the state, a sentence for admins, what to do, the models and the load."""

    state: str
    message: str
    remedy: str = ""
    models: tuple[str, ...] = ()
    reading: telemetry.MetricsReading | None = None


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class _Failed(Exception):
    def __init__(self, result: ProbeResult) -> None:
        super().__init__(result.message)
        self.result = result


def _get(client: httpx.Client, config: EngineConfig, path: str) -> httpx.Response:
    url = f"{config.url}{path}"
    try:
        return client.get(url)
    except httpx.HTTPError as exc:
        tls = _tls_failure(exc)
        if tls is not None:
            reason = getattr(tls, "verify_message", "") or getattr(tls, "reason", "") or str(tls)
            raise _Failed(ProbeResult(
                State.TLS_ERROR, f"TLS error talking to {config.url}: {reason}.",
                "Give the CA bundle that signed the engine's certificate (--ca-bundle), or check the "
                "certificate's host name and dates; for a plain-HTTP engine use an http:// URL.",
            )) from None  # fmt: skip
        if isinstance(exc, httpx.TimeoutException):
            reason = f"no answer from {path} within {settings.EXTERNAL_ENGINE_PROBE_TIMEOUT:g} s"
        else:
            reason = f"cannot connect to {config.url}: {exc or type(exc).__name__}"
        raise _Failed(ProbeResult(
            State.UNREACHABLE, f"Unreachable: {reason}.",
            f"Check that the engine runs and that the supervisor's host can reach {config.url} (DNS, firewall, port).",
        )) from None  # fmt: skip


def _refused_key(config: EngineConfig, response: httpx.Response, path: str) -> ProbeResult:
    return ProbeResult(
        State.UNAUTHORIZED,
        f"The engine refused the portal's API key (HTTP {response.status_code} from {path}).",
        f"Register it again with the right key: `python manage.py engine add-external {config.name} --replace "
        f"--url {config.url} --api-key-file FILE`.",
    )


def _model_list(config: EngineConfig, response: httpx.Response) -> tuple[str, ...]:
    not_openai = (
        "Give the base URL of an OpenAI-compatible server (vLLM's `vllm serve`, a production-stack router, "
        "an llm-d gateway): the one under which /v1/models is found."
    )
    if response.status_code in (401, 403):
        raise _Failed(_refused_key(config, response, "/v1/models"))
    if response.status_code != 200:
        raise _Failed(ProbeResult(
            State.INCOMPATIBLE,
            f"Not an OpenAI-compatible server: GET /v1/models answered HTTP {response.status_code}.", not_openai,
        ))  # fmt: skip
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    items = body.get("data") if isinstance(body, dict) else None
    if not isinstance(items, list) or not all(isinstance(item, dict) and isinstance(item.get("id"), str)
                                              for item in items):  # fmt: skip
        kind = response.headers.get("content-type", "unknown content").split(";")[0]
        raise _Failed(ProbeResult(
            State.INCOMPATIBLE,
            f"Not an OpenAI-compatible server: GET /v1/models did not answer a model list ({kind}).", not_openai,
        ))  # fmt: skip
    return tuple(str(item["id"]) for item in items)


def probe(config: EngineConfig) -> ProbeResult:
    """Probe one external engine once and return what it saw (no database access; never raises)."""
    if not address_allowed(config.url):
        return ProbeResult(
            State.UNREACHABLE, "Its address is no longer allowed by PORTAL_EXTERNAL_ENGINE_ALLOWED.",
            "Allow it in PORTAL_EXTERNAL_ENGINE_ALLOWED, or remove the engine (`engine remove`).",
        )  # fmt: skip
    try:
        key = engine_api_key(config)
    except EngineKeyError as exc:
        return ProbeResult(State.UNAUTHORIZED, exc.message, "Store the key again (engine add-external --replace).")
    address = external_address(config)
    try:
        with address.client(timeout=httpx.Timeout(settings.EXTERNAL_ENGINE_PROBE_TIMEOUT)) as client:
            if key:
                client.headers["Authorization"] = f"Bearer {key}"
            return _probe_with(client, config)
    except _Failed as failed:
        return failed.result
    except (ssl.SSLError, OSError) as exc:  # a CA bundle that became unreadable
        return ProbeResult(State.TLS_ERROR, f"The CA bundle {config.ca_bundle} cannot be used: {exc}.")


def _probe_with(client: httpx.Client, config: EngineConfig) -> ProbeResult:
    health = _get(client, config, "/health")
    if health.status_code in (401, 403):
        return _refused_key(config, health, "/health")
    # Gateways often have no /health (404); anything else that fails is an engine in trouble.
    if health.status_code >= 400 and health.status_code != 404:
        return ProbeResult(
            State.UNREACHABLE, f"Unhealthy: GET /health answered HTTP {health.status_code}.",
            "See the engine's own logs; the portal sends it nothing until /health answers again.",
        )  # fmt: skip
    listed = _model_list(config, _get(client, config, "/v1/models"))
    pinned = tuple(config.pinned_models)
    missing = [model for model in pinned if model not in listed]
    if missing or not listed:
        what = f"pinned model {', '.join(missing)} is no longer listed" if missing else "it lists no model"
        return ProbeResult(
            State.DEGRADED, f"Degraded: {what} (/v1/models lists: {', '.join(listed) or 'nothing'}).",
            "Load the model on the engine again, or register the engine with the models it serves (--model).",
            models=tuple(model for model in pinned if model in listed),
        )  # fmt: skip
    models = pinned or listed
    reading = None
    with_metrics = _get(client, config, "/metrics")
    if with_metrics.status_code == 200 and "vllm:" in with_metrics.text:
        reading = telemetry.parse_metrics(with_metrics.text)
    note = "" if reading is not None else " (no vLLM /metrics: its load counts as 0 for routing)"
    return ProbeResult(State.READY, f"ready, serving {', '.join(models)}{note}", models=models, reading=reading)


@dataclass
class ExternalProbe:
    """The supervisor's watch over external engines: one probe at a time per engine, in threads."""

    host: str
    pid: int
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(4, thread_name_prefix="probe"))
    due: dict[int, float] = field(default_factory=dict)
    running: dict[int, Future[ProbeResult]] = field(default_factory=dict)
    previous: dict[int, tuple[datetime, telemetry.MetricsReading]] = field(default_factory=dict)

    def observe(self, config: EngineConfig, state: EngineState) -> None:
        """Write the heartbeat and, when a probe finished, its result; start the next probe when due."""
        changed = {"heartbeat_at", "supervisor_host", "supervisor_pid"}
        state.heartbeat_at = timezone.now()
        state.supervisor_host, state.supervisor_pid = self.host, self.pid
        future = self.running.get(config.pk)
        if future is not None and future.done():
            del self.running[config.pk]
            changed |= self._write(config, state, future.result())
        now = time.monotonic()
        if config.pk not in self.running and now >= self.due.get(config.pk, 0.0):
            self.due[config.pk] = now + settings.EXTERNAL_ENGINE_PROBE_SECONDS
            self.running[config.pk] = self.pool.submit(probe, config)
        state.save(update_fields=[*sorted(changed), "updated_at"])

    def _write(self, config: EngineConfig, state: EngineState, result: ProbeResult) -> set[str]:
        values: dict[str, Any] = {
            "state": result.state, "message": result.message[:300], "served_models": list(result.models),
            "base_url": config.url, "progress": None,
        }  # fmt: skip
        reading = result.reading
        values.update(
            running_requests=reading.running if reading else 0,
            waiting_requests=reading.waiting if reading else 0,
            kv_cache_usage=reading.kv_cache_usage if reading else None,
        )
        if result.state == State.READY:
            if state.state != State.READY:
                values["ready_at"] = timezone.now()
                log.info("external engine %s: %s", config.name, result.message)
            if reading is not None:
                telemetry.record_sample(config, reading, self.previous.get(config.pk))
                self.previous[config.pk] = (timezone.now(), reading)
        else:
            if state.state != result.state or state.diagnosis != result.message:
                log.warning("external engine %s: %s", config.name, result.message)
                values["exited_at"] = timezone.now()
            values.update(failure_kind=result.state, diagnosis=result.message, remedies=[result.remedy])
            self.previous.pop(config.pk, None)
        for name, value in values.items():
            setattr(state, name, value)
        return set(values)

    def forget(self, engine_ids: set[int]) -> None:
        """Drop what is kept for engines no longer watched here (deleted ones)."""
        for engine_id in set(self.due) - engine_ids:
            self.due.pop(engine_id, None)
            self.running.pop(engine_id, None)
            self.previous.pop(engine_id, None)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
