"""One service process: the WSGI server (waitress, ``service.http``), the forwarder and the purger, sharing one store.

``Service(config).serve()`` blocks until SIGTERM or SIGINT, then stops cleanly: long-polls
are woken, the HTTP threads finish, the forwarder marks its endpoints offline, the store
is closed. Once both listen, ``<data dir>/service.json`` says where (pid, HTTP URL,
forwarder address, server public key), for scripts and tests that chose port 0.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from service.app import create_app
from service.config import ServiceConfig
from service.events import ResultSignal
from service.forwarder import Forwarder
from service.http import create_http_server
from service.keys import server_keys
from service.purger import Purger
from service.store import SQLiteStore

logger = logging.getLogger(__name__)


class Service:
    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        Path(config.data_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        self.store = SQLiteStore(config.database_path, synchronous=config.sqlite_synchronous)
        try:
            self.store.check_integrity()  # a damaged page would otherwise answer 503s from the first request on
        except BaseException:
            self.store.close()
            raise
        self.signal = ResultSignal()
        self.keys = server_keys(config.keys_dir)
        try:
            self.forwarder = Forwarder(self.store, config, self.signal, self.keys, on_failure=self._forwarder_failed)
        except BaseException:
            self.store.close()
            raise
        try:
            self.app = create_app(config, store=self.store, dispatcher=self.forwarder, signal=self.signal,
                                  forwarder_address=self.forwarder.address)
            self.http: Any = create_http_server(self.app, config, config.max_request_bytes + 1024 * 1024)
        except BaseException:
            self.forwarder.stop()
            self.store.close()
            raise
        self.purger = Purger(self.store, config)
        self.url = f"http://{config.host}:{self.http.effective_port}"
        self._stopping = threading.Event()

    def serve(self) -> str:
        """Serve until SIGTERM/SIGINT (main thread) or ``stop()``; returns why it stopped."""
        reason = "stopped"
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGTERM, signal.SIGINT):
                previous[number] = signal.signal(number, self._on_signal)
        try:
            self.forwarder.start()
            self.purger.start()
            self._write_address_file()
            logger.info("service serving HTTP on %s; endpoints connect to %s", self.url, self.forwarder.address)
            self.http.run()
            if self._stopping.is_set():
                reason = "signalled"
        except BaseException as exc:
            reason = f"failed: {exc!r}"
            raise
        finally:
            self.close()
            for number, handler in previous.items():
                signal.signal(number, handler)
            logger.info("service exiting: %s", reason)
        return reason

    def _on_signal(self, number: int, frame: FrameType | None) -> None:
        logger.info("received signal %d: stopping", number)
        self.stop()
        raise SystemExit(0)  # ends waitress's loop (it catches SystemExit and stops its threads)

    def _forwarder_failed(self, error: BaseException) -> None:
        """Without its forwarder the service cannot deliver anything: stop the whole process."""
        logger.error("stopping the service: the forwarder failed (%r)", error)
        self.stop()
        os.kill(os.getpid(), signal.SIGTERM)

    def stop(self) -> None:
        self._stopping.set()
        self.signal.close()  # long-polls return now, so the HTTP threads can finish

    def close(self) -> None:
        self.signal.close()
        with contextlib.suppress(Exception):
            self.http.close()
        self.forwarder.stop()
        self.purger.stop()
        self.store.close()
        with contextlib.suppress(FileNotFoundError):
            self.config.address_file.unlink()

    def _write_address_file(self) -> None:
        path = self.config.address_file
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_text(json.dumps({"pid": os.getpid(), "url": self.url,
                                         "forwarder_address": self.forwarder.address,
                                         "server_public_key": self.keys.public}))
        os.replace(temporary, path)
