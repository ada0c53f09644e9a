"""Process model of ``serve``: a supervisor that loads the model once and forks the workers.

The supervisor verifies and loads the model (so a bad digest or an untrusted artifact stops the
start before any socket is served), binds the port (one listening socket per worker, see
``listeners``), then forks ``--workers`` processes that share the loaded model's memory. Each worker runs uvicorn (uvloop + httptools)
with the raw ASGI app, warms the model up, and only then reports ready. The supervisor serves the
summed metrics of all workers, restarts a worker that dies, and on SIGTERM passes the signal on
and exits 0 once every worker has drained.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from types import FrameType

import uvicorn

from modeldeploy_runtime.serving.auth import KeySource
from modeldeploy_runtime.serving.body_decoding import BodyDecoder
from modeldeploy_runtime.serving.factory import api_keys, build_app, load_configured_model
from modeldeploy_runtime.serving.http_deadlines import deadline_protocol
from modeldeploy_runtime.serving.listeners import bind_listeners
from modeldeploy_runtime.serving.metrics import RuntimeMetrics, forget_process, serve_metrics
from modeldeploy_runtime.serving.model import LoadedModel
from modeldeploy_runtime.serving.settings import RuntimeSettings

log = logging.getLogger(__name__)

_RESTARTS_ALLOWED = 5
_RESTART_WINDOW_SECONDS = 60.0


def _run_worker(
    settings: RuntimeSettings, model: LoadedModel, keys: KeySource | None, sock: socket.socket
) -> int:
    """The body of one forked worker; returns its exit code."""
    decoder = BodyDecoder(model.describe(), offload_bytes=settings.json_offload_bytes)
    decoder.start()  # forks the decoding helper before uvicorn starts any thread
    serving = build_app(settings, model, keys, decoder=decoder)
    dataplane = serving.dataplane
    config = uvicorn.Config(
        serving.app,
        loop="uvloop",
        http=deadline_protocol(settings.header_timeout_seconds, settings.body_timeout_seconds),
        lifespan="on",
        access_log=settings.access_log,
        log_config=None,
        server_header=False,
        proxy_headers=False,  # no proxy sits on the pod's loopback; saves a middleware per request
        timeout_keep_alive=settings.keep_alive_seconds,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_seconds),
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
        backlog=2048,
    )

    class DrainingServer(uvicorn.Server):
        """On SIGTERM: unready at once, optionally keep serving a while, then drain and exit 0."""

        exit_at: float | None = None

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            dataplane.begin_drain()
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            elif settings.shutdown_delay_seconds > 0 and self.exit_at is None:
                self.exit_at = time.monotonic() + settings.shutdown_delay_seconds
            else:
                self.should_exit = True  # not re-raised afterwards: a drained worker exits 0

        async def on_tick(self, counter: int) -> bool:
            if self.exit_at is not None and time.monotonic() >= self.exit_at:
                return True
            return bool(await super().on_tick(counter))

    server = DrainingServer(config)
    try:
        server.run(sockets=[sock])
    finally:
        decoder.stop()
    return 0 if server.started else 3


def _fork_worker(
    settings: RuntimeSettings,
    model: LoadedModel,
    keys: KeySource | None,
    sock: socket.socket,
    listeners: list[socket.socket],
) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        for other in listeners:
            if other is not sock:
                other.close()  # the other workers' sockets: draining must not leave them open here
        code = _run_worker(settings, model, keys, sock)
    except BaseException:
        log.exception("worker crashed")
    finally:
        logging.shutdown()
        os._exit(code)


class Supervisor:
    """Keeps ``workers`` processes serving until SIGTERM/SIGINT, then waits for them to drain."""

    def __init__(
        self,
        settings: RuntimeSettings,
        model: LoadedModel,
        keys: KeySource | None,
        listeners: list[socket.socket],
    ) -> None:
        self._settings = settings
        self._model = model
        self._keys = keys
        self._listeners = listeners
        self._workers: dict[int, socket.socket] = {}  # pid -> its listening socket
        self._stopping = False
        self._restarts: list[float] = []

    def _stop(self, sig: int, frame: FrameType | None) -> None:
        first = not self._stopping
        self._stopping = True
        if first:
            log.info("stopping: draining workers", extra={"signal": signal.Signals(sig).name})
            for sock in self._listeners:
                sock.close()  # our copies: new connections are refused once the workers close theirs
        for pid in list(self._workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        for sock in self._listeners:
            self._start_worker(sock)
        self._start_metrics()
        exit_code = 0
        while self._workers:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            if pid not in self._workers:
                continue
            sock = self._workers.pop(pid)
            forget_process(pid)
            code = os.waitstatus_to_exitcode(status)
            if self._stopping:
                if code != 0:
                    log.error("worker exited uncleanly while draining", extra={"worker": pid, "code": code})
                    exit_code = 1
                continue
            log.error("worker exited unexpectedly", extra={"worker": pid, "code": code})
            now = time.monotonic()
            self._restarts = [t for t in self._restarts if now - t < _RESTART_WINDOW_SECONDS] + [now]
            if code == 3 or len(self._restarts) > _RESTARTS_ALLOWED:
                log.error("workers keep failing; stopping")
                self._stop(signal.SIGTERM, None)
                exit_code = 1
                continue
            self._start_worker(sock)  # the same socket: connections queued on it meanwhile are kept
        log.info("stopped", extra={"code": exit_code})
        return exit_code

    def _start_worker(self, sock: socket.socket) -> None:
        pid = _fork_worker(self._settings, self._model, self._keys, sock, self._listeners)
        self._workers[pid] = sock

    def _start_metrics(self) -> None:
        if self._settings.metrics_port == 0:
            return
        try:
            serve_metrics(self._settings.metrics_port, self._settings.host)
        except OSError as error:
            log.error(
                "metrics port unavailable; serving without metrics",
                extra={"port": self._settings.metrics_port, "error": error.strerror},
            )


def serve(settings: RuntimeSettings) -> int:
    """Run ``serve`` until stopped; raises StartupError for anything the user can fix.

    ``metrics_dir.prepare_metrics_dir`` must have run before this module was imported.
    """
    keys = api_keys(settings)  # a bad keys file stops the start before the model loads
    model = load_configured_model(settings)
    log.info(
        "model loaded",
        extra={
            "model": model.name,
            "version": model.version,
            "sha256": model.sha256,
            "estimator": type(model.estimator).__name__,
            "load_seconds": round(model.load_seconds, 4),
        },
    )
    listeners = bind_listeners(settings.host, settings.port, settings.workers)
    RuntimeMetrics(model, batch_max_size=settings.batch_max_size).record_model()
    scheme = "https" if settings.tls else "http"
    log.info(
        "serving",
        extra={"url": f"{scheme}://{settings.host}:{settings.port}", "workers": settings.workers},
    )
    return Supervisor(settings, model, keys, listeners).run()
