"""foundry: verified scientific training data from domain plugins, certified two-tier screening."""

from foundry.contract import (
    Candidate,
    Domain,
    GroundTruth,
    PluginError,
    Predictions,
    PropertySpec,
    SetupError,
    SimulationFailed,
    Surrogate,
    Verdict,
)

__version__ = "0.1.0"

__all__ = [
    "Candidate",
    "Domain",
    "GroundTruth",
    "PluginError",
    "Predictions",
    "PropertySpec",
    "SetupError",
    "SimulationFailed",
    "Surrogate",
    "Verdict",
    "__version__",
]
