"""The layer's folders are its architecture, and this test keeps them honest: dependencies point inward.

entrypoints (wiring) -> dispatch (the pipeline and its ports) -> domain (pure rules); adapters implement the
ports for AWS and IMSHOP; producers (the publishing helper) need only the domain. A module that imports across
the rule, an AWS library in the domain or the pipeline, or a circle of imports (even a type-only one) fails here
with its name."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import imshop_push

PACKAGE = Path(imshop_push.__file__).parent
# What each subpackage may import of the layer (itself always).
MAY_IMPORT = {
    "domain": set(),
    "dispatch": {"domain"},
    "adapters": {"domain", "dispatch"},
    "producers": {"domain"},
    "entrypoints": {"domain", "dispatch", "adapters"},
}
AWS_LIBRARIES = {"boto3", "botocore", "urllib3"}
# Type stubs only (under TYPE_CHECKING): the producers' helper is typed against the caller's own SQS client.
TYPE_STUBS = {"mypy_boto3_sqs"}
# Powertools' JSON-schema validation is pure (no AWS call); the domain checks requests with it.
POWERTOOLS_IN_THE_DOMAIN = {
    "aws_lambda_powertools.utilities.validation",
    "aws_lambda_powertools.utilities.validation.exceptions",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path) -> Iterator[str]:
    """Every module the file imports, type-only imports included: a circle through them is still a circle."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            for alias in node.names:  # `from imshop_push.domain import observability`
                if f"{node.module}.{alias.name}" in MODULES:
                    yield f"{node.module}.{alias.name}"


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "imshop_push" and parts[1] in MAY_IMPORT else None


def test_every_module_is_in_a_subpackage() -> None:
    loose = [name for name in MODULES if name != "imshop_push" and layer_of(name) is None]
    assert not loose, f"modules outside the layout's subpackages: {loose}"


@pytest.mark.parametrize("module", sorted(MODULES), ids=str)
def test_dependencies_point_inward(module: str) -> None:
    layer = layer_of(module)
    if layer is None:
        return
    allowed = MAY_IMPORT[layer] | {layer}
    across = sorted(m for m in imports(MODULES[module]) if layer_of(m) not in (None, *allowed))
    assert not across, f"{module} ({layer}) imports {across}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer_of(m) in {"domain", "dispatch", "producers"}))
def test_no_aws_library_outside_adapters_and_wiring(module: str) -> None:
    forbidden = (
        AWS_LIBRARIES if layer_of(module) == "producers" else AWS_LIBRARIES | TYPE_STUBS | {"mypy_boto3_dynamodb"}
    )
    found = sorted(m for m in imports(MODULES[module]) if m.split(".")[0] in forbidden)
    assert not found, f"{module} imports {found}"
    if layer_of(module) != "producers":  # the helper's boto3 is the producer's, typed only
        powertools = {m for m in imports(MODULES[module]) if m.startswith("aws_lambda_powertools")}
        assert powertools <= POWERTOOLS_IN_THE_DOMAIN, f"{module} imports {sorted(powertools)}"


def test_no_circle_of_imports() -> None:
    graph = {name: {m for m in imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            pytest.fail("import circle: " + " -> ".join([*path[path.index(node) :], node]))
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, [*path, node])
        done.add(node)

    for name in sorted(graph):
        visit(name, [])
