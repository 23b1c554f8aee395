"""A local AWS for tests and ``make demo``: moto server on loopback, provisioned like template.yaml.

Everything goes over real HTTP to an explicit loopback endpoint with dummy credentials, so that
the code under test uses the same boto3 code paths as in Lambda and can never reach a real account,
whatever credentials or profiles the developer's shell holds.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

DEFAULT_REGION = "eu-central-1"
DUMMY_CREDENTIAL = "testing"
LOOPBACK = "127.0.0.1"

# Few, quick retries: a local emulator either answers at once or is gone, and a test that waits for
# botocore's default backoff against a stopped server only hides the real failure.
_DEFAULT_ATTEMPTS = 2


def make_client(
    service: str, endpoint_url: str, region: str = DEFAULT_REGION, *, max_attempts: int = _DEFAULT_ATTEMPTS
) -> Any:
    """A boto3 client that can only talk to ``endpoint_url``.

    A fresh session with explicit dummy credentials keeps the developer's profile, SSO cache and
    ``AWS_ENDPOINT_URL_*`` overrides out of the picture.
    """
    if not endpoint_url:
        raise ValueError("an explicit endpoint_url is required: the emulator never talks to real AWS")
    session = boto3.session.Session(
        aws_access_key_id=DUMMY_CREDENTIAL,
        aws_secret_access_key=DUMMY_CREDENTIAL,
        region_name=region,
    )
    config = Config(
        retries={"total_max_attempts": max_attempts, "mode": "standard"}, connect_timeout=5, read_timeout=30
    )
    return session.client(service, endpoint_url=endpoint_url, config=config)  # type: ignore[call-overload]


@dataclass(frozen=True)
class LocalAws:
    """The resources of one provisioned stack, and how the function reaches them."""

    endpoint_url: str
    region: str
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str
    table_name: str
    api_url_parameter: str
    api_key_parameter: str | None

    def client(self, service: str) -> Any:
        return make_client(service, self.endpoint_url, self.region)

    def env(self) -> dict[str, str]:
        """The function's environment, as the template would set it, plus what points boto3 here."""
        env = {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": DUMMY_CREDENTIAL,
            "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIAL,
            "STATE_TABLE_NAME": self.table_name,
            "DEAD_LETTER_QUEUE_URL": self.dlq_url,
            "IMSHOP_API_URL_PARAMETER": self.api_url_parameter,
        }
        if self.api_key_parameter is not None:
            env["IMSHOP_API_KEY_PARAMETER"] = self.api_key_parameter
        return env


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


def provision(
    endpoint_url: str,
    *,
    api_url: str,
    api_key: str | None = None,
    prefix: str = "imshop-push",
    visibility_timeout: int = 540,
    max_receive_count: int = 5,
    region: str = DEFAULT_REGION,
) -> LocalAws:
    """Create what template.yaml defines, under names unique to this call.

    Unique names let many tests share one server without seeing each other's messages or state.
    """
    stack = f"{prefix}-{secrets.token_hex(4)}"

    sqs = make_client("sqs", endpoint_url, region)
    dlq_url: str = sqs.create_queue(
        QueueName=f"{stack}-dlq",
        Attributes={
            "SqsManagedSseEnabled": "true",
            # The longest SQS allows: a dead letter waits for a person, who may be on holiday.
            "MessageRetentionPeriod": str(14 * 24 * 3600),
        },
    )["QueueUrl"]
    dlq_arn = _queue_arn(sqs, dlq_url)
    queue_url: str = sqs.create_queue(
        QueueName=f"{stack}-requests",
        Attributes={
            "SqsManagedSseEnabled": "true",
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}),
        },
    )["QueueUrl"]
    queue_arn = _queue_arn(sqs, queue_url)

    table_name = f"{stack}-state"
    dynamodb = make_client("dynamodb", endpoint_url, region)
    dynamodb.create_table(
        TableName=table_name,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    dynamodb.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"},
    )

    ssm = make_client("ssm", endpoint_url, region)
    api_url_parameter = f"/{stack}/imshop-api-url"
    ssm.put_parameter(Name=api_url_parameter, Value=api_url, Type="SecureString")
    api_key_parameter: str | None = None
    if api_key is not None:
        api_key_parameter = f"/{stack}/imshop-api-key"
        ssm.put_parameter(Name=api_key_parameter, Value=api_key, Type="SecureString")

    return LocalAws(
        endpoint_url=endpoint_url,
        region=region,
        queue_url=queue_url,
        queue_arn=queue_arn,
        dlq_url=dlq_url,
        dlq_arn=dlq_arn,
        table_name=table_name,
        api_url_parameter=api_url_parameter,
        api_key_parameter=api_key_parameter,
    )


def _queue_arn(sqs: Any, queue_url: str) -> str:
    attributes: dict[str, str] = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
    return attributes["QueueArn"]
