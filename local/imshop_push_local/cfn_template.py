"""template.yaml read the way CloudFormation reads it: short tags in their long form, parameters with
their defaults (or overrides), conditions, and the intrinsic functions the template uses.

The local stack is provisioned from the template so that it cannot drift from what is deployed.
Physical ids and attributes of resources come from a callback, so the provisioner can create a
resource the first time something refers to it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import yaml

ACCOUNT_ID: Final = "123456789012"  # moto's account
NO_VALUE: Final = object()  # AWS::NoValue: the key or list item disappears

# The long form of a short tag: `!GetAtt A.b` is `{"Fn::GetAtt": ["A", "b"]}`, `!Ref X` is `{"Ref": "X"}`.
_PLAIN_TAGS: Final = frozenset({"Ref", "Condition"})
_SUB_VARIABLE: Final = re.compile(r"\$\{(!?)([^}]*)\}")

type Lookup = Callable[[str, str | None], str]


def _construct_short_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {suffix if suffix in _PLAIN_TAGS else f"Fn::{suffix}": value}


# A subclass, so that the CloudFormation tags are not registered on SafeLoader for everyone else. libyaml's
# parser where PyYAML has it (the same documents, six times faster: every local stack reads the template).
_CfnLoader: Any = type("_CfnLoader", (getattr(yaml, "CSafeLoader", yaml.SafeLoader),), {})
_CfnLoader.add_multi_constructor("!", _construct_short_tag)


def load(path: Path) -> dict[str, Any]:
    document = yaml.load(path.read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506 (a SafeLoader)
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise ValueError(f"{path} is not a CloudFormation template with Resources")
    return document


def parameter_values(template: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, str]:
    """Every parameter's value as CloudFormation passes it: a string, the override or the default."""
    declared: Mapping[str, Any] = template.get("Parameters") or {}
    unknown = set(overrides) - set(declared)
    if unknown:
        raise ValueError(f"the template declares no parameter {sorted(unknown)}")
    values: dict[str, str] = {}
    for name, spec in declared.items():
        if name in overrides:
            values[name] = str(overrides[name])
        elif "Default" in spec:
            values[name] = _as_string(spec["Default"])
        else:
            raise ValueError(f"parameter {name} has no default: pass a value for it")
    return values


def _as_string(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


class Resolver:
    """Resolves intrinsics against one stack's parameters, pseudo parameters and resources."""

    def __init__(
        self,
        template: Mapping[str, Any],
        *,
        parameters: Mapping[str, str],
        stack_name: str,
        region: str,
        resource: Lookup,
    ) -> None:
        self._conditions: Mapping[str, Any] = template.get("Conditions") or {}
        self._resources: Mapping[str, Any] = template["Resources"]
        self._values: dict[str, str] = {
            **parameters,
            "AWS::StackName": stack_name,
            "AWS::Region": region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{ACCOUNT_ID}:stack/{stack_name}/local",
        }
        self._resource = resource
        self._evaluated: dict[str, bool] = {}

    def exists(self, logical_id: str) -> bool:
        """Whether a resource is part of the stack (its Condition, if any, holds)."""
        condition = self._resources[logical_id].get("Condition")
        return condition is None or self.condition(condition)

    def condition(self, name: str) -> bool:
        if name not in self._evaluated:
            if name not in self._conditions:
                raise ValueError(f"unknown condition {name!r}")
            self._evaluated[name] = bool(self.resolve(self._conditions[name]))
        return self._evaluated[name]

    def resolve(self, node: Any) -> Any:
        """The value CloudFormation would see; NO_VALUE for a dropped one."""
        if isinstance(node, list):
            items = [self.resolve(item) for item in node]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            [(key, argument)] = node.items()
            if key in {"Ref", "Condition"} or key.startswith("Fn::"):
                return self._intrinsic(key, argument)
        resolved = {key: self.resolve(value) for key, value in node.items()}
        return {key: value for key, value in resolved.items() if value is not NO_VALUE}

    def _intrinsic(self, key: str, argument: Any) -> Any:
        match key:
            case "Ref":
                return self._ref(str(argument))
            case "Condition":
                return self.condition(str(argument))
            case "Fn::GetAtt":
                logical_id, attribute = argument if isinstance(argument, list) else str(argument).split(".", 1)
                return self._resource(str(logical_id), str(attribute))
            case "Fn::Sub":
                return self._sub(argument)
            case "Fn::If":
                name, when_true, when_false = argument
                return self.resolve(when_true if self.condition(name) else when_false)
            case "Fn::Equals":
                left, right = (self.resolve(item) for item in argument)
                return str(left) == str(right)
            case "Fn::Not":
                return not self.resolve(argument[0])
            case "Fn::And":
                return all(self.resolve(item) for item in argument)
            case "Fn::Or":
                return any(self.resolve(item) for item in argument)
            case "Fn::Join":
                separator, items = argument
                return str(separator).join(str(item) for item in self.resolve(items))
            case "Fn::Select":
                index, items = argument
                return self.resolve(items)[int(self.resolve(index))]
        raise ValueError(f"the local stack does not resolve {key}; teach cfn_template.Resolver")

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self._values:
            return self._values[name]
        if name in self._resources:
            return self._resource(name, None)
        raise ValueError(f"!Ref {name}: no such parameter, pseudo parameter or resource")

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        extra = {name: self.resolve(value) for name, value in variables.items()}

        def replace(match: re.Match[str]) -> str:
            literal, name = match.groups()
            if literal:
                return "${" + name + "}"
            if name in extra:
                return str(extra[name])
            if name in self._values or "." not in name:
                return str(self._ref(name))
            logical_id, attribute = name.split(".", 1)
            return self._resource(logical_id, attribute)

        return _SUB_VARIABLE.sub(replace, str(text))
