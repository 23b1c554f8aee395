"""What the function printed during a demo run, kept in a file and read back as a summary.

Powertools writes each invocation's metrics to stdout as one Embedded Metric Format (EMF) JSON
line, and the logger writes JSON lines too; in Lambda, CloudWatch turns them into metrics and log
events. Locally they go to a file, so that the demo's page stays readable, and are summed here.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path


class FunctionOutput:
    """The file the event source's workers print to, read phase by phase."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()
        self._offset = 0

    def metrics_since_last_read(self) -> tuple[Counter[str], int]:
        """Sum of every EMF metric printed since the previous call, and the other lines' count."""
        with self.path.open("rb") as file:
            file.seek(self._offset)
            data = file.read()
        self._offset += len(data)
        totals: Counter[str] = Counter()
        other = 0
        for line in data.decode("utf-8", errors="replace").splitlines():
            metrics = _emf_metrics(line)
            if metrics is None:
                other += bool(line.strip())
            else:
                totals.update(metrics)
        return totals, other


def _emf_metrics(line: str) -> Counter[str] | None:
    try:
        document = json.loads(line)
    except ValueError:
        return None
    if not isinstance(document, dict) or "_aws" not in document:
        return None
    totals: Counter[str] = Counter()
    for directive in document["_aws"].get("CloudWatchMetrics", []):
        for metric in directive.get("Metrics", []):
            name = metric.get("Name")
            values = document.get(name, [])
            totals[name] += sum(values) if isinstance(values, list) else values
    return totals
