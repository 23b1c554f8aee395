"""A local AWS for tests and ``make demo``: moto server on loopback, provisioned from template.yaml.

Clients come from ``aws_clients`` (loopback only, dummy credentials); the stack's resources from
``provisioning``, which reads the template. Both are re-exported here, where callers look first.
"""

from __future__ import annotations

import collections
import logging
import re
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from imshop_push_local.aws_clients import DEFAULT_REGION, DUMMY_CREDENTIAL, LOOPBACK, make_client
from imshop_push_local.local_tuning import LocalTuning
from imshop_push_local.provisioning import provision
from imshop_push_local.stack_model import LocalAws

if TYPE_CHECKING:
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

__all__ = [
    "DEFAULT_REGION",
    "DUMMY_CREDENTIAL",
    "LOOPBACK",
    "LocalAws",
    "LocalTuning",
    "MotoServer",
    "RequestCounter",
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
        self.requests = RequestCounter()

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
        # Port 0: the kernel picks a free port at bind time, with no window for another process to
        # take it between "find a free port" and "bind".
        server = _server_with_atomic_dynamodb(self.requests)(ip_address=self._host, port=0, verbose=False)
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


class OneDynamoDBRequestAtATime:
    """DynamoDB applies each write atomically, its condition included; moto's backend takes no lock, so on its
    threaded server two racing conditional writes can both pass (a claim with two winners, a rate-limit slot
    taken twice). DynamoDB requests are therefore served one at a time, which is what the real service
    guarantees per item; everything else (SQS long polls) stays concurrent."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB_"):
            return self._app(environ, start_response)
        with self._lock:
            return list(self._app(environ, start_response))


# botocore's JSON protocols name the operation in X-Amz-Target: "DynamoDB_20120810.PutItem", "AmazonSQS.SendMessage".
_SERVICES = {"DynamoDB_20120810": "dynamodb", "AmazonSQS": "sqs", "AmazonSSM": "ssm"}
# A client made with AWS_SDK_UA_APP_ID set says so in its User-Agent ("app/<id>").
_APP_ID = re.compile(r"(?:^|\s)app/(\S+)")


class RequestCounter:
    """Every request the emulator serves, by (client, service, operation): what the stack would be billed for.

    The client is the ``app/<id>`` of the caller's User-Agent (a function started with AWS_SDK_UA_APP_ID set),
    else "other" (the test, the demo or the bench itself: provisioning, publishing, reading back).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: collections.Counter[tuple[str, str, str]] = collections.Counter()

    def count(self, environ: dict[str, Any]) -> None:
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        prefix, _, operation = target.partition(".")
        service = _SERVICES.get(prefix, prefix or "other")
        found = _APP_ID.search(str(environ.get("HTTP_USER_AGENT", "")))
        key = (found.group(1) if found else "other", service, operation or str(environ.get("PATH_INFO", "")))
        with self._lock:
            self._counts[key] += 1

    def snapshot(self) -> collections.Counter[tuple[str, str, str]]:
        with self._lock:
            return collections.Counter(self._counts)


def _server_with_atomic_dynamodb(counter: RequestCounter) -> type[ThreadedMotoServer]:
    """moto's ThreadedMotoServer, its WSGI app wrapped in OneDynamoDBRequestAtATime and counting every request
    (moto is imported here so processes that only need clients, the event source's workers, do not pay for it)."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer  # noqa: PLC0415
    from moto.moto_server.werkzeug_app import (  # noqa: PLC0415
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server  # noqa: PLC0415

    class Server(ThreadedMotoServer):
        def _server_entry(self) -> None:
            atomic = OneDynamoDBRequestAtATime(DomainDispatcherApplication(create_backend_app))

            def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
                counter.count(environ)
                return atomic(environ, start_response)

            self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
            self._server_ready_event.set()
            self._server.serve_forever()

    return Server
