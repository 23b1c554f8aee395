"""Deployment properties of template.yaml (docs/contract.md#deployment, #observability) that cfn-lint cannot know.

The template is read with a YAML loader that turns CloudFormation short tags (``!Ref``,
``!Sub``, ``!GetAtt``, ...) into their long JSON form, so the tests see what CloudFormation sees.
"""

from __future__ import annotations

import ast
import copy
import importlib
import json
import operator
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from imshop_push.domain.observability import METRIC_NAMES

TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "template.yaml"
REGION = "eu-central-1"

# Statements allowed a wildcard in a resource, keyed by (logical id, Sid), with the condition key
# that must confine them. The SSM default key's id is unknown to the template, so kms:Decrypt
# names the account's keys and is only usable through SSM.
WILDCARD_RESOURCE_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("SendNotificationsFunctionRole", "DecryptSecureStringsViaSsm"): "kms:ViaService",
    ("NotificationHistoryFunctionRole", "DecryptSecureStringsViaSsm"): "kms:ViaService",
}

FUNCTION_ENV_VARS = frozenset(
    {
        "IMSHOP_API_URL",
        "IMSHOP_API_URL_PARAMETER",
        "IMSHOP_API_KEY_PARAMETER",
        "STATE_TABLE_NAME",
        "DEAD_LETTER_QUEUE_URL",
        "BULK_QUEUE_ARN",
        "BULK_DEAD_LETTER_QUEUE_URL",
        "RATE_LIMIT_REQUESTS",
        "RATE_LIMIT_WINDOW_SECONDS",
        "MAX_RECIPIENTS_PER_REQUEST",
        "HTTP_TIMEOUT_SECONDS",
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
        "POWERTOOLS_LOG_LEVEL",
    }
)

FAILURE_METRICS = frozenset(
    {"ImshopCallsFailed", "ImshopCallsRejected", "ImshopCallsAmbiguous", "ImshopCallsRateLimited"}
)

ARITHMETIC: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
COMPARISONS: dict[type[ast.cmpop], Callable[[float, float], bool]] = {
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
}


# --------------------------------------------------------------------------- loading


def _construct_short_tag(loader: Any, tag_suffix: str, node: Any) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix in {"Ref", "Condition"}:
        return {tag_suffix: value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


# A subclass, so that the tags are not registered on yaml.SafeLoader for everyone else.
_CfnLoader: Any = type("_CfnLoader", (yaml.SafeLoader,), {})
_CfnLoader.add_multi_constructor("!", _construct_short_tag)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(path.read_text(encoding="utf-8"), Loader=_CfnLoader)
    return loaded


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


# --------------------------------------------------------------------------- helpers


def resources_of(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def the_function(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The dispatcher: the one function with an SQS event source (the history webhook has none)."""
    functions = {
        logical_id: resource
        for logical_id, resource in resources_of(template, "AWS::Serverless::Function").items()
        if any(e["Type"] == "SQS" for e in (resource["Properties"].get("Events") or {}).values())
    }
    assert len(functions) == 1, sorted(functions)
    ((logical_id, resource),) = functions.items()
    return logical_id, resource


def the_history_function(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "NotificationHistoryFunction", template["Resources"]["NotificationHistoryFunction"]


def function_property(template: dict[str, Any], name: str, *, function_id: str | None = None) -> Any:
    """A property of a function (the dispatcher's by default), falling back to Globals.Function as SAM does."""
    function = template["Resources"][function_id] if function_id else the_function(template)[1]
    if name in function["Properties"]:
        return function["Properties"][name]
    return template.get("Globals", {}).get("Function", {})[name]


def sqs_events(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The function's SQS event sources by lane: the one on the queue BULK_QUEUE_ARN names is bulk."""
    _, function = the_function(template)
    events = [event["Properties"] for event in function["Properties"]["Events"].values() if event["Type"] == "SQS"]
    assert len(events) == 2
    bulk_id = getatt_target(function["Properties"]["Environment"]["Variables"]["BULK_QUEUE_ARN"])
    (bulk,) = [e for e in events if getatt_target(e["Queue"]) == bulk_id]
    (transactional,) = [e for e in events if e is not bulk]
    return {"transactional": transactional, "bulk": bulk}


def sqs_event(template: dict[str, Any]) -> dict[str, Any]:
    """The transactional lane's event source (the stack's original queue)."""
    return sqs_events(template)["transactional"]


def lane_queue_ids(template: dict[str, Any]) -> dict[str, str]:
    return {lane: getatt_target(event["Queue"]) for lane, event in sqs_events(template).items()}


def lane_dlq_ids(template: dict[str, Any]) -> dict[str, str]:
    """Each lane's dead-letter queue: the target of its queue's redrive policy."""
    return {
        lane: getatt_target(template["Resources"][queue]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"])
        for lane, queue in lane_queue_ids(template).items()
    }


def getatt_target(value: Any, attribute: str = "Arn") -> str:
    """The logical id in ``!GetAtt X.<attribute>``; fails for anything else."""
    assert isinstance(value, dict), value
    assert set(value) == {"Fn::GetAtt"}, value
    logical_id, got_attribute = value["Fn::GetAtt"]
    assert got_attribute == attribute, value
    return str(logical_id)


def ref_target(value: Any) -> str:
    assert isinstance(value, dict), value
    assert set(value) == {"Ref"}, value
    return str(value["Ref"])


def parameter(template: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = template["Parameters"][name]
    return found


def resolve_default(template: dict[str, Any], value: Any) -> Any:
    """A literal, or the default of the parameter a ``!Ref`` names."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return parameter(template, value["Ref"])["Default"]
    return value


def lowest_value(template: dict[str, Any], value: Any) -> float:
    """The least value a number can take at deploy time: a literal, or a parameter's MinValue."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        spec = parameter(template, value["Ref"])
        assert spec["Type"] == "Number", value
        assert "MinValue" in spec, f"parameter {value['Ref']} needs a MinValue"
        return float(spec["MinValue"])
    return float(value)


def sub_text(value: Any) -> str | None:
    """The text of a ``!Sub`` (short or list form) or of a plain string; None for other intrinsics."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        body = value["Fn::Sub"]
        return str(body if isinstance(body, str) else body[0])
    return None


def render_sub(template: dict[str, Any], text: str) -> str:
    """Fill a ``!Sub`` body: parameters with their defaults, pseudo parameters, other names as themselves."""
    pseudo = {"AWS::Region": REGION, "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in pseudo:
            return pseudo[name]
        if name in template.get("Parameters", {}):
            return str(parameter(template, name)["Default"])
        return name

    return re.sub(r"\$\{([^!}][^}]*)\}", replace, text)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def flatten_if(values: list[Any]) -> Iterator[Any]:
    """Both branches of every ``!If`` (minus AWS::NoValue), so both deployments are checked."""
    for value in values:
        if isinstance(value, dict) and set(value) == {"Fn::If"}:
            _, when_true, when_false = value["Fn::If"]
            yield from flatten_if(as_list(when_true) + as_list(when_false))
        elif value == {"Ref": "AWS::NoValue"}:
            continue
        else:
            yield value


def iam_statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(logical id, statement) for every identity-policy statement of the template."""
    for logical_id, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        documents: list[Any] = []
        if resource["Type"] == "AWS::IAM::Role":
            documents = [policy["PolicyDocument"] for policy in properties.get("Policies", [])]
        elif resource["Type"] in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"}:
            documents = [properties["PolicyDocument"]]
        elif resource["Type"] == "AWS::Serverless::Function":
            documents = [p for p in as_list(properties.get("Policies", [])) if isinstance(p, dict)]
            documents = [d for d in documents if "Statement" in d]
        for document in documents:
            for statement in as_list(document["Statement"]):
                yield logical_id, statement


def grants(template: dict[str, Any], role_id: str) -> set[tuple[str, str]]:
    """(action, logical id of the resource) pairs a role's ``!GetAtt X.Arn`` statements allow."""
    granted: set[tuple[str, str]] = set()
    for logical_id, statement in iam_statements(template):
        if logical_id != role_id or statement["Effect"] != "Allow":
            continue
        for resource in flatten_if(as_list(statement["Resource"])):
            if isinstance(resource, dict) and "Fn::GetAtt" in resource:
                granted.update((action, resource["Fn::GetAtt"][0]) for action in as_list(statement["Action"]))
    return granted


def dashboard_metrics(template: dict[str, Any]) -> list[list[Any]]:
    """Every metric array of every dashboard widget, '.' shorthands expanded."""
    dashboards = resources_of(template, "AWS::CloudWatch::Dashboard")
    assert len(dashboards) == 1
    ((_, dashboard),) = dashboards.items()
    text = sub_text(dashboard["Properties"]["DashboardBody"])
    assert text is not None
    body = json.loads(render_sub(template, text))
    metrics: list[list[Any]] = []
    for widget in body["widgets"]:
        previous: list[Any] = []
        for metric in widget.get("properties", {}).get("metrics", []):
            fields = [field for field in metric if not isinstance(field, dict)]
            if not fields:  # a metric-math expression row
                continue
            expanded = [previous[i] if field == "." else field for i, field in enumerate(fields)]
            metrics.append(expanded)
            previous = expanded
    return metrics


def alarm_metric_stats(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    """The metrics an alarm reads: its single metric, or the MetricStats of its metric math."""
    properties = alarm["Properties"]
    if "MetricName" in properties:
        return [
            {
                "Namespace": properties["Namespace"],
                "MetricName": properties["MetricName"],
                "Dimensions": properties.get("Dimensions", []),
            }
        ]
    return [query["MetricStat"]["Metric"] for query in properties.get("Metrics", []) if "MetricStat" in query]


def alarms_on(template: dict[str, Any], namespace: str, metric_name: str) -> list[dict[str, Any]]:
    return [
        alarm
        for alarm in resources_of(template, "AWS::CloudWatch::Alarm").values()
        if any(
            metric["Namespace"] == namespace and metric["MetricName"] == metric_name
            for metric in alarm_metric_stats(alarm)
        )
    ]


def dimension(metric: dict[str, Any], name: str) -> Any:
    values = [d["Value"] for d in metric["Dimensions"] if d["Name"] == name]
    assert len(values) == 1, metric
    return values[0]


def evaluate_metric_math(queries: dict[str, dict[str, Any]], query_id: str, sums: dict[str, float]) -> float:
    """Evaluate one query of an alarm's metric math for one period, metrics given by name.

    Understands what the alarms use: + - * /, comparisons, FILL(m, value) and a lazy IF(c, a, b).
    """
    query = queries[query_id]
    if "MetricStat" in query:
        return sums[query["MetricStat"]["Metric"]["MetricName"]]

    def walk(node: ast.expr) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.Name):
            return evaluate_metric_math(queries, node.id, sums)
        if isinstance(node, ast.BinOp) and type(node.op) in ARITHMETIC:
            return ARITHMETIC[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in COMPARISONS:
            return float(COMPARISONS[type(node.ops[0])](walk(node.left), walk(node.comparators[0])))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "FILL":  # every period has a value here
                return walk(node.args[0])
            if node.func.id == "IF":
                condition, when_true, when_false = node.args
                return walk(when_true) if walk(condition) else walk(when_false)
        raise AssertionError(f"metric math not understood: {ast.dump(node)}")

    return walk(ast.parse(query["Expression"], mode="eval").body)


# --------------------------------------------------------------------------- the loader itself


def test_loader_reads_short_tags_as_long_form(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("a: !Ref X\nb: !GetAtt Q.Arn\nc: !Sub 'x${Y}'\nd: !If [C, 1, 2]\ne: !Equals [1, 1]\n")
    assert load_template(path) == {
        "a": {"Ref": "X"},
        "b": {"Fn::GetAtt": ["Q", "Arn"]},
        "c": {"Fn::Sub": "x${Y}"},
        "d": {"Fn::If": ["C", 1, 2]},
        "e": {"Fn::Equals": [1, 1]},
    }


# --------------------------------------------------------------------------- event source and queues


def test_reserved_concurrency_not_below_what_both_lanes_can_start(template: dict[str, Any]) -> None:
    """Reserved concurrency = transactional MaximumConcurrency + the bulk lane's, for every value the
    parameter may take (CloudFormation cannot add: a !Select over a table does)."""
    reserved = function_property(template, "ReservedConcurrentExecutions")
    events = sqs_events(template)
    transactional = events["transactional"]["ScalingConfig"]["MaximumConcurrency"]
    bulk = events["bulk"]["ScalingConfig"]["MaximumConcurrency"]
    assert not isinstance(bulk, dict), "the bulk lane's concurrency is a literal the table adds"
    assert int(bulk) >= 2  # SQS's minimum for MaximumConcurrency
    assert lowest_value(template, transactional) >= 2
    index, table = reserved["Fn::Select"]
    assert index == transactional == {"Ref": "MaximumConcurrency"}
    spec = parameter(template, "MaximumConcurrency")
    assert len(table) > int(spec["MaxValue"])
    for value in range(int(spec["MinValue"]), int(spec["MaxValue"]) + 1):
        assert int(table[value]) >= value + int(bulk), value


def test_each_lane_has_settings_that_suit_it(template: dict[str, Any]) -> None:
    events = sqs_events(template)
    transactional, bulk = events["transactional"], events["bulk"]
    for event in (transactional, bulk):
        assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert "MaximumConcurrency" in event["ScalingConfig"]
    # Transactional: its batching window is part of its latency bound, so it is short.
    assert int(resolve_default(template, transactional["MaximumBatchingWindowInSeconds"])) <= 2
    # Bulk: larger batches (more requests of one text per call), no long window (a backlog fills them).
    assert int(resolve_default(template, bulk["BatchSize"])) > int(
        resolve_default(template, transactional["BatchSize"])
    )
    assert lowest_value(template, bulk["BatchSize"]) >= 10
    assert int(resolve_default(template, bulk["MaximumBatchingWindowInSeconds"])) <= 1


def highest_value(template: dict[str, Any], value: Any) -> float:
    """The largest value a property can take: a parameter's MaxValue, or the literal itself."""
    if isinstance(value, dict) and "Ref" in value:
        spec = parameter(template, value["Ref"])
        assert "MaxValue" in spec, f"{value['Ref']} has no MaxValue: nothing bounds it"
        return float(spec["MaxValue"])
    return float(value)


@pytest.mark.parametrize("lane", ["transactional", "bulk"])
def test_queue_visibility_timeout_covers_six_function_timeouts_and_the_longest_batching_window(
    template: dict[str, Any], lane: str
) -> None:
    """AWS's rule for SQS event sources: visibility >= 6x the function timeout + MaximumBatchingWindowInSeconds,
    for every value the window's parameter may take (else a batch still gathering becomes visible again)."""
    queue_id = lane_queue_ids(template)[lane]
    queue = template["Resources"][queue_id]["Properties"]
    timeout = int(resolve_default(template, function_property(template, "Timeout")))
    visibility = int(resolve_default(template, queue["VisibilityTimeout"]))
    window = highest_value(template, sqs_events(template)[lane]["MaximumBatchingWindowInSeconds"])
    assert timeout == 90
    assert visibility >= 6 * timeout + window, (visibility, window)


@pytest.mark.parametrize("lane", ["transactional", "bulk"])
def test_queue_redrives_to_dead_letter_queue(template: dict[str, Any], lane: str) -> None:
    queue_id = lane_queue_ids(template)[lane]
    queue = template["Resources"][queue_id]["Properties"]
    policy = queue["RedrivePolicy"]
    assert int(policy["maxReceiveCount"]) >= 5
    dlq_id = getatt_target(policy["deadLetterTargetArn"])
    dlq = template["Resources"][dlq_id]["Properties"]
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert dlq["MessageRetentionPeriod"] > queue.get("MessageRetentionPeriod", 4 * 24 * 3600)
    # The DLQ accepts redrive only from this queue; its ARN is spelled out from the queue's name.
    allow = dlq["RedriveAllowPolicy"]
    assert allow["redrivePermission"] == "byQueue"
    (source_arn,) = allow["sourceQueueArns"]
    source_text, queue_name = sub_text(source_arn), sub_text(queue["QueueName"])
    assert source_text is not None
    assert queue_name is not None
    assert source_text == "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:" + queue_name


def test_every_queue_is_encrypted(template: dict[str, Any]) -> None:
    queues = resources_of(template, "AWS::SQS::Queue")
    assert len(queues) >= 2
    for logical_id, queue in queues.items():
        properties = queue["Properties"]
        assert properties.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in properties, logical_id


def test_event_source_reports_batch_item_failures_and_batches(template: dict[str, Any]) -> None:
    event = sqs_event(template)
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert lowest_value(template, event["MaximumBatchingWindowInSeconds"]) >= 1
    assert int(resolve_default(template, event["MaximumBatchingWindowInSeconds"])) == 1
    assert int(resolve_default(template, event["BatchSize"])) == 100


def test_runtime_is_python313_on_arm64(template: dict[str, Any]) -> None:
    assert function_property(template, "Runtime") == "python3.13"
    assert function_property(template, "Architectures") == ["arm64"]
    assert function_property(template, "Handler") == "app.lambda_handler"
    assert function_property(template, "CodeUri").rstrip("/") == "functions/send_notifications"
    (layer_ref,) = function_property(template, "Layers")
    layer = template["Resources"][ref_target(layer_ref)]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    # makefile: layers/imshop_push/Makefile installs for arm64 and ships bytecode (test_sam_build checks it)
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "arm64"}
    assert layer["Properties"]["ContentUri"].rstrip("/") == "layers/imshop_push"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]


def test_function_may_loop_through_its_own_queue(template: dict[str, Any]) -> None:
    # Deferred backlog goes back to the function's own queue; Lambda's recursion detection
    # would otherwise drop such a message after 16 rounds (docs/contract.md#backlog-is-not-failure).
    assert function_property(template, "RecursiveLoop") == "Allow"


# --------------------------------------------------------------------------- state table


def test_state_table(template: dict[str, Any]) -> None:
    table = template["Resources"][
        ref_target(function_property(template, "Environment")["Variables"]["STATE_TABLE_NAME"])
    ]
    assert table["Type"] == "AWS::DynamoDB::Table"
    properties = table["Properties"]
    assert properties["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert properties["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "S"}]
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["SSESpecification"]["SSEEnabled"] is True
    assert properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


# --------------------------------------------------------------------------- function configuration


def test_function_environment(template: dict[str, Any]) -> None:
    env = function_property(template, "Environment")["Variables"]
    assert set(env) >= FUNCTION_ENV_VARS
    tables = resources_of(template, "AWS::DynamoDB::Table")
    assert ref_target(env["STATE_TABLE_NAME"]) in tables
    dlq_id = getatt_target(
        template["Resources"][getatt_target(sqs_event(template)["Queue"])]["Properties"]["RedrivePolicy"][
            "deadLetterTargetArn"
        ]
    )
    assert ref_target(env["DEAD_LETTER_QUEUE_URL"]) == dlq_id
    assert getatt_target(env["BULK_QUEUE_ARN"]) == lane_queue_ids(template)["bulk"]
    assert ref_target(env["BULK_DEAD_LETTER_QUEUE_URL"]) == lane_dlq_ids(template)["bulk"]
    assert resolve_default(template, env["IMSHOP_API_URL_PARAMETER"]) == "/imshop-push/api-url"
    assert resolve_default(template, env["IMSHOP_API_KEY_PARAMETER"]) == ""  # empty: no key
    assert int(resolve_default(template, env["RATE_LIMIT_REQUESTS"])) == 10
    assert int(resolve_default(template, env["RATE_LIMIT_WINDOW_SECONDS"])) == 60
    assert int(resolve_default(template, env["MAX_RECIPIENTS_PER_REQUEST"])) == 1000
    assert int(resolve_default(template, env["HTTP_TIMEOUT_SECONDS"])) == 10
    assert resolve_default(template, env["POWERTOOLS_SERVICE_NAME"]) == "imshop-push"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "ImshopPush"
    assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"


def test_function_logs_to_own_log_group_with_retention(template: dict[str, Any]) -> None:
    logging_config = function_property(template, "LoggingConfig")
    log_group = template["Resources"][ref_target(logging_config["LogGroup"])]
    assert log_group["Type"] == "AWS::Logs::LogGroup"
    assert int(resolve_default(template, log_group["Properties"]["RetentionInDays"])) == 30
    assert logging_config["LogFormat"] == "JSON"


# --------------------------------------------------------------------------- least privilege


def test_no_iam_action_has_a_wildcard(template: dict[str, Any]) -> None:
    statements = list(iam_statements(template))
    assert statements
    for logical_id, statement in statements:
        for action in as_list(statement["Action"]):
            assert "*" not in action, (logical_id, statement.get("Sid"), action)
        assert "NotAction" not in statement, (logical_id, statement.get("Sid"))
        assert "NotResource" not in statement, (logical_id, statement.get("Sid"))


def test_wildcard_resources_only_where_listed_and_conditioned(template: dict[str, Any]) -> None:
    for logical_id, statement in iam_statements(template):
        key = (logical_id, str(statement.get("Sid")))
        for resource in flatten_if(as_list(statement["Resource"])):
            text = sub_text(resource)
            if text is None or "*" not in text:
                continue
            assert key in WILDCARD_RESOURCE_EXCEPTIONS, f"wildcard resource {text!r} in {key}"
            condition_keys = {k for test in statement.get("Condition", {}).values() for k in test}
            assert WILDCARD_RESOURCE_EXCEPTIONS[key] in condition_keys, key


def test_kms_decrypt_only_through_ssm(template: dict[str, Any]) -> None:
    kms = [
        statement
        for _, statement in iam_statements(template)
        if any(action.startswith("kms:") for action in as_list(statement["Action"]))
    ]
    assert kms
    for statement in kms:
        assert as_list(statement["Action"]) == ["kms:Decrypt"]
        via = statement["Condition"]["StringEquals"]["kms:ViaService"]
        assert sub_text(via) == "ssm.${AWS::Region}.amazonaws.com"


def test_function_role_is_explicit_and_has_no_managed_policies(template: dict[str, Any]) -> None:
    # Without an explicit Role, SAM attaches AWSLambdaSQSQueueExecutionRole (every queue) and
    # AWSLambdaBasicExecutionRole (every log group).
    role_id = getatt_target(function_property(template, "Role"))
    assert template["Resources"][role_id]["Type"] == "AWS::IAM::Role"
    _, function = the_function(template)
    assert "Policies" not in function["Properties"]
    for logical_id, role in resources_of(template, "AWS::IAM::Role").items():
        assert "ManagedPolicyArns" not in role["Properties"], logical_id


def test_function_permissions_are_those_the_code_needs_on_this_stack_only(template: dict[str, Any]) -> None:
    role_id = getatt_target(function_property(template, "Role"))
    queue_id = getatt_target(sqs_event(template)["Queue"])
    dlq_id = getatt_target(template["Resources"][queue_id]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"])
    table_id = ref_target(function_property(template, "Environment")["Variables"]["STATE_TABLE_NAME"])
    log_group_id = ref_target(function_property(template, "LoggingConfig")["LogGroup"])
    consume = ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes")  # what Lambda's SQS poller needs
    lanes = set(lane_queue_ids(template).values())
    needed = {(f"sqs:{action}", q) for action in consume for q in lanes}
    # Deferred backlog is re-enqueued to its own lane's queue (SendMessageBatch is authorised as
    # SendMessage); poison goes to the DLQ, which the function never reads.
    needed |= {(action, q) for action in ("sqs:SendMessage", "sqs:GetQueueUrl") for q in lanes}
    needed |= {("sqs:SendMessage", dlq) for dlq in lane_dlq_ids(template).values()}  # poison, to its lane's DLQ
    needed |= {
        (f"dynamodb:{a}", table_id) for a in ("GetItem", "PutItem", "UpdateItem", "BatchGetItem", "BatchWriteItem")
    }
    pending_id = ref_target(function_property(template, "Environment")["Variables"]["PENDING_TABLE_NAME"])
    pool_actions = ("GetItem", "Query", "BatchWriteItem", "UpdateItem", "DeleteItem")
    needed |= {(f"dynamodb:{a}", pending_id) for a in pool_actions}
    needed |= {("logs:CreateLogStream", log_group_id), ("logs:PutLogEvents", log_group_id)}
    granted = grants(template, role_id)
    assert needed <= granted, sorted(needed - granted)
    # Everything granted by GetAtt targets this stack's queue, DLQ, table or log group, and no
    # more than the code needs.
    assert granted <= needed, sorted(granted - needed)
    assert ("sqs:SendMessage", dlq_id) in granted
    assert not any(action == "sqs:ReceiveMessage" and target == dlq_id for action, target in granted)


def test_parameter_reads_limited_to_the_two_parameters(template: dict[str, Any]) -> None:
    role_id = getatt_target(function_property(template, "Role"))
    ssm = [s for lid, s in iam_statements(template) if lid == role_id and "ssm:GetParameter" in as_list(s["Action"])]
    assert len(ssm) == 1
    assert as_list(ssm[0]["Action"]) == ["ssm:GetParameter"]
    arns = {sub_text(resource) for resource in flatten_if(as_list(ssm[0]["Resource"]))}
    prefix = "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter"
    assert arns == {prefix + "${ImshopApiUrlParameterName}", prefix + "${ImshopApiKeyParameterName}"}
    # Names start with "/": the ARN is "...:parameter/name", so no "/" after "parameter".
    for name in ("ImshopApiUrlParameterName", "ImshopApiKeyParameterName"):
        assert parameter(template, name)["AllowedPattern"].startswith(("^/", "^$|^/"))
    # The key's ARN is only granted when a key parameter is given.
    (resource_if,) = [r for r in as_list(ssm[0]["Resource"]) if isinstance(r, dict) and "Fn::If" in r]
    condition, _, when_false = resource_if["Fn::If"]
    assert when_false == {"Ref": "AWS::NoValue"}
    assert template["Conditions"][condition] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ImshopApiKeyParameterName"}, ""]}]
    }


def test_sam_transform_adds_no_iam(template: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The template SAM hands to CloudFormation has only our roles, with no managed policies."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    transform = importlib.import_module("samtranslator.translator.transform").transform
    document = copy.deepcopy(template)
    for resource in document["Resources"].values():  # local paths become S3 locations at package time
        for uri in ("CodeUri", "ContentUri"):
            if uri in resource.get("Properties", {}):
                resource["Properties"][uri] = "s3://bucket/key"
    output: dict[str, Any] = transform(document, {}, None)
    roles = {lid for lid, r in output["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
    assert roles == set(resources_of(template, "AWS::IAM::Role"))
    for logical_id, resource in output["Resources"].items():
        assert "ManagedPolicyArns" not in resource.get("Properties", {}), logical_id
        assert resource["Type"] not in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}, logical_id
    mappings = [r for r in output["Resources"].values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert len(mappings) == 2  # one per lane
    for mapping in mappings:
        assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


# --------------------------------------------------------------------------- dashboard and alarms


def test_dashboard_shows_exactly_the_code_metrics(template: dict[str, Any]) -> None:
    custom = [m for m in dashboard_metrics(template) if m[0] == "ImshopPush"]
    assert {m[1] for m in custom} == METRIC_NAMES
    for metric in custom:  # Powertools adds the service dimension
        assert metric[2:] == ["service", "imshop-push"], metric


def test_dashboard_shows_queue_and_function_health(template: dict[str, Any]) -> None:
    shown = {(m[0], m[1], m[3]) for m in dashboard_metrics(template) if len(m) >= 4}
    queue_id = getatt_target(sqs_event(template)["Queue"])
    dlq_id = getatt_target(template["Resources"][queue_id]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"])
    function_id, _ = the_function(template)
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", f"{queue_id}.QueueName") in shown
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", f"{dlq_id}.QueueName") in shown
    assert ("AWS/SQS", "ApproximateAgeOfOldestMessage", f"{queue_id}.QueueName") in shown
    bulk_id = lane_queue_ids(template)["bulk"]
    assert ("AWS/SQS", "ApproximateAgeOfOldestMessage", f"{bulk_id}.QueueName") in shown
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", f"{bulk_id}.QueueName") in shown
    bulk_dlq_id = lane_dlq_ids(template)["bulk"]
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", f"{bulk_dlq_id}.QueueName") in shown
    for name in ("Errors", "Duration", "Throttles", "ConcurrentExecutions"):
        assert ("AWS/Lambda", name, function_id) in shown, name


def test_dashboard_widgets_do_not_overlap(template: dict[str, Any]) -> None:
    """CloudWatch moves an overlapping widget wherever it fits, so the figures would not stand where they are put."""
    ((_, dashboard),) = resources_of(template, "AWS::CloudWatch::Dashboard").items()
    body = json.loads(render_sub(template, sub_text(dashboard["Properties"]["DashboardBody"]) or ""))
    cells: dict[tuple[int, int], str] = {}
    for widget in body["widgets"]:
        title = widget["properties"]["title"]
        for x in range(widget["x"], widget["x"] + widget["width"]):
            for y in range(widget["y"], widget["y"] + widget["height"]):
                assert (x, y) not in cells, f"{title!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = title


def test_alarm_metrics_are_metrics_the_code_emits(template: dict[str, Any]) -> None:
    used = {
        metric["MetricName"]
        for alarm in resources_of(template, "AWS::CloudWatch::Alarm").values()
        for metric in alarm_metric_stats(alarm)
        if metric["Namespace"] == "ImshopPush"
    }
    assert used
    assert used <= METRIC_NAMES


def test_alarms_cover_dead_letters_backlog_and_errors(template: dict[str, Any]) -> None:
    queue_id = getatt_target(sqs_event(template)["Queue"])
    dlq_id = getatt_target(template["Resources"][queue_id]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"])
    function_id, _ = the_function(template)

    (dlq_alarm,) = [
        a
        for a in alarms_on(template, "AWS/SQS", "ApproximateNumberOfMessagesVisible")
        if getatt_target(dimension(alarm_metric_stats(a)[0], "QueueName"), "QueueName") == dlq_id
    ]
    assert dlq_alarm["Properties"]["Threshold"] == 0
    assert dlq_alarm["Properties"]["ComparisonOperator"] == "GreaterThanThreshold"

    age_alarms = {
        getatt_target(dimension(alarm_metric_stats(a)[0], "QueueName"), "QueueName"): a
        for a in alarms_on(template, "AWS/SQS", "ApproximateAgeOfOldestMessage")
    }
    lanes = lane_queue_ids(template)
    assert set(age_alarms) == set(lanes.values())
    assert age_alarms[queue_id]["Properties"]["Threshold"] == {"Ref": "OldestMessageAgeAlarmSeconds"}
    bulk_threshold = age_alarms[lanes["bulk"]]["Properties"]["Threshold"]
    assert bulk_threshold == {"Ref": "BulkOldestMessageAgeAlarmSeconds"}
    # Transactional tight, bulk loose.
    assert resolve_default(template, bulk_threshold) > resolve_default(
        template, {"Ref": "OldestMessageAgeAlarmSeconds"}
    )
    bulk_dlq = getatt_target(template["Resources"][lanes["bulk"]]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"])
    (bulk_dlq_alarm,) = [
        a
        for a in alarms_on(template, "AWS/SQS", "ApproximateNumberOfMessagesVisible")
        if getatt_target(dimension(alarm_metric_stats(a)[0], "QueueName"), "QueueName") == bulk_dlq
    ]
    assert bulk_dlq_alarm["Properties"]["Threshold"] == 0

    (errors_alarm,) = alarms_on(template, "AWS/Lambda", "Errors")
    assert ref_target(dimension(alarm_metric_stats(errors_alarm)[0], "FunctionName")) == function_id
    assert errors_alarm["Properties"]["Threshold"] == 0

    (topic_id,) = resources_of(template, "AWS::SNS::Topic")
    for alarm in resources_of(template, "AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}]
        assert alarm["Properties"]["TreatMissingData"] == "notBreaching"


def test_imshop_failure_rate_alarm(template: dict[str, Any]) -> None:
    (alarm,) = [
        a
        for a in resources_of(template, "AWS::CloudWatch::Alarm").values()
        if {m["MetricName"] for m in alarm_metric_stats(a)} >= FAILURE_METRICS
    ]
    properties = alarm["Properties"]
    queries = {query["Id"]: query for query in properties["Metrics"]}
    by_name = {q["MetricStat"]["Metric"]["MetricName"]: q for q in queries.values() if "MetricStat" in q}
    assert set(by_name) == FAILURE_METRICS | {"ImshopCallsSent"}
    for query in by_name.values():
        assert query["MetricStat"]["Period"] == 900  # 15 minutes
        assert query["MetricStat"]["Stat"] == "Sum"
        assert query["MetricStat"]["Metric"]["Namespace"] == "ImshopPush"
        service = dimension(query["MetricStat"]["Metric"], "service")
        assert resolve_default(template, service) == "imshop-push"
    assert properties["Threshold"] == 0.2
    assert properties["ComparisonOperator"] == "GreaterThanThreshold"

    # Evaluate the math on sample sums: 3 failures of each kind and 8 sent -> 12 of 20 calls.
    (returned,) = [q["Id"] for q in queries.values() if q.get("ReturnData", True)]
    sample = dict.fromkeys(FAILURE_METRICS, 3.0) | {"ImshopCallsSent": 8.0}
    assert evaluate_metric_math(queries, returned, sample) == pytest.approx(12 / 20)
    assert evaluate_metric_math(queries, returned, sample | {"ImshopCallsSent": 12.0}) == pytest.approx(0.5)
    idle = dict.fromkeys(FAILURE_METRICS, 0.0) | {"ImshopCallsSent": 0.0}
    assert evaluate_metric_math(queries, returned, idle) == 0
    only_failures = dict.fromkeys(FAILURE_METRICS, 0.0) | {"ImshopCallsRateLimited": 2.0, "ImshopCallsSent": 0.0}
    assert evaluate_metric_math(queries, returned, only_failures) == 1


# --------------------------------------------------------------------------- bonus reminder schedule


def test_bonus_reminder_schedule_only_with_both_parameters(template: dict[str, Any]) -> None:
    schedules = resources_of(template, "AWS::Scheduler::Schedule")
    assert len(schedules) == 1
    ((_, schedule),) = schedules.items()
    condition = template["Conditions"][schedule["Condition"]]
    assert condition == {
        "Fn::And": [
            {"Fn::Not": [{"Fn::Equals": [{"Ref": "BonusReminderScheduleExpression"}, ""]}]},
            {"Fn::Not": [{"Fn::Equals": [{"Ref": "BonusReminderPayload"}, ""]}]},
        ]
    }
    assert parameter(template, "BonusReminderScheduleExpression")["Default"] == ""
    assert parameter(template, "BonusReminderPayload")["Default"] == ""
    properties = schedule["Properties"]
    assert properties["FlexibleTimeWindow"] == {"Mode": "OFF"}  # the string, not YAML's false
    target = properties["Target"]
    queue_id = lane_queue_ids(template)["bulk"]  # a reminder is bulk: it never delays an order status
    assert getatt_target(target["Arn"]) == queue_id
    role_id = getatt_target(target["RoleArn"])
    assert template["Resources"][role_id]["Condition"] == schedule["Condition"]
    # A run Scheduler could not deliver after its retries lands in a queue of its own, under an alarm.
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
    dlq_id = getatt_target(target["DeadLetterConfig"]["Arn"])
    assert template["Resources"][dlq_id]["Condition"] == schedule["Condition"]
    assert grants(template, role_id) == {("sqs:SendMessage", queue_id), ("sqs:SendMessage", dlq_id)}
    (alarm,) = [
        a
        for a in alarms_on(template, "AWS/SQS", "ApproximateNumberOfMessagesVisible")
        if getatt_target(dimension(alarm_metric_stats(a)[0], "QueueName"), "QueueName") == dlq_id
    ]
    assert alarm["Condition"] == schedule["Condition"]


def render_schedule_input(template: dict[str, Any], payload: str, scheduled_time: str) -> str:
    """What one delivery of the bonus-reminder schedule sends to the queue: the template's ``!Sub`` with the
    payload parameter, then Scheduler's context attribute for the run."""
    ((_, schedule),) = resources_of(template, "AWS::Scheduler::Schedule").items()
    text, variables = schedule["Properties"]["Target"]["Input"]["Fn::Sub"]
    assert variables == {"Payload": {"Ref": "BonusReminderPayload"}}
    rendered = render_sub(template, text.replace("${Payload}", payload)).replace("AWS::StackName", "imshop-push")
    return rendered.replace("<aws.scheduler.scheduled-time>", scheduled_time)


def test_a_bonus_reminder_run_is_one_notification_however_often_scheduler_delivers_it(
    template: dict[str, Any],
) -> None:
    """EventBridge Scheduler delivers at least once and retries a run under its scheduled time: every delivery
    of one run must carry one idempotency key, and the next run a new one (docs/contract.md#body-forms)."""
    from imshop_push.domain.model import NotificationRequest
    from imshop_push.domain.parsing import parse_message

    payload = '{"userIds": ["79990000001"], "message": {"title": "Бонусы", "summary": "Сгорают в пятницу"}}'

    def delivered(scheduled_time: str, message_id: str) -> NotificationRequest:
        body = render_schedule_input(template, payload, scheduled_time)
        request = parse_message(body, message_id=message_id)
        assert isinstance(request, NotificationRequest)
        return request

    first = delivered("2026-12-04T10:00:00Z", "sqs-message-1")
    retry = delivered("2026-12-04T10:00:00Z", "sqs-message-2")  # the same run, delivered again
    next_run = delivered("2026-12-11T10:00:00Z", "sqs-message-3")
    assert first.idempotency_key == retry.idempotency_key
    assert first.fingerprint == retry.fingerprint  # a duplicate, not "key reused with different content"
    assert next_run.idempotency_key != first.idempotency_key
    assert not first.key_is_message_id
    assert [recipient_id for _, recipient_id in first.recipients] == ["79990000001"]
    assert first.content.title == "Бонусы"


# --------------------------------------------------------------------------- interface


def test_parameter_defaults(template: dict[str, Any]) -> None:
    expected: dict[str, object] = {
        "ImshopApiUrlParameterName": "/imshop-push/api-url",
        "ImshopApiKeyParameterName": "",
        "MaximumConcurrency": 2,
        "BatchSize": 100,
        "MaximumBatchingWindowInSeconds": 1,
        "BulkBatchSize": 1000,
        "RateLimitRequests": 10,
        "RateLimitWindowSeconds": 60,
        "MaxRecipientsPerRequest": 1000,
        "OldestMessageAgeAlarmSeconds": 300,
        "BulkOldestMessageAgeAlarmSeconds": 3600,
        "AlarmEmail": "",
        "LogRetentionInDays": 30,
        "BonusReminderScheduleExpression": "",
        "BonusReminderPayload": "",
    }
    defaults = {name: template["Parameters"][name]["Default"] for name in expected}
    assert defaults == expected
    assert parameter(template, "MaximumConcurrency")["MinValue"] == 2
    assert parameter(template, "MaxRecipientsPerRequest")["MaxValue"] == 1000


def test_outputs(template: dict[str, Any]) -> None:
    assert set(template["Outputs"]) >= {
        "QueueUrl",
        "QueueArn",
        "BulkQueueUrl",
        "BulkQueueArn",
        "DeadLetterQueueUrl",
        "DeadLetterQueueArn",
        "BulkDeadLetterQueueUrl",
        "BulkDeadLetterQueueArn",
        "StateTableName",
        "FunctionName",
        "DashboardName",
    }


def test_every_queue_takes_exactly_the_message_size_the_dispatcher_sizes_its_copies_for(
    template: dict[str, Any],
) -> None:
    """Re-enqueued copies and dead letters are cut to SQS_MAX_MESSAGE_BYTES; a queue that took larger messages
    would hand the dispatcher bodies whose copies no queue could take back."""
    from imshop_push.domain.sqs_batches import SQS_MAX_MESSAGE_BYTES

    queues = resources_of(template, "AWS::SQS::Queue")
    assert queues
    for name, queue in queues.items():
        assert queue["Properties"].get("MaximumMessageSize") == SQS_MAX_MESSAGE_BYTES, name


def test_dashboard_draws_the_time_to_drain_the_waiting_calls(template: dict[str, Any]) -> None:
    """Deferred-call milliseconds summed over a period, / 1000 / period = calls waiting on average (Little's
    law); / limit * window = the seconds the vendor's limit needs to send them."""
    (dashboard,) = resources_of(template, "AWS::CloudWatch::Dashboard").values()
    text = sub_text(dashboard["Properties"]["DashboardBody"])
    assert text is not None
    body = json.loads(render_sub(template, text))
    (widget,) = [w for w in body["widgets"] if "drain" in w.get("properties", {}).get("title", "")]
    rows = widget["properties"]["metrics"]
    ids = {row[-1]["id"]: row for row in rows if isinstance(row[-1], dict) and "id" in row[-1]}
    assert ids["twait"][1] == "TransactionalDeferredCallMilliseconds"
    assert ids["bwait"][1] == "BulkDeferredCallMilliseconds"
    expression = ids["bdrain"][0]["expression"]
    # 600 calls waiting through a 300 s period, at 10 calls per 60 s: one hour to drain.
    period, waited_ms = 300.0, 600 * 300 * 1000.0
    python = expression.replace("FILL(bwait, 0)", str(waited_ms)).replace("PERIOD(bwait)", str(period))
    assert eval(python) == pytest.approx(3600)


# --------------------------------------------------------------------------- samconfig.toml


SAMCONFIG_PATH = TEMPLATE_PATH.with_name("samconfig.toml")


def samconfig_overrides() -> dict[str, dict[str, str]]:
    """Each environment's parameter_overrides, as {environment: {parameter: value}}."""
    import tomllib

    config = tomllib.loads(SAMCONFIG_PATH.read_text())
    environments: dict[str, dict[str, str]] = {}
    for name, environment in config.items():
        if not isinstance(environment, dict) or "deploy" not in environment:
            continue
        overrides = environment["deploy"]["parameters"].get("parameter_overrides", [])
        environments[name] = dict(item.split("=", 1) for item in overrides)
    return environments


def test_every_samconfig_override_is_a_template_parameter_within_its_bounds(template: dict[str, Any]) -> None:
    environments = samconfig_overrides()
    assert set(environments) >= {"default", "prod"}
    for environment, overrides in environments.items():
        for name, value in overrides.items():
            spec = parameter(template, name)
            where = f"[{environment}] {name}={value}"
            if spec["Type"] == "Number":
                assert float(spec.get("MinValue", "-inf")) <= float(value) <= float(spec.get("MaxValue", "inf")), where
            if "AllowedPattern" in spec:
                assert re.fullmatch(spec["AllowedPattern"], value), where
            if "AllowedValues" in spec:
                assert value in [str(v) for v in spec["AllowedValues"]], where


def test_every_samconfig_environment_keeps_the_documented_transactional_latency_bound(
    template: dict[str, Any],
) -> None:
    """The README and the contract bound a transactional request by one rate window + its batching window
    (1 s, the template's default) + call time: an environment may not quietly widen it."""
    documented = int(parameter(template, "MaximumBatchingWindowInSeconds")["Default"])
    assert documented == 1
    for environment, overrides in samconfig_overrides().items():
        window = int(overrides.get("MaximumBatchingWindowInSeconds", documented))
        assert window <= documented, environment


def test_every_samconfig_environment_reads_the_key_the_readme_tells_you_to_store() -> None:
    """The README's deploy step stores the URL and the key under the default environment's names; a key stored
    under a name no environment passes would never be read (every call 401)."""
    readme = (TEMPLATE_PATH.parent / "README.md").read_text()
    stored = set(re.findall(r"aws ssm put-parameter --type SecureString --name (/imshop-push/api-[a-z]+)", readme))
    assert stored == {"/imshop-push/api-url", "/imshop-push/api-key"}
    default = samconfig_overrides()["default"]
    assert {default["ImshopApiUrlParameterName"], default["ImshopApiKeyParameterName"]} == stored
    prod = samconfig_overrides()["prod"]
    assert prod["ImshopApiKeyParameterName"].startswith("/imshop-push-prod/")
