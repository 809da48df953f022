"""The control plane: one thin loop composed of parts that can be read and tested alone.

``intake`` produces a batch, ``book`` holds the surrogate versions and their certificates,
``router`` routes (pure), ``rows`` builds ledger rows, ``dispatch`` feeds the ground truth,
``trainer`` fits new versions, and ``scheduler`` runs them to the budget.
"""

from foundry.loop.book import Certificate, SurrogateSlot
from foundry.loop.dispatch import MAX_CHUNK_SIZE
from foundry.loop.intake import INVALID_INPUT
from foundry.loop.router import Routes, route_batch
from foundry.loop.scheduler import Scheduler
from foundry.loop.stats import ProgressCallback, RunStats, SteeringPolicy

__all__ = [
    "INVALID_INPUT",
    "MAX_CHUNK_SIZE",
    "Certificate",
    "ProgressCallback",
    "Routes",
    "RunStats",
    "Scheduler",
    "SteeringPolicy",
    "SurrogateSlot",
    "route_batch",
]
