"""The domain (the pipeline, its stages and their values) speaks no AWS: adapters translate at the boundary.
Each stage stays small enough to read in one sitting."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import imshop_push

PACKAGE = Path(imshop_push.__file__).parent
DOMAIN = [
    PACKAGE / name
    for name in (
        "pipeline.py",
        "batch.py",
        "fate.py",
        "ports.py",
        "model.py",
        "dispatcher.py",
        "history.py",
        "history_api.py",
    )
] + sorted((PACKAGE / "stages").glob("*.py"))


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("path", DOMAIN, ids=lambda p: p.name)
def test_the_domain_imports_no_aws_library(path: Path) -> None:
    aws = {m for m in imported_modules(path) if m.split(".")[0] in {"boto3", "botocore", "mypy_boto3_dynamodb"}}
    assert not aws, f"{path.name} imports {aws}"


@pytest.mark.parametrize("path", DOMAIN, ids=lambda p: p.name)
def test_every_stage_is_a_small_module_of_small_functions(path: Path) -> None:
    source = path.read_text()
    assert len(source.splitlines()) <= 250, path.name
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef):
            assert node.end_lineno is not None
            assert node.end_lineno - node.lineno < 60, f"{path.name}: {node.name}"


ADAPTERS = (
    "imshop_push.adapters.imshop_client",
    "imshop_push.adapters.sqs_outbox",
    "imshop_push.adapters.state_dynamodb",
    "urllib3",
)


def test_importing_the_domain_loads_no_adapter() -> None:
    """The values the stages pass around live with the model, so the domain runs without the adapters' libraries.
    (botocore itself still comes in with Powertools, which `parsing` uses for its schema errors.)"""
    code = f"import sys, imshop_push.dispatch.pipeline; print(sorted(m for m in {ADAPTERS!r} if m in sys.modules))"
    completed = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(PACKAGE.parent)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"
