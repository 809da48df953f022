"""Durable state of a run: the SQLite ledger (``store``) and what is read out of it (``export``).

Nothing here knows the loop that writes it; the loop depends on the ledger, never the reverse.
"""

from foundry.ledger.export import FORMATS, export_run, iter_export_rows, summarize
from foundry.ledger.store import (
    COLUMN_NAMES,
    DECISIONS,
    EXAMPLE_COLUMNS,
    SCHEMA_VERSION,
    GroundTruthUpdate,
    Ledger,
    LedgerError,
    RunLock,
)

__all__ = [
    "COLUMN_NAMES",
    "DECISIONS",
    "EXAMPLE_COLUMNS",
    "FORMATS",
    "SCHEMA_VERSION",
    "GroundTruthUpdate",
    "Ledger",
    "LedgerError",
    "RunLock",
    "export_run",
    "iter_export_rows",
    "summarize",
]
