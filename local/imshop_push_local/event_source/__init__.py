"""The Lambda SQS event source (the poller behind an event source mapping), emulated on loopback.

Integration tests and ``make demo`` must see what a deployed function sees, or they prove little:
real SQS events, receive counts that grow on redelivery, visibility timeouts, redrive to the DLQ
(done by SQS itself, here by moto), partial batch responses, cold starts, crashed executions and
timeouts. Three rooms: ``shapes`` (what Lambda hands the function and how it judges the answer),
``worker`` (one execution environment, a spawned process: its cold start in ``execution_environment``,
its receives and deletes in ``sqs_polling``) and ``supervisor`` (the poller's parent, which starts,
times out and restarts workers, each seen through its ``slot``, and waits for a ``queue_drain``);
``messages`` are what a worker tells its parent.

The process that owns an ``SqsEventSource`` must guard its entry point with
``if __name__ == "__main__":`` (the usual rule for multiprocessing's spawn start method).
"""

from imshop_push_local.event_source.messages import EventSourceConfig, InvocationReport
from imshop_push_local.event_source.shapes import LambdaContext, interpret_response, load_handler, to_event_record
from imshop_push_local.event_source.supervisor import SqsEventSource

__all__ = [
    "EventSourceConfig",
    "InvocationReport",
    "LambdaContext",
    "SqsEventSource",
    "interpret_response",
    "load_handler",
    "to_event_record",
]
