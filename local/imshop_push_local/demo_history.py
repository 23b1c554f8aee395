"""`make demo`'s in-app history phase: a few pushes to one user, then IMSHOP's server asking the webhook
(served on loopback as a function URL) for that user's history, marking an entry read, and knocking without
the key."""

from __future__ import annotations

from typing import Any

from imshop_push.domain.history import entry_id
from imshop_push.domain.masking import mask_recipient
from imshop_push_local.function_output import FunctionOutput
from imshop_push_local.stack import LocalStack

USER = "79991112233"


def history_phase(stack: LocalStack, output: FunctionOutput, *, number: int) -> list[str]:
    requests: list[dict[str, Any]] = [
        {
            "userIds": [USER],
            "message": {"title": "Заказ 1042 отправлен", "summary": "Курьер доставит заказ завтра"},
            "deeplink": "shop://orders/1042",
            "idempotencyKey": "order-1042-shipped",
        },
        {
            "userIds": [USER, "79994445566"],
            "installIds": ["iid-demo-1"],
            "message": {"title": "Ваш персональный промокод!", "summary": "Скидка 15% на весь каталог"},
            "idempotencyKey": "promo-autumn",
            "inbox": {"url": "https://shop.example/autumn", "promocode": "AUTUMN15"},
        },
    ]
    print(
        f"\n{number}) in-app history: {len(requests)} pushes to user {mask_recipient(USER)}, then IMSHOP asks for them"
    )
    for request in requests:  # one after the other: the history is newest first
        stack.publish([request])
        if not stack.source.drain(timeout=60):
            return ["the history pushes did not drain within 60 s"]
    url = stack.start_history(output_path=output.path)
    print(f"   webhook         {url}/history  (the real handler behind a function-URL adapter)")
    answer = stack.history("/history", {"userId": USER})
    history = answer.json().get("history", []) if answer.status == 200 else []
    print(f"   POST /history with the Bearer key -> {answer.status}, {len(history)} entries, newest first:")
    for entry in history:
        extras = " ".join(f"{k}={entry[k]}" for k in ("deepLink", "url", "promocode") if k in entry)
        print(f"     - {entry['title']!r} · {entry['text']!r} · updatedOn {entry['updatedOn']} {extras}")
    marked = stack.history("/history/read", {"userId": USER, "ids": [e["id"] for e in history[:1]]})
    print(f"   POST /history/read (newest entry) -> {marked.status} {marked.body}")
    refused = stack.history("/history", {"userId": USER}, key="guess")
    print(f"   POST /history with a wrong key -> {refused.status} (no data: {refused.body == ''})")
    problems = []
    if [e["id"] for e in history] != [entry_id("promo-autumn"), entry_id("order-1042-shipped")]:
        problems.append("the history is not the two pushes, newest first")
    if history and history[0].get("promocode") != "AUTUMN15":
        problems.append("the promocode of the inbox extension is missing from the history")
    if any("inbox" in call.body for call in stack.sandbox.calls):
        problems.append("the inbox extension was forwarded to IMSHOP")
    if marked.status != 200 or refused.status != 401 or refused.body:
        problems.append("read marks or the key check misbehaved")
    return problems
