"""The names the handler, the local stack and the benchmark import: the pipeline lives in `pipeline.py`."""

from imshop_push.dispatch.pipeline import Dispatcher
from imshop_push.dispatch.ports import BacklogSink, DeadLetterSink, PushApi
from imshop_push.domain.model import Deadline, Disposition, RecordResult

__all__ = ["BacklogSink", "DeadLetterSink", "Deadline", "Dispatcher", "Disposition", "PushApi", "RecordResult"]
