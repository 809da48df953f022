"""The real closed loop collapses without its safeguards and is kept diverse with them.

Two seeded circuits runs (ngspice ground truth, the GNN surrogate) of six generations of 1,000
candidates, each generation proposed from 16 parents. Switched off - parents only from the last
generation, the 16 the surrogate was surest of, no real circuits (none verified, none as
parents), the monitors logging but not acting - the loop narrows onto a few easy designs: the
Vendi score of a generation falls below half of generation 0's within a few generations.
Switched on - the reservoir verified first, parents from every earlier generation, a fifth
(and more, when the monitors ask) real circuits, the monitors acting - the first alarm comes
while the score is still above half of the reference, and the actions it triggers bring the
score back above the alarm level.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from foundry.config import RunConfig
from foundry.loop import Scheduler
from foundry.monitor.generations import ALL_SLICES

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice not installed"),
]

GENERATIONS = 6
ALARM = 0.75


def closed_loop(run_dir: Path, prevention: bool) -> RunConfig:
    loop = {"pool": "accumulate", "real_fraction": 0.2, "max_synthetic_to_real": 8.0}
    if not prevention:
        loop = {
            "pool": "latest",
            "real_fraction": 0.0,
            "max_synthetic_to_real": None,
            "verify_reservoir": False,
        }
    return RunConfig(
        domain="circuits",
        run_dir=run_dir,
        executor="inline",
        isolation="process",
        progress=False,
        deterministic=True,
        seed=3,
        min_train_labels=300,
        retrain_every=1000,
        batch_size=250,
        generations={
            "size": 1000,
            "count": GENERATIONS,
            "parents": 16,
            "parent_selection": "confident",
            "prevention": prevention,
            "vendi_alarm": ALARM,
            **loop,
        },
        budget={"max_candidates": 100_000},
    )


def vendi_ratios(run_dir: Path) -> list[float]:
    db = sqlite3.connect(f"file:{run_dir / 'ledger.sqlite'}?mode=ro", uri=True)
    figures = [json.loads(m) for (m,) in db.execute("SELECT metrics FROM monitor")]
    db.close()
    whole = {
        f["generation"]: f["vendi"] / f["reference_vendi"]
        for f in figures
        if f.get("kind") == "generation" and f["slice"] == ALL_SLICES
    }
    return [whole[g] for g in range(GENERATIONS)]


def events(run_dir: Path, kind: str) -> list[str]:
    db = sqlite3.connect(f"file:{run_dir / 'ledger.sqlite'}?mode=ro", uri=True)
    out = [m for (m,) in db.execute("SELECT message FROM events WHERE kind = ?", (kind,))]
    db.close()
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[bool, Path]:
    out = {}
    for prevention in (False, True):
        run_dir = tmp_path_factory.mktemp("loop") / ("on" if prevention else "off")
        stats = Scheduler(closed_loop(run_dir, prevention)).run()
        assert stats.stop_reason == f"{GENERATIONS} generations made"
        out[prevention] = run_dir
    return out


def test_without_safeguards_the_loop_narrows_to_half_its_diversity(runs):
    off = vendi_ratios(runs[False])
    print("\nVendi / reference, safeguards off:", " ".join(f"{r:.2f}" for r in off))
    assert off[0] == pytest.approx(1.0)
    halved = [g for g, r in enumerate(off) if r <= 0.5]
    assert halved and halved[0] <= GENERATIONS - 1, "the unguarded loop did not collapse"
    assert events(runs[False], "steering") == []  # the monitors only logged
    assert events(runs[False], "collapse")  # ... but they did see it


def test_with_safeguards_the_alarm_comes_before_the_halving_and_diversity_returns(runs):
    on, off = vendi_ratios(runs[True]), vendi_ratios(runs[False])
    print("\nVendi / reference, safeguards on: ", " ".join(f"{r:.2f}" for r in on))
    alarmed = [g for g, r in enumerate(on) if r < ALARM]
    assert alarmed, "the guarded loop never narrowed enough to alarm: nothing was tested"
    first = alarmed[0]
    # detected before the score halves - in this run, and before the unguarded one halves
    assert on[first] > 0.5
    assert first < min(g for g, r in enumerate(off) if r <= 0.5)
    assert any(m.startswith(f"generation {first}:") for m in events(runs[True], "collapse"))
    actions = [m for m in events(runs[True], "steering") if f"generation {first}:" in m]
    assert {m.split(" -> ")[0] for m in actions} >= {"mutation_scale", "real_fraction"}
    # the actions restore it: back above the alarm level, and well above the unguarded loop
    assert on[-1] >= ALARM and max(on[first + 1 :]) >= 0.85
    assert on[-1] > 1.5 * off[-1]
