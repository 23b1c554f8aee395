"""The names the handler, the local stack and the benchmark import: the pipeline lives in `pipeline.py`."""

from imshop_push.model import Deadline, Disposition, RecordResult
from imshop_push.pipeline import Dispatcher
from imshop_push.ports import BacklogSink, DeadLetterSink, PushApi

__all__ = ["BacklogSink", "DeadLetterSink", "Deadline", "Dispatcher", "Disposition", "PushApi", "RecordResult"]
