"""The history webhook on loopback, as a Lambda function URL would serve it: a small HTTP server turns each request
into the payload-2.0 event and calls the function's real handler, imported in a child process that has the
function's environment (as the template sets it, pointed at the emulator) and only that.

`python -m imshop_push_local.history_endpoint --handler app.lambda_handler ...` is the child; `HistoryEndpoint`
starts and stops it, and `post` is what IMSHOP's server would send.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self

from imshop_push_local.aws_clients import LOOPBACK
from imshop_push_local.stack_model import LocalAws, LocalFunction

LOCAL_DIR = str(Path(__file__).resolve().parents[1])
READY = "history endpoint listening on "
START_TIMEOUT_SECONDS = 60.0


class Answer(NamedTuple):
    status: int
    headers: Mapping[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


def post(url: str, path: str, body: Any, *, key: str | None, method: str = "POST", scheme: str = "Bearer") -> Answer:
    """One request as IMSHOP's server sends it: JSON, with the key as `Authorization: <scheme> <key>`."""
    data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
    request = urllib.request.Request(url.rstrip("/") + path, data=data, method=method)  # noqa: S310 - loopback
    request.add_header("content-type", "application/json")
    if key is not None:
        request.add_header("authorization", f"{scheme} {key}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return Answer(response.status, dict(response.headers), response.read().decode())
    except urllib.error.HTTPError as e:
        return Answer(e.code, dict(e.headers), e.read().decode())


class HistoryEndpoint:
    def __init__(self, aws: LocalAws, function: LocalFunction, *, output_path: Path | None = None) -> None:
        self._aws = aws
        self._function = function
        self._output_path = output_path
        self._process: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> Self:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": os.pathsep.join([*self._function.code_paths, LOCAL_DIR]),
            **self._aws.env(self._function),
        }
        command = [sys.executable, "-m", "imshop_push_local.history_endpoint", "--handler", self._function.handler]
        command += ["--function-name", self._function.name]
        if self._output_path is not None:
            command += ["--output", str(self._output_path)]
        self._process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)  # noqa: S603
        assert self._process.stdout is not None
        line = self._process.stdout.readline()  # the child's first line, once it listens (or EOF if it died)
        if not line.startswith(READY):
            self.stop()
            raise RuntimeError(f"the history endpoint did not start: {line!r}")
        self.url = line.removeprefix(READY).strip()
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# --- the child ----------------------------------------------------------------------------------------------


def to_event(method: str, raw_path: str, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """A request as a Lambda function URL presents it (payload format 2.0): lower-case header names, the body as
    text, or base64 when it is not UTF-8."""
    path, _, query = raw_path.partition("?")
    try:
        text, encoded = body.decode(), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {name.lower(): value for name, value in headers.items()},
        "requestContext": {
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": LOOPBACK, "userAgent": ""},
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


def _serve(handler_spec: str, function_name: str) -> ThreadingHTTPServer:
    from imshop_push_local.event_source.shapes import LambdaContext, load_handler  # noqa: PLC0415

    handler = load_handler(handler_spec)
    arn = f"arn:aws:lambda:{os.environ.get('AWS_REGION', 'eu-central-1')}:123456789012:function:{function_name}"

    class Adapter(BaseHTTPRequestHandler):
        def _invoke(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            event = to_event(self.command, self.path, dict(self.headers.items()), self.rfile.read(length))
            context = LambdaContext(
                function_name=function_name,
                memory_limit_in_mb=256,
                invoked_function_arn=arn,
                aws_request_id=str(uuid.uuid4()),
                log_group_name=f"/aws/lambda/{function_name}",
                log_stream_name="local",
                timeout_seconds=10.0,
            )
            answer = handler(event, context)
            payload = str(answer.get("body") or "").encode()
            if answer.get("isBase64Encoded"):
                payload = base64.b64decode(payload)
            self.send_response(int(answer.get("statusCode", 200)))
            for name, value in (answer.get("headers") or {}).items():
                self.send_header(name, str(value))
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _invoke  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the function's own logs say what happened, with masked user ids."""

    return ThreadingHTTPServer((LOOPBACK, 0), Adapter)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="serve a function URL handler on loopback")
    parser.add_argument("--handler", required=True)
    parser.add_argument("--function-name", default="notification-history")
    parser.add_argument("--output", help="where the function's stdout and stderr go")
    args = parser.parse_args(argv)
    server = _serve(args.handler, args.function_name)
    host, port = server.server_address[:2]
    sys.stdout.write(f"{READY}http://{host!s}:{port}\n")
    sys.stdout.flush()
    fd = os.open(args.output or os.devnull, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    for target in (1, 2):
        os.dup2(fd, target)
    os.close(fd)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
