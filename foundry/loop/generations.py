"""Generations: the closed loop's outer cycle.

Generation 0 comes from the domain's generator. When a generation has been made and every
item of it decided, it is closed: its verified examples are measured against the reference
(:mod:`foundry.monitor.generations`), the collapse policy may turn the loop's knobs, and the
parents of the next generation are chosen - verified examples of earlier generations
(``accumulate``) or of the last one (``latest``), mixed with the domain's real reservoir at
``real_fraction`` and, per slice, at most ``max_synthetic_to_real`` synthetic parents per
real one. The next generation is then proposed from those parents (``Domain.propose``).

Each generation is its own regime (the parents and the mutation step are part of the
generator's configuration hash): the surrogate releases in it only on audits drawn in it.
Everything here is a function of the seed and the ledger's rows, and the state is committed
with the run's progress, so a resumed run makes exactly the generations the uninterrupted
one would have.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from foundry.config import GenerationSettings
from foundry.contract import Candidate, Domain, PluginError, canonical_json, example_id
from foundry.ledger import Ledger
from foundry.loop.rows import candidate_of_row
from foundry.monitor.generations import (
    CollapsePolicy,
    PolicyParams,
    Reference,
    make_reference,
    measure_generation,
)

#: random-number stream of parent selection (the generator and the audits use 0 and 1)
PARENT_STREAM = 2
#: candidates of the pool the novelty selection looks at, at most
NOVELTY_POOL = 4096
#: children proposed per one kept by the novelty search
NOVELTY_OVERSAMPLE = 4

#: (candidates) -> property values by name, for the property-distribution monitors
PropertyReader = Callable[[Sequence[Candidate]], Mapping[str, np.ndarray]]


@dataclass
class GenerationState:
    """What a resumed run needs to go on making the same generations."""

    generation: int = 0
    #: candidates made in this generation so far
    produced: int = 0
    #: ids of this generation's parents (empty in generation 0)
    parents: list[str] = field(default_factory=list)
    mutation_scale: float = 1.0
    real_fraction: float = 0.2
    novelty_fraction: float = 0.0
    #: 1.0: this generation's parents are real ones only (a reset)
    from_reservoir: float = 0.0
    #: the reservoir's verification batch: "due" (first), "sent" (the batch just made), "done"
    reservoir: str = "due"
    reference: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GenerationState:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class Generations:
    """Makes the candidates of the current generation and closes it when it is decided."""

    def __init__(
        self, domain: Domain, settings: GenerationSettings, ledger: Ledger, seed: int
    ) -> None:
        if not domain.proposes():
            raise ValueError(
                f"domain {domain.name!r} cannot run generations: it does not implement propose()"
            )
        self.domain = domain
        self.settings = settings
        self.ledger = ledger
        self.seed = seed
        self.state = GenerationState(
            real_fraction=settings.real_fraction,
            novelty_fraction=settings.novelty_fraction,
            reservoir="due" if settings.verify_reservoir else "done",
        )
        self.policy = CollapsePolicy(
            PolicyParams(
                prevention=settings.prevention,
                vendi_alarm=settings.vendi_alarm,
                vendi_reset=settings.vendi_reset,
                mmd_alarm=settings.mmd_alarm,
                max_mutation_scale=settings.max_mutation_scale,
                max_real_fraction=settings.max_real_fraction,
                acceptance_band=settings.acceptance_band,
            )
        )
        self._reservoir: dict[str, Candidate] | None = None
        self._parents: list[Candidate] | None = None

    # -- what the intake asks ---------------------------------------------------------------
    @property
    def generation(self) -> int:
        return self.state.generation

    def remaining(self) -> int:
        """Candidates still to make in this generation."""
        return max(int(self.settings.size or 0) - self.state.produced, 0)

    def finished(self) -> bool:
        """Whether the configured number of generations is done."""
        count = self.settings.count
        return count is not None and self.state.generation >= count

    def context(self) -> dict[str, Any]:
        """What makes this generation's regime differ from the others'."""
        if self.state.reservoir == "sent":
            return {"generation": 0, "reservoir": True}
        parents = hashlib.blake2b("\n".join(self.state.parents).encode(), digest_size=8).hexdigest()
        return {
            "generation": self.state.generation,
            "parents": parents,
            "mutation_scale": self.state.mutation_scale,
        }

    def candidates(
        self, n: int, rng: np.random.Generator, steering: Mapping[str, float]
    ) -> list[Candidate]:
        """Up to ``n`` candidates of this generation, labelled with it - first, once, the
        real reservoir (source ``real``, a regime of its own: routed by no certificate of a
        generation, and not counted in one)."""
        if self.state.reservoir == "due":
            self.state.reservoir = "sent"
            real = [
                Candidate(payload=c.payload, source="real", id=c.id)
                for c in self._reservoir_by_id().values()
            ]
            if real:
                return real
        self.state.reservoir = "done"
        n = min(n, self.remaining())
        parents = self._parent_candidates()
        if not parents:
            batch = self.domain.generate(n, rng, steering)
        else:
            n_novel = round(n * self.state.novelty_fraction)
            batch = self.domain.propose(
                n - n_novel, rng, steering, parents, self.state.mutation_scale
            )
            if n_novel and isinstance(batch, list):
                batch += self._novelty_search(n_novel, rng, steering, parents)
            known = {p.id for p in parents}
            for cand in batch if isinstance(batch, list) else []:
                stray = [p for p in cand.parent_ids if p not in known]
                if stray:
                    raise PluginError(f"propose() named parents it was not given: {stray[:3]}")
        if isinstance(batch, list):
            if n and not batch:
                raise PluginError("the domain made no candidates for this generation")
            for cand in batch:
                if isinstance(cand, Candidate):
                    cand.generation = self.state.generation
            self.state.produced += len(batch)
        return batch

    def _novelty_search(
        self,
        n: int,
        rng: np.random.Generator,
        steering: Mapping[str, float],
        parents: list[Candidate],
    ) -> list[Candidate]:
        """Diversity injection: propose ``NOVELTY_OVERSAMPLE`` times as many children and keep
        the ``n`` farthest (greedily, in standardised features) from the buffer - this
        generation's parents and what is kept already. They are verified like any other."""
        pool = self.domain.propose(
            n * NOVELTY_OVERSAMPLE, rng, steering, parents, self.state.mutation_scale
        )
        if not isinstance(pool, list) or len(pool) <= n:
            return pool if isinstance(pool, list) else []
        picks = farthest_points(self._features([*parents, *pool]), len(parents), n)
        return [pool[i] for i in picks]

    # -- closing a generation ---------------------------------------------------------------
    def close(
        self, read_properties: PropertyReader | None, steering: Mapping[str, float]
    ) -> tuple[list[tuple[str, str, str]], dict[str, float]]:
        """Measure the finished generation, let the policy act, choose the next parents.
        Returns the events (level, kind, message) to record and the steering knobs to change
        (a curriculum's step); the monitor rows are written."""
        g = self.state.generation
        rows = self._rows(g)
        accepted = [r for r in rows if r["decision"] == "accepted"]
        decided = sum(r["decision"] in ("accepted", "rejected") for r in rows)
        cands = [candidate_of_row(r) for r in accepted]
        events: list[tuple[str, str, str]] = []
        x = self._features(cands)
        slices = np.array([r["slice"] or "all" for r in accepted], dtype=object)
        props = dict(read_properties(cands)) if read_properties is not None and cands else {}
        if self.state.reference is None and len(x) >= 2:
            real = list(self._reservoir_by_id().values())
            real_x = self._features(real) if real else None
            real_props = dict(read_properties(real)) if read_properties is not None and real else {}
            self.state.reference = make_reference(
                x, slices, real_x, real_props, self.seed
            ).as_dict()
        figures: list[dict] = []
        if self.state.reference is not None:
            ref = Reference.from_dict(self.state.reference)
            audits = [
                (r["slice"] or "all", (r["p_pass"] >= 0.5) != bool(r["gt_passed"]))
                for r in rows
                if r["audit"] and r["gt_passed"] is not None and r["p_pass"] is not None
            ]
            figures = measure_generation(
                g, x, slices, props, len(accepted), decided, self._parent_slices(), ref,
                self.seed, audits,
            )  # fmt: skip
        n_seen = int(self.ledger.db.execute("SELECT COUNT(*) FROM examples").fetchone()[0])
        for row in figures:
            self.ledger.add_monitor(n_seen, row)
        knobs = {
            "mutation_scale": self.state.mutation_scale,
            "real_fraction": self.state.real_fraction,
            "novelty_fraction": self.state.novelty_fraction,
            "from_reservoir": self.state.from_reservoir,
        }
        knob = self.domain.difficulty_knob
        difficulty = (knob, float(steering.get(knob.name, knob.low))) if knob is not None else None
        decision = self.policy.decide(figures, knobs, difficulty)
        for alarm in decision.alarms:
            events.append((alarm.level, "collapse", alarm.message))
        steering_changes: dict[str, float] = {}
        for action in decision.actions:
            if action.knob in knobs:
                setattr(self.state, action.knob, float(action.value))
            else:
                steering_changes[action.knob] = float(action.value)
            events.append(
                ("info", "steering", f"{action.knob} -> {action.value:g}: {action.reason}")
            )
        self.state.generation = g + 1
        self.state.produced = 0
        self.state.parents = self._choose_parents(g)
        self._parents = None
        events.append(
            ("info", "generation", f"generation {g} closed: {len(accepted)} accepted of "
             f"{len(rows)}; generation {g + 1} from {len(self.state.parents)} parents "
             f"({self._real_count()} real), mutation x{self.state.mutation_scale:g}")
        )  # fmt: skip
        return events, steering_changes

    def _rows(self, generation: int) -> list[Any]:
        return self.ledger.db.execute(
            "SELECT seq, content_id, payload, source, generation, parent_ids, slice, decision, "
            "p_pass, audit, gt_passed FROM examples WHERE generation = ? AND source != 'real' "
            "ORDER BY seq",
            (generation,),
        ).fetchall()

    def _features(self, cands: Sequence[Candidate]) -> np.ndarray:
        if not cands:
            return np.zeros((0, 0))
        x = np.asarray(self.domain.featurize(cands), dtype=float)
        if x.ndim != 2 or len(x) != len(cands) or not np.all(np.isfinite(x)):
            raise PluginError("featurize() returned a bad array for the generation monitors")
        return x

    # -- parents ----------------------------------------------------------------------------
    def _choose_parents(self, closed: int) -> list[str]:
        """The next generation's parent ids: real ones at ``real_fraction`` (all of them after
        a reset), synthetic ones by the selection rule, novelty picks, the per-slice bound."""
        s, st = self.settings, self.state
        rng = np.random.default_rng(
            np.random.SeedSequence(self.seed, spawn_key=(PARENT_STREAM, closed))
        )
        real = self._real_parents()
        n_real = s.parents if st.from_reservoir else math.ceil(s.parents * st.real_fraction - 1e-9)
        n_real = min(n_real, s.parents) if real else 0
        low = 0 if s.pool == "accumulate" else closed
        pool = self.ledger.db.execute(
            "SELECT content_id, payload, source, generation, parent_ids, slice, p_pass, seq "
            "FROM examples WHERE decision = "
            "'accepted' AND source != 'real' AND generation BETWEEN ? AND ? ORDER BY seq",
            (low, closed),
        ).fetchall()
        n_syn = min(s.parents - n_real, len(pool))
        chosen: list[Any] = []
        if n_syn:
            n_novel = round(n_syn * st.novelty_fraction)
            if s.parent_selection == "confident":
                ranked = sorted(
                    pool,
                    key=lambda r: (-(r["p_pass"] if r["p_pass"] is not None else 0.5), r["seq"]),
                )
                chosen = ranked[: n_syn - n_novel]
            else:
                idx = rng.choice(len(pool), n_syn - n_novel, replace=False)
                chosen = [pool[i] for i in sorted(idx.tolist())]
            if n_novel:
                chosen += self._novel(pool, chosen, n_novel, rng)
        ids = [r["content_id"] for r in chosen]
        real_ids: list[str] = []
        if n_real:
            idx = rng.choice(len(real), n_real, replace=n_real > len(real))
            real_ids = [real[i].id for i in idx.tolist()]
        real_ids += self._fill_real_by_slice(chosen, real_ids, real, rng)
        return ids + real_ids

    def _novel(
        self, pool: list[Any], chosen: list[Any], k: int, rng: np.random.Generator
    ) -> list[Any]:
        """Diversity injection: ``k`` pool members, each the farthest (in standardised
        features) from everything chosen so far."""
        taken = {r["content_id"] for r in chosen}
        rest = [r for r in pool if r["content_id"] not in taken]
        if len(rest) > NOVELTY_POOL:
            rest = [rest[i] for i in sorted(rng.choice(len(rest), NOVELTY_POOL, replace=False))]
        if not rest:
            return []
        x = self._features([candidate_of_row(r) for r in [*chosen, *rest]])
        return [rest[i] for i in farthest_points(x, len(chosen), k)]

    def _fill_real_by_slice(
        self,
        chosen: list[Any],
        real_ids: list[str],
        real: list[Candidate],
        rng: np.random.Generator,
    ) -> list[str]:
        """Real parents added so that no slice has more than ``max_synthetic_to_real``
        synthetic parents per real one (where the reservoir has that slice)."""
        bound = self.settings.max_synthetic_to_real
        if bound is None or not real:
            return []
        by_id = self._reservoir_by_id()
        real_slices = [self.domain.slice_of(by_id[i]) for i in real_ids]
        extra: list[str] = []
        syn: dict[str, int] = {}
        for r in chosen:
            syn[r["slice"] or "all"] = syn.get(r["slice"] or "all", 0) + 1
        for name, count in sorted(syn.items()):
            have = real_slices.count(name)
            need = int(np.ceil(count / bound)) - have
            options = [c.id for c in real if self.domain.slice_of(c) == name]
            if need > 0 and options:
                extra += [options[i] for i in rng.choice(len(options), need).tolist()]
        return extra

    def _real_parents(self) -> list[Candidate]:
        """The reservoir's examples a generation may start from: those the ground truth
        accepted, where the run verified the reservoir (a real example that fails this run's
        ground truth is no verified parent); all of them where it did not."""
        real = list(self._reservoir_by_id().values())
        verdicts = dict(
            self.ledger.db.execute(
                "SELECT content_id, decision FROM examples WHERE source = 'real'"
            ).fetchall()
        )
        if not verdicts:
            return real
        return [c for c in real if verdicts.get(c.id) == "accepted"]

    def _parent_slices(self) -> list[tuple[str, bool]]:
        """Each parent of this generation: (its slice, whether it is real)."""
        real = self._reservoir_by_id()
        out = []
        for cand in self._parent_candidates():
            try:
                name = self.domain.slice_of(cand)
            except Exception:
                name = "?"
            out.append((str(name), cand.id in real))
        return out

    def _real_count(self) -> int:
        real = self._reservoir_by_id()
        return sum(1 for pid in self.state.parents if pid in real)

    def _reservoir_by_id(self) -> dict[str, Candidate]:
        if self._reservoir is None:
            out = {}
            for cand in self.domain.reservoir():
                cand.id = cand.id or example_id(
                    self.domain.name, cand.payload, canonical_json(cand.payload),
                    None if type(self.domain).identity is Domain.identity else self.domain.identity,
                )  # fmt: skip
                out[cand.id] = cand
            self._reservoir = out
        return self._reservoir

    def _parent_candidates(self) -> list[Candidate]:
        """This generation's parents as candidates (payloads from the ledger or reservoir)."""
        if self._parents is None:
            real = self._reservoir_by_id()
            synthetic = [pid for pid in self.state.parents if pid not in real]
            rows = {}
            for start in range(0, len(synthetic), 500):
                part = synthetic[start : start + 500]
                marks = ",".join("?" * len(part))
                for r in self.ledger.db.execute(
                    "SELECT seq, content_id, payload, source, generation, parent_ids, slice, "
                    f"decision, p_pass FROM examples WHERE content_id IN ({marks})",
                    part,
                ):
                    rows[r["content_id"]] = r
            self._parents = [
                real[pid] if pid in real else candidate_of_row(rows[pid])
                for pid in self.state.parents
                if pid in real or pid in rows
            ]
        return self._parents


def farthest_points(x: np.ndarray, n_taken: int, k: int) -> list[int]:
    """Greedy farthest-point picks: ``k`` indices into ``x[n_taken:]``, each the farthest
    (in features standardised over ``x``) from the first ``n_taken`` rows and from the picks
    before it."""
    std = x.std(axis=0)
    z = x / np.where(std > 0, std, 1.0)
    taken, rest = z[:n_taken], z[n_taken:]
    dist = (
        np.min(np.linalg.norm(rest[:, None] - taken[None], axis=2), axis=1)
        if len(taken)
        else np.full(len(rest), np.inf)
    )
    picks: list[int] = []
    for _ in range(min(k, len(rest))):
        i = int(np.argmax(dist))
        picks.append(i)
        dist = np.minimum(dist, np.linalg.norm(rest - rest[i], axis=1))
        dist[i] = -np.inf
    return picks
