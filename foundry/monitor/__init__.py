"""Watching a closed loop for collapse: diversity and drift monitors (steering policies later).

Reads candidates and writes the ledger; never imports the loop that feeds it.
"""

from foundry.monitor.monitors import Monitor, Reference, mean_pairwise_distance

__all__ = ["Monitor", "Reference", "mean_pairwise_distance"]
