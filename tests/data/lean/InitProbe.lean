-- Appended after a proof by tests/test_math_lean.py: ends the `by` block (`universe` is not a
-- tactic) and declares an `@[init]` action that fails with a recognisable message, so that a
-- frontend importing this module shows whether imported initializers run.
universe u v
set_option genCtorIdx false
set_option genInjectivity false
set_option genSizeOf false
set_option genSizeOfSpec false
set_option bootstrap.inductiveCheckResultingUniverse false in
inductive PUnit : Sort u | unit
def Function.const {α : Sort u} (β : Sort v) (a : α) : β → α := fun _ => a
abbrev Unit : Type := PUnit
inductive EStateM.Result (ε σ α : Type u) where
  | ok : α → σ → EStateM.Result ε σ α
  | error : ε → σ → EStateM.Result ε σ α
def EStateM (ε σ α : Type u) : Type u := σ → EStateM.Result ε σ α
def IO.RealWorld : Type := Unit
-- the runtime reads constructor 18 (one string field) as `IO.Error.userError`
inductive IO.Error : Type
  | c0 | c1 | c2 | c3 | c4 | c5 | c6 | c7 | c8 | c9 | c10 | c11 | c12 | c13 | c14 | c15 | c16 | c17
  | userError (msg : String)
def EIO (ε : Type) : Type → Type := EStateM ε IO.RealWorld
def IO : Type → Type := EIO IO.Error
@[init] def foundryProbe : IO Unit :=
  fun w => EStateM.Result.error (IO.Error.userError "CANDIDATE INITIALIZER RAN") w
