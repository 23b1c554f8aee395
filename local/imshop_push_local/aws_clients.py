"""boto3 clients that can reach nothing but the local emulator.

Everything goes over real HTTP to an explicit loopback endpoint with dummy credentials, so that
the code under test uses the same boto3 code paths as in Lambda and can never reach a real account,
whatever credentials or profiles the developer's shell holds.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config

DEFAULT_REGION = "eu-central-1"
DUMMY_CREDENTIAL = "testing"
LOOPBACK = "127.0.0.1"

# Few, quick retries: a local emulator either answers at once or is gone, and a test that waits for
# botocore's default backoff against a stopped server only hides the real failure.
_DEFAULT_ATTEMPTS = 2

# One session per region for every client of this process: a session loads botocore's endpoint and service
# models on its first client (most of a client's cost), and the tests and the demo make hundreds of clients.
# Creating clients from one session is not thread-safe; the clients themselves are.
_sessions: dict[str, boto3.session.Session] = {}
_sessions_lock = threading.Lock()


def make_client(
    service: str, endpoint_url: str, region: str = DEFAULT_REGION, *, max_attempts: int = _DEFAULT_ATTEMPTS
) -> Any:
    """A boto3 client that can only talk to ``endpoint_url``.

    A session of this module's own with explicit dummy credentials keeps the developer's profile, SSO cache
    and ``AWS_ENDPOINT_URL_*`` overrides out of the picture.
    """
    if not endpoint_url:
        raise ValueError("an explicit endpoint_url is required: the emulator never talks to real AWS")
    config = Config(
        retries={"total_max_attempts": max_attempts, "mode": "standard"}, connect_timeout=5, read_timeout=30
    )
    with _sessions_lock:
        session = _sessions.get(region)
        if session is None:
            session = _sessions[region] = boto3.session.Session(
                aws_access_key_id=DUMMY_CREDENTIAL,
                aws_secret_access_key=DUMMY_CREDENTIAL,
                region_name=region,
            )
        return session.client(service, endpoint_url=endpoint_url, config=config)  # type: ignore[call-overload]


def emulator_env(endpoint_url: str, region: str) -> dict[str, str]:
    """What points a function's boto3 at the emulator, with credentials that work nowhere else."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "AWS_ACCESS_KEY_ID": DUMMY_CREDENTIAL,
        "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIAL,
    }
