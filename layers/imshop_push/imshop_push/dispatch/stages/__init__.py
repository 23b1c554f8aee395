"""The stages of the pipeline, in the order `pipeline.py` lists them. Each moves the fate of the batch's
records by the transitions of `fate.Track`; none calls another."""

from __future__ import annotations

from typing import Protocol

from imshop_push.domain.batch import Batch


class Stage(Protocol):
    def __call__(self, batch: Batch) -> None: ...
