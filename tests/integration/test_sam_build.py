"""`sam build` packages what the handler needs: the built function imports from the built layer alone.

No Docker: SAM's Python builder installs the layer's requirements with the interpreter on PATH (3.13, the
venv's). The import runs in a fresh process without site-packages (-S), only the build output on sys.path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# What the python3.13 Lambda runtime itself provides besides the standard library.
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py")


def lambda_runtime_packages(into: Path) -> Path:
    """A folder holding only the runtime's own packages (linked from this venv)."""
    import botocore

    site_packages = Path(botocore.__file__).parents[1]
    into.mkdir()
    for name in RUNTIME_PACKAGES:
        (into / name).symlink_to(site_packages / name)
    return into


def test_sam_build_output_is_a_working_function(tmp_path: Path) -> None:
    build_dir = tmp_path / "build"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "SAM_CLI_TELEMETRY": "0",
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "eu-central-1"),
    }
    sam = Path(sys.executable).parent / "sam"
    subprocess.run(
        [str(sam), "build", "--template", str(REPO / "template.yaml"), "--build-dir", str(build_dir)],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    layer = build_dir / "ImshopPushLayer" / "python"
    function = build_dir / "SendNotificationsFunction"
    assert (layer / "imshop_push" / "domain" / "schemas" / "notification_request.json").is_file()
    assert not (layer / "boto3").exists(), "boto3 comes with the Lambda runtime and must not be shipped"
    # Lambda's file system is read-only: without shipped bytecode every cold start compiles everything again.
    for module in ("imshop_push/dispatch/dispatcher", "aws_lambda_powertools/logging/logger", "urllib3/connectionpool"):
        folder, name = module.rsplit("/", 1)
        assert (layer / folder / "__pycache__" / f"{name}.cpython-313.pyc").is_file(), module

    paths = [str(function), str(layer), str(lambda_runtime_packages(tmp_path / "runtime"))]
    probe = (
        "import app, imshop_push.domain.validation as v;"
        "v.validate_request({'userIds': ['1'], 'message': {'title': 't', 'summary': 's'}});"
        "print(app.lambda_handler.__name__)"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", f"import sys; sys.path[:0] = {paths!r}; {probe}"],
        env={"IMSHOP_API_URL": "http://127.0.0.1:9/x", "PATH": env["PATH"], "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == "lambda_handler"

    # The history webhook (built whether or not NotificationHistory is enabled) needs nothing but the layer.
    webhook = build_dir / "NotificationHistoryFunction"
    paths = [str(webhook), str(layer), str(lambda_runtime_packages(tmp_path / "webhook-runtime"))]
    probe = "import app; print(app.lambda_handler.__module__)"
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", f"import sys; sys.path[:0] = {paths!r}; {probe}"],
        env={"PATH": env["PATH"], "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == "imshop_push.entrypoints.history_handler"
