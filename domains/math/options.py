"""The math domain's options (``[domain_options]``): backends, limits, what a proof may use."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["COQ_REAL_AXIOMS", "DEFAULT_DENIED_COMMANDS", "MathOptions"]

#: Vernacular commands and tactics a Coq script is refused for before it is checked: file
#: and process access (``Load``, ``Cd``, ``Redirect``, ``Declare ML Module``, ``Drop``),
#: soundness switches (their effect also shows in ``Print Assumptions``), and computation
#: the kernel does not check (``native_compute`` trusts the OCaml compiler). Defense in depth
#: and data quality: the checker's own answers decide soundness, the sandbox holds the rest.
DEFAULT_DENIED_COMMANDS: tuple[str, ...] = (
    "Load",
    "Cd",
    "Redirect",
    "Declare ML Module",
    "Drop",
    "Extraction",
    "Unset Guard Checking",
    "Unset Positivity Checking",
    "Unset Universe Checking",
    "Set Type In Type",
    "Unset Bracketing Last Introduction Pattern",
    "native_compute",
    "native_cast_no_check",
    "vm_cast_no_check",
    # a verdict that depends on the machine's speed cannot be replayed
    "Time",
    "Timeout",
    "timeout",
    "Back",
    "BackTo",
    "Reset",
)
#: the axioms Coq's standard real numbers rest on (``Coq.Reals``): every proof about ``R``
#: shows them in ``Print Assumptions``, so they are allowed by default
COQ_REAL_AXIOMS: tuple[str, ...] = (
    "ClassicalDedekindReals.sig_forall_dec",
    "FunctionalExtensionality.functional_extensionality_dep",
)


@dataclass(frozen=True)
class MathOptions:
    """``backend``: the prover generated candidates are written for (``coq`` here; ``lean4``
    where a Lean toolchain is installed); records name their own. ``timeout_s``: wall time of
    one check; ``memory_mb``: the prover's address space. ``coq_allowed_axioms`` /
    ``lean_allowed_axioms``: axioms a proof may rest on (Coq's default: the two its standard real
    numbers rest on, ``COQ_REAL_AXIOMS``; ``[]`` accepts only axiom-free proofs; Lean's: the
    three of its core logic).
    ``lean_command``: how to run Lean (``["lake", "env", "lean"]`` in ``lean_project_dir`` for a
    project with Mathlib). ``allow_native_decide``: accept Lean's compiler-trusting tactics.
    ``max_statement_chars``/``max_proof_chars``: what the rule layer admits.
    ``surrogate_members``: the classifier's ensemble size."""

    backend: str = "coq"
    timeout_s: float = 30.0
    memory_mb: int = 4096
    coq_allowed_axioms: tuple[str, ...] = COQ_REAL_AXIOMS
    coq_denied_commands: tuple[str, ...] = DEFAULT_DENIED_COMMANDS
    lean_command: tuple[str, ...] = ("lean",)
    lean_project_dir: str | None = None
    lean_allowed_axioms: tuple[str, ...] = ("propext", "Classical.choice", "Quot.sound")
    allow_native_decide: bool = False
    max_statement_chars: int = 4000
    max_proof_chars: int = 20_000
    max_imports: int = 32
    surrogate_members: int = 8

    def __post_init__(self) -> None:
        if self.backend not in ("coq", "lean4"):
            raise ValueError(f"backend must be 'coq' or 'lean4', got {self.backend!r}")
        if not self.timeout_s > 0:
            raise ValueError("timeout_s must be > 0")
        if self.memory_mb < 256:
            raise ValueError("memory_mb must be >= 256")
        if not self.lean_command:
            raise ValueError("lean_command must name a program")
        for name in ("max_statement_chars", "max_proof_chars", "max_imports", "surrogate_members"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
