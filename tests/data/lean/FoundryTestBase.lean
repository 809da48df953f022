prelude
/-!
A tiny stand-in for `Init`, for the test-only `lean` built by scripts/lean-stub.sh (a real
Lean 4.35.0 without its library). It declares only what the builtin elaborators need to run the
`syntax` command, plus a few tactic syntaxes whose elaborators are builtin, so that tests can
write `by exact ...` proofs. Written for foundry's tests; not a copy of Lean's `Init`.
-/
set_option genCtorIdx false
set_option genInjectivity false
set_option genSizeOf false
set_option genSizeOfSpec false
universe u v

-- markers that the code generator expects
unsafe axiom lcErased : Type
unsafe axiom lcAny : Type
unsafe axiom lcVoid : Type
unsafe axiom lcProof {α : Prop} : α
unsafe axiom lcCast {α : Sort u} {β : Sort v} (a : α) : β
unsafe axiom lcUnreachable {α : Sort u} : α

inductive Bool : Type | false | true
/-- What the `sorry` term elaborates to. -/
axiom sorryAx (α : Sort u) (synthetic : Bool) : α
inductive Nat | zero | succ (n : Nat)
class OfNat (α : Type u) (_ : Nat) where
  ofNat : α
@[default_instance 100]
instance instOfNatNat (n : Nat) : OfNat Nat n where
  ofNat := n
structure String where
  data : Nat

namespace Lean
inductive Name where
  | anonymous
  | str (pre : Name) (s : String)
  | num (pre : Name) (i : Nat)
/-- Same constructors, in the same order, as the parser description the `syntax` command builds. -/
inductive ParserDescr where
  | const (name : Name)
  | unary (name : Name) (p : ParserDescr)
  | binary (name : Name) (p₁ p₂ : ParserDescr)
  | node (kind : Name) (prec : Nat) (p : ParserDescr)
  | trailingNode (kind : Name) (prec lhsPrec : Nat) (p : ParserDescr)
  | symbol (val : String)
  | nonReservedSymbol (val : String) (includeIdent : Bool)
  | cat (catName : Name) (rbp : Nat)
  | parser (declName : Name)
  | nodeWithAntiquot (name : String) (kind : Name) (p : ParserDescr)
  | sepBy (p : ParserDescr) (sep : String) (psep : ParserDescr) (allowTrailingSep : Bool)
  | sepBy1 (p : ParserDescr) (sep : String) (psep : ParserDescr) (allowTrailingSep : Bool)
  | unicodeSymbol (val asciiVal : String) (preserveForPP : Bool)
namespace Name
def mkStr1 (s₁ : String) : Name := .str .anonymous s₁
def mkStr2 (s₁ s₂ : String) : Name := .str (mkStr1 s₁) s₂
def mkStr3 (s₁ s₂ s₃ : String) : Name := .str (mkStr2 s₁ s₂) s₃
def mkStr4 (s₁ s₂ s₃ s₄ : String) : Name := .str (mkStr3 s₁ s₂ s₃) s₄
def mkStr5 (s₁ s₂ s₃ s₄ s₅ : String) : Name := .str (mkStr4 s₁ s₂ s₃ s₄) s₅
end Name
end Lean

-- tactic syntax; the elaborators of these kinds are builtin
syntax (name := Lean.Parser.Tactic.exact) "exact " term : tactic
syntax (name := Lean.Parser.Tactic.apply) "apply " term : tactic

-- propositions to state test theorems about
inductive MyTrue : Prop
  | intro
inductive MyFalse : Prop
inductive MyAnd (a b : Prop) : Prop
  | intro (left : a) (right : b)
/-- An axiom "from a library", so that tests can check that `#print axioms` exposes its use. -/
axiom cheat : MyFalse
