"""A local AWS for tests and ``make demo``: moto server on loopback, provisioned from template.yaml.

Clients come from ``aws_clients`` (loopback only, dummy credentials); the stack's resources from
``provisioning``, which reads the template. Both are re-exported here, where callers look first.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import TYPE_CHECKING, Self

from imshop_push_local.aws_clients import DEFAULT_REGION, DUMMY_CREDENTIAL, LOOPBACK, make_client
from imshop_push_local.provisioning import LocalAws, LocalTuning, provision

if TYPE_CHECKING:
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

__all__ = [
    "DEFAULT_REGION",
    "DUMMY_CREDENTIAL",
    "LOOPBACK",
    "LocalAws",
    "LocalTuning",
    "MotoServer",
    "make_client",
    "provision",
]


class MotoServer:
    """moto's threaded server on loopback and a port the OS picks, so parallel runs never collide.

    It runs in this process: worker processes reach it over HTTP like any other client, and moto's
    state lives only as long as the server object.
    """

    def __init__(self, host: str = LOOPBACK) -> None:
        self._host = host
        self._server: ThreadedMotoServer | None = None
        self._endpoint_url: str | None = None

    @property
    def endpoint_url(self) -> str:
        if self._endpoint_url is None:
            raise RuntimeError("MotoServer is not running: call start() first")
        return self._endpoint_url

    def start(self) -> Self:
        if self._server is not None:
            return self
        # Imported here so that processes which only need clients (the event source's workers)
        # do not pay for importing moto.
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer  # noqa: PLC0415

        # Port 0: the kernel picks a free port at bind time, with no window for another process to
        # take it between "find a free port" and "bind".
        server = ThreadedMotoServer(ip_address=self._host, port=0, verbose=False)
        # werkzeug logs every request at INFO (and installs its own handler to do so): a line per
        # SQS poll would bury the demo's output and every failing test's report.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server.start()
        host, port = server.get_host_and_port()
        self._server = server
        self._endpoint_url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        self._endpoint_url = None
        if server is None:
            return
        server.stop()
        # ThreadedMotoServer.stop() leaves the listening socket open; close it rather than leave a
        # ResourceWarning for the garbage collector (which pytest turns into an error).
        inner = getattr(server, "_server", None)
        if inner is not None:
            inner.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
