"""The optional in-app history in template.yaml (docs/contract.md#in-app-history): its table is laid out as the
code reads it, both functions get only what they need of it, and the webhook is a function URL."""

from __future__ import annotations

import copy
import importlib
from typing import Any

import pytest
from test_template import (
    REGION,
    as_list,
    function_property,
    getatt_target,
    grants,
    iam_statements,
    load_template,
    parameter,
    ref_target,
    resolve_default,
    resources_of,
    sub_text,
    the_function,
    the_history_function,
)

from imshop_push.domain import history

HISTORY_CONDITION = {"Fn::Equals": [{"Ref": "NotificationHistory"}, "Enabled"]}
HISTORY_RESOURCES = (
    "HistoryTable",
    "SendNotificationsHistoryPolicy",
    "NotificationHistoryLogGroup",
    "NotificationHistoryFunctionRole",
    "NotificationHistoryFunction",
)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def history_table_id(template: dict[str, Any]) -> str:
    env = function_property(template, "Environment")["Variables"]
    condition, when_true, when_false = env["HISTORY_TABLE_NAME"]["Fn::If"]
    assert template["Conditions"][condition] == HISTORY_CONDITION
    assert when_false == ""  # empty: no history
    return ref_target(when_true)


def test_the_history_is_opt_in(template: dict[str, Any]) -> None:
    assert parameter(template, "NotificationHistory")["Default"] == "Disabled"
    assert parameter(template, "NotificationHistory")["AllowedValues"] == ["Enabled", "Disabled"]
    for logical_id in HISTORY_RESOURCES:
        condition = template["Resources"][logical_id]["Condition"]
        assert template["Conditions"][condition] == HISTORY_CONDITION, logical_id
    for output in ("HistoryUrl", "HistoryTableName"):
        assert template["Conditions"][template["Outputs"][output]["Condition"]] == HISTORY_CONDITION


def test_the_history_table_makes_a_users_newest_entries_one_query(template: dict[str, Any]) -> None:
    table = template["Resources"][history_table_id(template)]
    properties = table["Properties"]
    assert properties["KeySchema"] == [
        {"AttributeName": history.USER_KEY, "KeyType": "HASH"},
        {"AttributeName": history.ENTRY_KEY, "KeyType": "RANGE"},
    ]
    (index,) = properties["LocalSecondaryIndexes"]
    assert index["IndexName"] == history.NEWEST_INDEX
    assert index["KeySchema"] == [
        {"AttributeName": history.USER_KEY, "KeyType": "HASH"},
        {"AttributeName": history.UPDATED_ON, "KeyType": "RANGE"},
    ]
    assert index["Projection"] == {"ProjectionType": "ALL"}  # the Query answers without a second read
    types = {d["AttributeName"]: d["AttributeType"] for d in properties["AttributeDefinitions"]}
    assert types == {history.USER_KEY: "S", history.ENTRY_KEY: "S", history.UPDATED_ON: "N"}
    assert properties["TimeToLiveSpecification"] == {"AttributeName": history.EXPIRATION, "Enabled": True}
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["SSESpecification"]["SSEEnabled"] is True
    assert properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_the_dispatcher_may_only_write_history_entries(template: dict[str, Any]) -> None:
    table_id = history_table_id(template)
    role_id = getatt_target(function_property(template, "Role"))
    policies = resources_of(template, "AWS::IAM::RolePolicy").values()
    (policy,) = [p for p in policies if ref_target(p["Properties"]["RoleName"]) == role_id]
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert as_list(statement["Action"]) == ["dynamodb:BatchWriteItem", "dynamodb:UpdateItem"]  # UpdateItem: collapseKey
    assert getatt_target(statement["Resource"]) == table_id
    env = function_property(template, "Environment")["Variables"]
    assert int(resolve_default(template, env["HISTORY_RETENTION_DAYS"])) == 90
    assert not any(target == table_id for _, target in grants(template, role_id))  # nothing more in the role


def test_the_webhook_role_reads_and_marks_only_the_history(template: dict[str, Any]) -> None:
    function_id, _ = the_history_function(template)
    table_id = history_table_id(template)
    role_id = getatt_target(function_property(template, "Role", function_id=function_id))
    log_group_id = ref_target(function_property(template, "LoggingConfig", function_id=function_id)["LogGroup"])
    assert grants(template, role_id) == {
        ("dynamodb:UpdateItem", table_id),
        ("logs:CreateLogStream", log_group_id),
        ("logs:PutLogEvents", log_group_id),
    }
    statements = [s for lid, s in iam_statements(template) if lid == role_id]
    actions = {a for s in statements for a in as_list(s["Action"])}
    assert actions == {
        "dynamodb:Query",
        "dynamodb:UpdateItem",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "ssm:GetParameter",
        "kms:Decrypt",
    }
    by_action = {a: s for s in statements for a in as_list(s["Action"])}
    assert sub_text(by_action["dynamodb:Query"]["Resource"]) == "${" + table_id + ".Arn}/index/newest"
    prefix = "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter"
    assert sub_text(by_action["ssm:GetParameter"]["Resource"]) == prefix + "${HistoryApiKeyParameterName}"
    assert parameter(template, "HistoryApiKeyParameterName")["AllowedPattern"].startswith("^/")
    assert "ManagedPolicyArns" not in template["Resources"][role_id]["Properties"]


def test_the_webhook_is_a_function_url_with_its_configuration(template: dict[str, Any]) -> None:
    function_id, function = the_history_function(template)
    properties = function["Properties"]
    assert properties["Handler"] == "app.lambda_handler"
    assert properties["CodeUri"].rstrip("/") == "functions/notification_history"
    assert [ref_target(layer) for layer in properties["Layers"]] == ["ImshopPushLayer"]
    assert "Events" not in properties
    # IMSHOP's server cannot sign with SigV4: the URL is open and the code demands the Bearer key.
    assert properties["FunctionUrlConfig"]["AuthType"] == "NONE"
    env = properties["Environment"]["Variables"]
    assert ref_target(env["HISTORY_TABLE_NAME"]) == history_table_id(template)
    assert env["HISTORY_API_KEY"] == ""
    assert resolve_default(template, env["HISTORY_API_KEY_PARAMETER"]) == "/imshop-push/history-api-key"
    assert int(resolve_default(template, env["HISTORY_MAX_ITEMS"])) == 100
    assert int(resolve_default(template, env["HISTORY_RETENTION_DAYS"])) == 90
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "ImshopPush"
    assert ref_target(env["POWERTOOLS_SERVICE_NAME"]) == "ServiceName"
    assert parameter(template, "HistoryMaxItems")["MaxValue"] == 1000
    assert getatt_target(template["Outputs"]["HistoryUrl"]["Value"], "FunctionUrl") == f"{function_id}Url"


def test_the_public_webhook_cannot_take_the_accounts_unreserved_concurrency(template: dict[str, Any]) -> None:
    """The URL is open to anyone (the key is checked in the code, after the invocation started): a flood of
    unauthenticated requests may only throttle the webhook itself, never the dispatcher or other functions."""
    _, function = the_history_function(template)
    reserved = function["Properties"]["ReservedConcurrentExecutions"]
    assert ref_target(reserved) == "HistoryReservedConcurrency"
    spec = parameter(template, "HistoryReservedConcurrency")
    assert 1 <= int(spec["MinValue"]) <= int(spec["Default"]) <= int(spec["MaxValue"]) <= 100


def test_sam_turns_the_webhook_into_a_public_url_and_no_extra_iam(
    template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    transform = importlib.import_module("samtranslator.translator.transform").transform
    document = copy.deepcopy(template)
    for resource in document["Resources"].values():
        for uri in ("CodeUri", "ContentUri"):
            if uri in resource.get("Properties", {}):
                resource["Properties"][uri] = "s3://bucket/key"
    output: dict[str, Any] = transform(document, {}, None)
    function_id, _ = the_history_function(template)
    url = output["Resources"][f"{function_id}Url"]
    assert url["Type"] == "AWS::Lambda::Url"
    assert url["Properties"]["AuthType"] == "NONE"
    assert url["Condition"] == template["Resources"][function_id]["Condition"]
    dispatcher_id, _ = the_function(template)
    assert f"{dispatcher_id}Url" not in output["Resources"]  # only the webhook is reachable over HTTP


def test_the_webhook_entry_point_is_the_layers_handler() -> None:
    import runpy
    from pathlib import Path

    from imshop_push.entrypoints.history_handler import lambda_handler

    app = Path(__file__).resolve().parents[2] / "functions" / "notification_history" / "app.py"
    assert runpy.run_path(str(app))["lambda_handler"] is lambda_handler
