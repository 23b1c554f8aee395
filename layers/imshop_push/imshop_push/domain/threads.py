"""AWS round trips of one invocation, run side by side: the writes after the last IMSHOP call (settle,
re-enqueue, dead letters) and the claims before the first must fit the invocation's reserve even for a
10,000-record batch, and boto3 clients are thread-safe."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

AWS_THREADS = 8


def map_in_threads[T, R](work: Callable[[T], R], items: Sequence[T], *, threads: int = AWS_THREADS) -> list[R]:
    """`work` over `items`, results in order, at most `threads` at a time; inline when there is one item (a
    pool costs more than the one call). The first exception raised by `work` is raised here."""
    if len(items) <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(threads, len(items))) as pool:
        return list(pool.map(work, items))
