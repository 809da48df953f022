"""Task families of the code domain: a prompt, several correct bodies, and inputs to test on.

A family is one small programming problem. It carries the signature and docstring (the
prompt), one or more correct bodies as source text (distinct texts, so that correct programs
are not all alike), a Python reference callable that computes the expected outputs of the
tests (it must agree with the bodies; ``tests/test_code_generator.py`` checks that on every
edge case and on samples), a sampler of ordinary inputs and a list of edge-case inputs.

Inputs and outputs are plain data only (None, bool, int, finite float, str, bytes, list,
tuple, dict, non-empty set), so that tests are literal ``assert`` statements. Samplers draw
only from the given RNG and never iterate over sets of strings, so tests do not depend on
the hash seed. Bodies import only from the standard library and do no I/O.
"""

from __future__ import annotations

import collections
import heapq
import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["FAMILIES", "GROUPS", "Family", "family_by_name"]

#: the four groups; steering weighs them with ``group_<name>``
GROUPS: tuple[str, ...] = ("arithmetic", "strings", "lists", "dicts")

Args = tuple[Any, ...]


@dataclass(frozen=True, eq=False)
class Family:
    """One programming problem with its correct bodies and the inputs to test them on."""

    name: str
    group: str
    difficulty: int
    params: str
    returns: str
    summary: str
    example: Args
    implementations: tuple[str, ...]
    reference: Callable[..., Any]
    draw: Callable[[np.random.Generator], Args]
    edge_cases: tuple[Args, ...]
    #: float results: tests compare with ``abs(got - expected) < 1e-9``
    approx: bool = False

    def __post_init__(self) -> None:
        if self.group not in GROUPS:
            raise ValueError(f"{self.name}: unknown group {self.group!r}")
        if not 1 <= self.difficulty <= 5:
            raise ValueError(f"{self.name}: difficulty {self.difficulty} outside 1..5")
        if not self.implementations:
            raise ValueError(f"{self.name}: a family needs at least one implementation")
        bodies = tuple(textwrap.dedent(body).strip("\n") + "\n" for body in self.implementations)
        object.__setattr__(self, "implementations", bodies)

    @property
    def signature(self) -> str:
        return f"def {self.name}({self.params}) -> {self.returns}:"

    @property
    def prompt(self) -> str:
        """Signature and docstring with one worked example, HumanEval style."""
        lines = textwrap.wrap(self.summary, width=88)
        call = ", ".join(repr(a) for a in self.example)
        doc = "\n".join(f"    {line}" for line in lines)
        return (
            f'{self.signature}\n    """{doc.lstrip()}\n'
            f"    >>> {self.name}({call})\n    {self.expected(self.example)!r}\n"
            '    """\n'
        )

    def expected(self, args: Args) -> Any:
        """The reference output; the reference never sees the caller's objects."""
        return self.reference(*_copy(args))

    def sample_inputs(self, rng: np.random.Generator, n: int) -> list[Args]:
        return [self.draw(rng) for _ in range(n)]


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_copy(v) for v in value)
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, set):
        return set(value)
    return value


# -- sampling helpers ------------------------------------------------------------------------
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
#: non-ASCII letters whose case mapping is one character to one (no 'İ', no ligatures)
_ACCENTED = "éüøñåç"


def _int(rng: np.random.Generator, lo: int, hi: int) -> int:
    return int(rng.integers(lo, hi + 1))


def _pick(rng: np.random.Generator, items: str) -> str:
    return items[int(rng.integers(len(items)))]


def _ints(rng: np.random.Generator, lo: int, hi: int, min_len: int = 0, max_len: int = 8) -> list:
    return [_int(rng, lo, hi) for _ in range(_int(rng, min_len, max_len))]


def _word(rng: np.random.Generator, alphabet: str = _LETTERS, lo: int = 1, hi: int = 6) -> str:
    return "".join(_pick(rng, alphabet) for _ in range(_int(rng, lo, hi)))


def _sentence(rng: np.random.Generator, max_words: int = 6) -> str:
    """Words of mixed case with a few accents, separated by irregular spaces."""
    words = []
    for _ in range(_int(rng, 0, max_words)):
        word = _word(rng, _LETTERS + _ACCENTED[:2], 1, 6)
        if rng.random() < 0.3:
            word = word.capitalize()
        if rng.random() < 0.1:
            word = word.upper()
        words.append(word)
    text = "".join(w + " " * _int(rng, 1, 2) for w in words).rstrip()
    return " " * _int(rng, 0, 1) + text + " " * _int(rng, 0, 1)


def _distinct_sorted(rng: np.random.Generator, lo: int, hi: int, max_len: int) -> list[int]:
    size = _int(rng, 0, max_len)
    return sorted(int(v) for v in rng.choice(np.arange(lo, hi + 1), size=size, replace=False))


# -- arithmetic and number theory -------------------------------------------------------------
def _sum_multiples(n: int) -> int:
    return sum(k for k in range(n) if k % 3 == 0 or k % 5 == 0)


def _fibonacci(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def _is_prime(n: int) -> bool:
    return n > 1 and all(n % d for d in range(2, math.isqrt(n) + 1))


def _draw_is_prime(rng: np.random.Generator) -> Args:
    n = _int(rng, -10, 2000)
    if rng.random() < 0.5:  # primes are rare: offer them half of the time
        while not _is_prime(n):
            n = _int(rng, 2, 2000)
    return (n,)


def _digit_sum(n: int) -> int:
    return sum(int(c) for c in str(abs(n)))


def _count_divisors(n: int) -> int:
    return sum(1 for d in range(1, n + 1) if n % d == 0)


def _collatz_steps(n: int) -> int:
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


def _prime_factors(n: int) -> list[int]:
    out, d = [], 2
    while n > 1:
        while n % d == 0:
            out.append(d)
            n //= d
        d += 1
    return out


_ROMAN = (
    (1000, "M"),
    (900, "CM"),
    (500, "D"),
    (400, "CD"),
    (100, "C"),
    (90, "XC"),
    (50, "L"),
    (40, "XL"),
    (10, "X"),
    (9, "IX"),
    (5, "V"),
    (4, "IV"),
    (1, "I"),
)


def _int_to_roman(n: int) -> str:
    out = ""
    for value, symbol in _ROMAN:
        count, n = divmod(n, value)
        out += symbol * count
    return out


def _min_coins(coins: list[int], amount: int) -> int:
    inf = amount + 1
    best = [0] + [inf] * amount
    for total in range(1, amount + 1):
        best[total] = min([best[total - c] + 1 for c in coins if c <= total] + [inf])
    return -1 if best[amount] >= inf else best[amount]


def _draw_min_coins(rng: np.random.Generator) -> Args:
    size = _int(rng, 1, 4)
    coins = [int(c) for c in rng.choice(np.arange(1, 13), size=size, replace=False)]
    return (coins, _int(rng, 0, 40))


def _count_partitions(n: int) -> int:
    ways = [1] + [0] * n
    for part in range(1, n + 1):
        for total in range(part, n + 1):
            ways[total] += ways[total - part]
    return ways[n]


_ARITHMETIC = (
    Family(
        name="sum_multiples",
        group="arithmetic",
        difficulty=1,
        params="n: int",
        returns="int",
        summary="Return the sum of the natural numbers below n that are multiples of 3 or 5.",
        example=(10,),
        implementations=(
            """
            total = 0
            for k in range(n):
                if k % 3 == 0 or k % 5 == 0:
                    total += k
            return total
            """,
            """
            return sum(k for k in range(1, n) if k % 3 == 0 or k % 5 == 0)
            """,
            """
            def below(step):
                m = (n - 1) // step
                return step * m * (m + 1) // 2

            if n <= 0:
                return 0
            return below(3) + below(5) - below(15)
            """,
        ),
        reference=_sum_multiples,
        draw=lambda rng: (_int(rng, -5, 300),),
        edge_cases=((0,), (1,), (3,), (4,), (5,), (6,), (16,), (-7,)),
    ),
    Family(
        name="factorial",
        group="arithmetic",
        difficulty=1,
        params="n: int",
        returns="int",
        summary="Return n! for a non-negative integer n (0! is 1).",
        example=(5,),
        implementations=(
            """
            result = 1
            for k in range(2, n + 1):
                result *= k
            return result
            """,
            """
            import math
            return math.prod(range(1, n + 1))
            """,
            """
            if n <= 1:
                return 1
            return n * factorial(n - 1)
            """,
        ),
        reference=math.factorial,
        draw=lambda rng: (_int(rng, 0, 20),),
        edge_cases=((0,), (1,), (2,), (3,), (12,)),
    ),
    Family(
        name="digit_sum",
        group="arithmetic",
        difficulty=1,
        params="n: int",
        returns="int",
        summary="Return the sum of the decimal digits of n; the sign is ignored.",
        example=(-472,),
        implementations=(
            """
            return sum(int(c) for c in str(abs(n)))
            """,
            """
            n = abs(n)
            total = 0
            while n:
                n, r = divmod(n, 10)
                total += r
            return total
            """,
            """
            n = abs(n)
            total = 0
            while n > 0:
                total += n % 10
                n //= 10
            return total
            """,
        ),
        reference=_digit_sum,
        draw=lambda rng: (_int(rng, -(10**6), 10**6),),
        edge_cases=((0,), (7,), (-7,), (10,), (99,), (-1234,), (1000000,)),
    ),
    Family(
        name="fibonacci",
        group="arithmetic",
        difficulty=2,
        params="n: int",
        returns="int",
        summary="Return the n-th Fibonacci number, with fibonacci(0) == 0 and fibonacci(1) == 1.",
        example=(10,),
        implementations=(
            """
            a, b = 0, 1
            for _ in range(n):
                a, b = b, a + b
            return a
            """,
            """
            if n < 2:
                return n
            seq = [0, 1]
            while len(seq) <= n:
                seq.append(seq[-1] + seq[-2])
            return seq[n]
            """,
            """
            def pair(k):
                if k == 0:
                    return (0, 1)
                a, b = pair(k // 2)
                c = a * (2 * b - a)
                d = a * a + b * b
                if k % 2 == 0:
                    return (c, d)
                return (d, c + d)

            return pair(n)[0]
            """,
        ),
        reference=_fibonacci,
        draw=lambda rng: (_int(rng, 0, 60),),
        edge_cases=((0,), (1,), (2,), (3,), (7,)),
    ),
    Family(
        name="gcd",
        group="arithmetic",
        difficulty=2,
        params="a: int, b: int",
        returns="int",
        summary="Return the greatest common divisor of |a| and |b|; gcd(0, 0) is 0.",
        example=(12, 18),
        implementations=(
            """
            a, b = abs(a), abs(b)
            while b:
                a, b = b, a % b
            return a
            """,
            """
            import math
            return math.gcd(a, b)
            """,
            """
            if b == 0:
                return abs(a)
            return gcd(b, a % b)
            """,
        ),
        reference=math.gcd,
        draw=lambda rng: (
            _int(rng, 1, 6) * _int(rng, -30, 30),
            _int(rng, 1, 6) * _int(rng, -30, 30),
        ),
        edge_cases=((0, 0), (0, 5), (7, 0), (-4, 6), (4, -6), (1, 1), (17, 13), (-8, -12)),
    ),
    Family(
        name="lcm",
        group="arithmetic",
        difficulty=2,
        params="a: int, b: int",
        returns="int",
        summary="Return the least common multiple of |a| and |b|; it is 0 if a or b is 0.",
        example=(4, 6),
        implementations=(
            """
            import math
            if a == 0 or b == 0:
                return 0
            return abs(a * b) // math.gcd(a, b)
            """,
            """
            x, y = abs(a), abs(b)
            if x == 0 or y == 0:
                return 0
            m = max(x, y)
            while m % x or m % y:
                m += max(x, y)
            return m
            """,
        ),
        reference=math.lcm,
        draw=lambda rng: (_int(rng, -40, 40), _int(rng, -40, 40)),
        edge_cases=((0, 3), (4, 0), (0, 0), (4, 6), (-4, 6), (1, 1), (7, 7), (3, 5)),
    ),
    Family(
        name="is_prime",
        group="arithmetic",
        difficulty=2,
        params="n: int",
        returns="bool",
        summary="Return True if n is a prime number (negative numbers, 0 and 1 are not).",
        example=(97,),
        implementations=(
            """
            if n < 2:
                return False
            for d in range(2, int(n ** 0.5) + 1):
                if n % d == 0:
                    return False
            return True
            """,
            """
            if n < 2:
                return False
            if n < 4:
                return True
            if n % 2 == 0 or n % 3 == 0:
                return False
            k = 5
            while k * k <= n:
                if n % k == 0 or n % (k + 2) == 0:
                    return False
                k += 6
            return True
            """,
            """
            return n > 1 and all(n % d for d in range(2, n))
            """,
        ),
        reference=_is_prime,
        draw=_draw_is_prime,
        edge_cases=((-7,), (0,), (1,), (2,), (3,), (4,), (9,), (25,), (49,), (97,), (121,)),
    ),
    Family(
        name="count_divisors",
        group="arithmetic",
        difficulty=2,
        params="n: int",
        returns="int",
        summary="Return the number of positive divisors of the positive integer n.",
        example=(12,),
        implementations=(
            """
            return sum(1 for d in range(1, n + 1) if n % d == 0)
            """,
            """
            count = 0
            d = 1
            while d * d <= n:
                if n % d == 0:
                    count += 1 if d * d == n else 2
                d += 1
            return count
            """,
        ),
        reference=_count_divisors,
        draw=lambda rng: (_int(rng, 1, 5000),),
        edge_cases=((1,), (2,), (4,), (12,), (36,), (97,), (360,)),
    ),
    Family(
        name="collatz_steps",
        group="arithmetic",
        difficulty=2,
        params="n: int",
        returns="int",
        summary=(
            "Return how many Collatz steps (n -> n // 2 if n is even, else 3 * n + 1) take the "
            "positive integer n to 1."
        ),
        example=(6,),
        implementations=(
            """
            steps = 0
            while n != 1:
                n = n // 2 if n % 2 == 0 else 3 * n + 1
                steps += 1
            return steps
            """,
            """
            if n == 1:
                return 0
            if n % 2 == 0:
                return 1 + collatz_steps(n // 2)
            return 1 + collatz_steps(3 * n + 1)
            """,
        ),
        reference=_collatz_steps,
        draw=lambda rng: (_int(rng, 1, 3000),),
        edge_cases=((1,), (2,), (3,), (7,), (27,)),
    ),
    Family(
        name="to_binary",
        group="arithmetic",
        difficulty=2,
        params="n: int",
        returns="str",
        summary=(
            "Return the binary digits of n without a prefix, with a leading '-' if n is "
            "negative; 0 gives '0'."
        ),
        example=(10,),
        implementations=(
            """
            if n == 0:
                return '0'
            sign = '-' if n < 0 else ''
            n = abs(n)
            digits = []
            while n:
                digits.append(str(n % 2))
                n //= 2
            return sign + ''.join(reversed(digits))
            """,
            """
            return format(n, 'b')
            """,
            """
            return bin(n).replace('0b', '')
            """,
        ),
        reference=lambda n: format(n, "b"),
        draw=lambda rng: (_int(rng, -300, 5000),),
        edge_cases=((0,), (1,), (-1,), (2,), (8,), (255,), (-6,)),
    ),
    Family(
        name="isqrt",
        group="arithmetic",
        difficulty=3,
        params="n: int",
        returns="int",
        summary="Return the largest integer r with r * r <= n, for a non-negative integer n.",
        example=(17,),
        implementations=(
            """
            lo, hi = 0, n + 1
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if mid * mid <= n:
                    lo = mid
                else:
                    hi = mid
            return lo
            """,
            """
            if n < 2:
                return n
            x = n
            y = (x + 1) // 2
            while y < x:
                x = y
                y = (x + n // x) // 2
            return x
            """,
            """
            r = 0
            while (r + 1) * (r + 1) <= n:
                r += 1
            return r
            """,
        ),
        reference=math.isqrt,
        draw=lambda rng: (
            _int(rng, 0, 10**6) if rng.random() < 0.6 else _int(rng, 1, 999) ** 2 - _int(rng, 0, 1),
        ),
        edge_cases=((0,), (1,), (2,), (3,), (4,), (8,), (9,), (15,), (16,), (999999,)),
    ),
    Family(
        name="prime_factors",
        group="arithmetic",
        difficulty=3,
        params="n: int",
        returns="list[int]",
        summary=(
            "Return the prime factors of the positive integer n in ascending order, each as "
            "often as it divides n; 1 has none."
        ),
        example=(360,),
        implementations=(
            """
            factors = []
            d = 2
            while d * d <= n:
                while n % d == 0:
                    factors.append(d)
                    n //= d
                d += 1
            if n > 1:
                factors.append(n)
            return factors
            """,
            """
            factors = []
            d = 2
            while n > 1:
                if n % d == 0:
                    factors.append(d)
                    n //= d
                else:
                    d += 1
            return factors
            """,
        ),
        reference=_prime_factors,
        draw=lambda rng: (_int(rng, 1, 10000),),
        edge_cases=((1,), (2,), (4,), (12,), (97,), (1024,), (9991,)),
    ),
    Family(
        name="int_to_roman",
        group="arithmetic",
        difficulty=3,
        params="n: int",
        returns="str",
        summary="Return n (1 <= n <= 3999) as a Roman numeral in the usual subtractive form.",
        example=(1994,),
        implementations=(
            """
            pairs = [(1000, 'M'), (900, 'CM'), (500, 'D'), (400, 'CD'), (100, 'C'), (90, 'XC'),
                     (50, 'L'), (40, 'XL'), (10, 'X'), (9, 'IX'), (5, 'V'), (4, 'IV'), (1, 'I')]
            out = []
            for value, symbol in pairs:
                while n >= value:
                    out.append(symbol)
                    n -= value
            return ''.join(out)
            """,
            """
            thousands = ['', 'M', 'MM', 'MMM']
            hundreds = ['', 'C', 'CC', 'CCC', 'CD', 'D', 'DC', 'DCC', 'DCCC', 'CM']
            tens = ['', 'X', 'XX', 'XXX', 'XL', 'L', 'LX', 'LXX', 'LXXX', 'XC']
            ones = ['', 'I', 'II', 'III', 'IV', 'V', 'VI', 'VII', 'VIII', 'IX']
            return (thousands[n // 1000] + hundreds[n // 100 % 10] + tens[n // 10 % 10]
                    + ones[n % 10])
            """,
        ),
        reference=_int_to_roman,
        draw=lambda rng: (_int(rng, 1, 3999),),
        edge_cases=((1,), (3,), (4,), (9,), (14,), (40,), (90,), (400,), (3999,)),
    ),
    Family(
        name="min_coins",
        group="arithmetic",
        difficulty=4,
        params="coins: list[int], amount: int",
        returns="int",
        summary=(
            "Return the fewest coins (each value in coins usable any number of times) that sum "
            "to amount, or -1 if no combination does; amount 0 needs 0 coins."
        ),
        example=([1, 2, 5], 11),
        implementations=(
            """
            best = [0] + [-1] * amount
            for total in range(1, amount + 1):
                for c in coins:
                    if c <= total and best[total - c] != -1:
                        if best[total] == -1 or best[total - c] + 1 < best[total]:
                            best[total] = best[total - c] + 1
            return best[amount]
            """,
            """
            import collections
            if amount == 0:
                return 0
            seen = {0}
            queue = collections.deque([(0, 0)])
            while queue:
                total, steps = queue.popleft()
                for c in coins:
                    nxt = total + c
                    if nxt == amount:
                        return steps + 1
                    if nxt < amount and nxt not in seen:
                        seen.add(nxt)
                        queue.append((nxt, steps + 1))
            return -1
            """,
        ),
        reference=_min_coins,
        draw=_draw_min_coins,
        edge_cases=(([1], 0), ([2], 3), ([3, 7], 5), ([5], 5), ([2, 5, 10], 1), ([4, 3], 6)),
    ),
    Family(
        name="count_partitions",
        group="arithmetic",
        difficulty=5,
        params="n: int",
        returns="int",
        summary=(
            "Return the number of ways to write the non-negative integer n as a sum of positive "
            "integers, ignoring order (there is one way for 0)."
        ),
        example=(5,),
        implementations=(
            """
            ways = [1] + [0] * n
            for part in range(1, n + 1):
                for total in range(part, n + 1):
                    ways[total] += ways[total - part]
            return ways[n]
            """,
            """
            import functools

            @functools.lru_cache(maxsize=None)
            def count(remaining, largest):
                if remaining == 0:
                    return 1
                if largest == 0:
                    return 0
                if largest > remaining:
                    return count(remaining, remaining)
                return count(remaining - largest, largest) + count(remaining, largest - 1)

            return count(n, n)
            """,
        ),
        reference=_count_partitions,
        draw=lambda rng: (_int(rng, 0, 60),),
        edge_cases=((0,), (1,), (2,), (3,), (4,), (10,)),
    ),
)


# -- strings -------------------------------------------------------------------------------------
def _draw_palindrome(rng: np.random.Generator) -> Args:
    if rng.random() < 0.5:
        return (_sentence(rng, 4),)
    half = _word(rng, "abcé", 0, 5)
    middle = _word(rng, "xy", 0, 1)
    chars = list(half + middle + half[::-1])
    out = []
    for c in chars:
        out.append(c.upper() if rng.random() < 0.3 else c)
        if rng.random() < 0.2:
            out.append(_pick(rng, " ,.!"))
    return ("".join(out),)


def _is_palindrome(s: str) -> bool:
    kept = [c.lower() for c in s if c.isalnum()]
    return kept == kept[::-1]


def _caesar_shift(s: str, k: int) -> str:
    def shift(c: str, base: str) -> str:
        return chr((ord(c) - ord(base) + k) % 26 + ord(base))

    return "".join(
        shift(c, "a") if "a" <= c <= "z" else shift(c, "A") if "A" <= c <= "Z" else c for c in s
    )


def _runs(s: str) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for c in s:
        if out and out[-1][0] == c:
            out[-1] = (c, out[-1][1] + 1)
        else:
            out.append((c, 1))
    return out


def _draw_runs(rng: np.random.Generator) -> Args:
    return ("".join(_pick(rng, "abé") * _int(rng, 1, 4) for _ in range(_int(rng, 0, 5))),)


def _longest_common_prefix(words: list[str]) -> str:
    if not words:
        return ""
    prefix = ""
    for chars in zip(*words, strict=False):
        if any(c != chars[0] for c in chars):
            break
        prefix += chars[0]
    return prefix


def _draw_prefix_words(rng: np.random.Generator) -> Args:
    base = _word(rng, "abc", 0, 5)
    words = [
        base[: _int(rng, 0, len(base))] + _word(rng, "abc", 0, 3) for _ in range(_int(rng, 0, 5))
    ]
    return (words,)


def _count_overlapping(s: str, sub: str) -> int:
    return sum(1 for i in range(len(s)) if s.startswith(sub, i))


def _balanced(s: str) -> bool:
    closing = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for c in s:
        if c in "([{":
            stack.append(c)
        elif c in closing and (not stack or stack.pop() != closing[c]):
            return False
    return not stack


def _draw_brackets(rng: np.random.Generator) -> Args:
    if rng.random() < 0.5:
        return ("".join(_pick(rng, "()[]{}a") for _ in range(_int(rng, 0, 10))),)
    out = ""
    for _ in range(_int(rng, 0, 4)):  # a balanced string: wrap, append or sprinkle letters
        i = 2 * _int(rng, 0, 2)
        pair = "()[]{}"[i : i + 2]
        out = pair[0] + out + pair[1] if rng.random() < 0.5 else out + pair
        if rng.random() < 0.3:
            out += "x"
    return (out,)


def _edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
        prev = cur
    return prev[len(b)]


def _longest_palindrome(s: str) -> str:
    best = ""
    for start in range(len(s)):
        for end in range(start + 1, len(s) + 1):
            piece = s[start:end]
            if len(piece) > len(best) and piece == piece[::-1]:
                best = piece
    return best


def _word_break(s: str, words: list[str]) -> bool:
    reachable = {0}
    for end in range(1, len(s) + 1):
        if any(start in reachable and s[start:end] in words for start in range(end)):
            reachable.add(end)
    return len(s) in reachable


def _draw_word_break(rng: np.random.Generator) -> Args:
    vocab = [_word(rng, "abc", 1, 3) for _ in range(_int(rng, 1, 4))]
    s = "".join(vocab[int(rng.integers(len(vocab)))] for _ in range(_int(rng, 0, 4)))
    if s and rng.random() < 0.4:  # break it somewhere
        i = _int(rng, 0, len(s) - 1)
        s = s[:i] + _pick(rng, "abc") + s[i + 1 :]
    return (s, vocab)


_STRINGS = (
    Family(
        name="reverse_words",
        group="strings",
        difficulty=1,
        params="s: str",
        returns="str",
        summary=(
            "Return the words of s (separated by any whitespace) in reverse order, joined by "
            "single spaces."
        ),
        example=("the quick  brown fox",),
        implementations=(
            """
            return ' '.join(reversed(s.split()))
            """,
            """
            return ' '.join(s.split()[::-1])
            """,
            """
            words = s.split()
            out = []
            for i in range(len(words) - 1, -1, -1):
                out.append(words[i])
            return ' '.join(out)
            """,
        ),
        reference=lambda s: " ".join(s.split()[::-1]),
        draw=lambda rng: (_sentence(rng),),
        edge_cases=(("",), ("   ",), ("one",), ("a b",), ("  lead and trail  ",), ("héllo wörld",)),
    ),
    Family(
        name="count_vowels",
        group="strings",
        difficulty=1,
        params="s: str",
        returns="int",
        summary="Return how many characters of s are the vowels a, e, i, o, u in either case.",
        example=("Hello World",),
        implementations=(
            """
            return sum(1 for c in s.lower() if c in 'aeiou')
            """,
            """
            count = 0
            for c in s:
                if c in 'aeiouAEIOU':
                    count += 1
            return count
            """,
            """
            return len([c for c in s if c.lower() in 'aeiou'])
            """,
        ),
        reference=lambda s: sum(c in "aeiouAEIOU" for c in s),
        draw=lambda rng: (_sentence(rng),),
        edge_cases=(("",), ("xyz",), ("AEIOU",), ("Héllo Wörld",), ("a",), ("queue",)),
    ),
    Family(
        name="is_palindrome",
        group="strings",
        difficulty=2,
        params="s: str",
        returns="bool",
        summary=(
            "Return True if s reads the same forwards and backwards when only its letters and "
            "digits are kept and case is ignored."
        ),
        example=("A man, a plan, a canal: Panama",),
        implementations=(
            """
            cleaned = [c.lower() for c in s if c.isalnum()]
            return cleaned == cleaned[::-1]
            """,
            """
            i, j = 0, len(s) - 1
            while i < j:
                if not s[i].isalnum():
                    i += 1
                elif not s[j].isalnum():
                    j -= 1
                elif s[i].lower() != s[j].lower():
                    return False
                else:
                    i += 1
                    j -= 1
            return True
            """,
        ),
        reference=_is_palindrome,
        draw=_draw_palindrome,
        edge_cases=(("",), ("a",), ("ab",), ("No lemon, no melon",), ("Été",), ("ab,a",), (".,!",)),
    ),
    Family(
        name="caesar_shift",
        group="strings",
        difficulty=2,
        params="s: str, k: int",
        returns="str",
        summary=(
            "Return s with every ASCII letter moved k places along the alphabet (wrapping "
            "around, keeping its case); other characters are unchanged and k may be negative."
        ),
        example=("Hello, World!", 3),
        implementations=(
            """
            out = []
            for c in s:
                if 'a' <= c <= 'z':
                    out.append(chr((ord(c) - ord('a') + k) % 26 + ord('a')))
                elif 'A' <= c <= 'Z':
                    out.append(chr((ord(c) - ord('A') + k) % 26 + ord('A')))
                else:
                    out.append(c)
            return ''.join(out)
            """,
            """
            import string
            lower = string.ascii_lowercase
            upper = string.ascii_uppercase
            m = k % 26
            table = str.maketrans(lower + upper, lower[m:] + lower[:m] + upper[m:] + upper[:m])
            return s.translate(table)
            """,
        ),
        reference=_caesar_shift,
        draw=lambda rng: (_sentence(rng, 4), _int(rng, -30, 60)),
        edge_cases=(("", 3), ("abc", 0), ("xyz", 3), ("abc", -1), ("Zebra", 52), ("héllo", 1)),
    ),
    Family(
        name="longest_common_prefix",
        group="strings",
        difficulty=2,
        params="words: list[str]",
        returns="str",
        summary="Return the longest string that every word in words starts with ('' if none).",
        example=(["flower", "flow", "flight"],),
        implementations=(
            """
            if not words:
                return ''
            prefix = words[0]
            for w in words[1:]:
                while not w.startswith(prefix):
                    prefix = prefix[:-1]
            return prefix
            """,
            """
            if not words:
                return ''
            shortest = min(words, key=len)
            for i, c in enumerate(shortest):
                for w in words:
                    if w[i] != c:
                        return shortest[:i]
            return shortest
            """,
            """
            out = []
            for chars in zip(*words):
                if len(set(chars)) != 1:
                    break
                out.append(chars[0])
            return ''.join(out)
            """,
        ),
        reference=_longest_common_prefix,
        draw=_draw_prefix_words,
        edge_cases=(
            ([],),
            ([""],),
            (["abc"],),
            (["abc", "abd"],),
            (["a", "b"],),
            (["same", "same"],),
            (["", "abc"],),
            (["prefix", "pre", "prefixes"],),
        ),
    ),
    Family(
        name="count_overlapping",
        group="strings",
        difficulty=2,
        params="s: str, sub: str",
        returns="int",
        summary="Return how many times the non-empty string sub occurs in s, overlaps included.",
        example=("aaaa", "aa"),
        implementations=(
            """
            count = 0
            for i in range(len(s) - len(sub) + 1):
                if s[i:i + len(sub)] == sub:
                    count += 1
            return count
            """,
            """
            count = 0
            start = s.find(sub)
            while start != -1:
                count += 1
                start = s.find(sub, start + 1)
            return count
            """,
        ),
        reference=_count_overlapping,
        draw=lambda rng: (_word(rng, "ab", 0, 12), _word(rng, "ab", 1, 3)),
        edge_cases=(("", "a"), ("a", "a"), ("abc", "abcd"), ("abab", "ab"), ("aaa", "a")),
    ),
    Family(
        name="longest_run",
        group="strings",
        difficulty=2,
        params="s: str",
        returns="int",
        summary="Return the length of the longest block of one repeated character in s (0 for '').",
        example=("abbbcc",),
        implementations=(
            """
            best = 0
            run = 0
            prev = None
            for c in s:
                run = run + 1 if c == prev else 1
                prev = c
                best = max(best, run)
            return best
            """,
            """
            import itertools
            return max((len(list(g)) for _, g in itertools.groupby(s)), default=0)
            """,
        ),
        reference=lambda s: max((n for _, n in _runs(s)), default=0),
        draw=_draw_runs,
        edge_cases=(("",), ("a",), ("abc",), ("aabbb",), ("bbbaa",), ("ééé",)),
    ),
    Family(
        name="run_length_encode",
        group="strings",
        difficulty=3,
        params="s: str",
        returns="str",
        summary=(
            "Return the run-length encoding of s: each maximal block of one repeated character "
            "becomes the character followed by the block's length."
        ),
        example=("aaabcc",),
        implementations=(
            """
            if not s:
                return ''
            out = []
            current = s[0]
            count = 1
            for c in s[1:]:
                if c == current:
                    count += 1
                else:
                    out.append(current + str(count))
                    current = c
                    count = 1
            out.append(current + str(count))
            return ''.join(out)
            """,
            """
            import itertools
            return ''.join(ch + str(len(list(group))) for ch, group in itertools.groupby(s))
            """,
            """
            out = []
            i = 0
            while i < len(s):
                j = i
                while j < len(s) and s[j] == s[i]:
                    j += 1
                out.append(s[i] + str(j - i))
                i = j
            return ''.join(out)
            """,
        ),
        reference=lambda s: "".join(f"{c}{n}" for c, n in _runs(s)),
        draw=_draw_runs,
        edge_cases=(("",), ("a",), ("aaaa",), ("abc",), ("aabbbc",), ("ééa",)),
    ),
    Family(
        name="balanced_brackets",
        group="strings",
        difficulty=3,
        params="s: str",
        returns="bool",
        summary=(
            "Return True if the brackets (), [] and {} in s are balanced and properly nested; "
            "other characters are ignored."
        ),
        example=("{[()]}x",),
        implementations=(
            """
            pairs = {')': '(', ']': '[', '}': '{'}
            stack = []
            for c in s:
                if c in '([{':
                    stack.append(c)
                elif c in pairs:
                    if not stack or stack.pop() != pairs[c]:
                        return False
            return not stack
            """,
            """
            kept = ''.join(c for c in s if c in '()[]{}')
            previous = None
            while previous != kept:
                previous = kept
                kept = kept.replace('()', '').replace('[]', '').replace('{}', '')
            return kept == ''
            """,
        ),
        reference=_balanced,
        draw=_draw_brackets,
        edge_cases=(("",), ("()",), ("(",), (")",), ("([)]",), ("{[]}",), ("a(b)c",), ("}{",)),
    ),
    Family(
        name="edit_distance",
        group="strings",
        difficulty=4,
        params="a: str, b: str",
        returns="int",
        summary=(
            "Return the Levenshtein distance between a and b: the fewest single-character "
            "insertions, deletions and substitutions that turn a into b."
        ),
        example=("kitten", "sitting"),
        implementations=(
            """
            rows, cols = len(a) + 1, len(b) + 1
            dist = [[0] * cols for _ in range(rows)]
            for i in range(rows):
                dist[i][0] = i
            for j in range(cols):
                dist[0][j] = j
            for i in range(1, rows):
                for j in range(1, cols):
                    cost = 0 if a[i - 1] == b[j - 1] else 1
                    dist[i][j] = min(dist[i - 1][j] + 1, dist[i][j - 1] + 1,
                                     dist[i - 1][j - 1] + cost)
            return dist[-1][-1]
            """,
            """
            prev = list(range(len(b) + 1))
            for i, ca in enumerate(a, 1):
                cur = [i]
                for j, cb in enumerate(b, 1):
                    cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
                prev = cur
            return prev[-1]
            """,
        ),
        reference=_edit_distance,
        draw=lambda rng: (_word(rng, "abcd", 0, 7), _word(rng, "abcd", 0, 7)),
        edge_cases=(
            ("", ""),
            ("", "abc"),
            ("abc", ""),
            ("same", "same"),
            ("ab", "ba"),
            ("héllo", "hello"),
        ),
    ),
    Family(
        name="word_break",
        group="strings",
        difficulty=4,
        params="s: str, words: list[str]",
        returns="bool",
        summary=(
            "Return True if s can be cut into a sequence of pieces that are all in words (a "
            "word may be used many times); the empty string always can."
        ),
        example=("applepenapple", ["apple", "pen"]),
        implementations=(
            """
            ok = [True] + [False] * len(s)
            for end in range(1, len(s) + 1):
                for start in range(end):
                    if ok[start] and s[start:end] in words:
                        ok[end] = True
                        break
            return ok[len(s)]
            """,
            """
            import functools

            @functools.lru_cache(maxsize=None)
            def can(start):
                if start == len(s):
                    return True
                return any(s.startswith(w, start) and can(start + len(w)) for w in words if w)

            return can(0)
            """,
        ),
        reference=_word_break,
        draw=_draw_word_break,
        edge_cases=(
            ("", []),
            ("", ["a"]),
            ("a", []),
            ("catsandog", ["cats", "dog", "sand", "cat"]),
            ("aaaa", ["a", "aa"]),
            ("ab", ["", "a"]),
            ("abab", ["ab"]),
        ),
    ),
    Family(
        name="longest_palindromic_substring",
        group="strings",
        difficulty=5,
        params="s: str",
        returns="str",
        summary=(
            "Return the longest contiguous substring of s that is a palindrome; among several of "
            "that length, the leftmost ('' for '')."
        ),
        example=("babad",),
        implementations=(
            """
            best = ''
            for i in range(len(s)):
                for lo, hi in ((i, i), (i, i + 1)):
                    while lo >= 0 and hi < len(s) and s[lo] == s[hi]:
                        lo -= 1
                        hi += 1
                    if hi - lo - 1 > len(best):
                        best = s[lo + 1:hi]
            return best
            """,
            """
            for length in range(len(s), 0, -1):
                for start in range(len(s) - length + 1):
                    piece = s[start:start + length]
                    if piece == piece[::-1]:
                        return piece
            return ''
            """,
        ),
        reference=_longest_palindrome,
        draw=lambda rng: (_word(rng, "ab" if rng.random() < 0.5 else "abc", 0, 12),),
        edge_cases=(("",), ("a",), ("ab",), ("aa",), ("cbbd",), ("racecar",), ("abcd",)),
    ),
)


# -- lists and sequences ------------------------------------------------------------------------
def _running_sum(xs: list[int]) -> list[int]:
    out, total = [], 0
    for x in xs:
        total += x
        out.append(total)
    return out


def _second_largest(xs: list[int]) -> int | None:
    values = sorted(set(xs))
    return values[-2] if len(values) >= 2 else None


def _rotate_right(xs: list[int], k: int) -> list[int]:
    return [xs[(i - k) % len(xs)] for i in range(len(xs))]


def _max_subarray(xs: list[int]) -> int:
    if not xs:
        return 0
    return max(sum(xs[i:j]) for i in range(len(xs)) for j in range(i + 1, len(xs) + 1))


def _lis(xs: list[int]) -> int:
    best: list[int] = []
    for i, x in enumerate(xs):
        best.append(1 + max((best[j] for j in range(i) if xs[j] < x), default=0))
    return max(best, default=0)


def _spiral(matrix: list[list[int]]) -> list[int]:
    rows = [list(r) for r in matrix]
    out: list[int] = []
    while rows and rows[0]:
        out += rows.pop(0)  # the top row, then turn what is left counter-clockwise
        rows = [list(col) for col in zip(*rows, strict=True)][::-1]
    return out


def _draw_matrix(rng: np.random.Generator) -> Args:
    cols = _int(rng, 1, 4)
    return ([[_int(rng, -9, 9) for _ in range(cols)] for _ in range(_int(rng, 1, 4))],)


def _knapsack(weights: list[int], values: list[int], capacity: int) -> int:
    best = 0
    for mask in range(1 << len(weights)):
        chosen = [i for i in range(len(weights)) if mask >> i & 1]
        if sum(weights[i] for i in chosen) <= capacity:
            best = max(best, sum(values[i] for i in chosen))
    return best


def _draw_knapsack(rng: np.random.Generator) -> Args:
    n = _int(rng, 0, 7)
    weights = [_int(rng, 1, 8) for _ in range(n)]
    values = [_int(rng, 1, 15) for _ in range(n)]
    return (weights, values, _int(rng, 0, 20))


def _draw_merge(rng: np.random.Generator) -> Args:
    return (sorted(_ints(rng, -10, 10, 0, 6)), sorted(_ints(rng, -10, 10, 0, 6)))


def _draw_search(rng: np.random.Generator) -> Args:
    xs = _distinct_sorted(rng, -30, 30, 9)
    if xs and rng.random() < 0.6:
        return (xs, xs[int(rng.integers(len(xs)))])
    return (xs, _int(rng, -32, 32))


def _binary_search(xs: list[int], target: int) -> int:
    return xs.index(target) if target in xs else -1


def _median(xs: list[float]) -> float:
    ordered = sorted(xs)
    n = len(ordered)
    return float(ordered[n // 2]) if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def _floats(rng: np.random.Generator, min_len: int, max_len: int) -> list[float]:
    return [round(float(rng.uniform(-100, 100)), 2) for _ in range(_int(rng, min_len, max_len))]


_LISTS = (
    Family(
        name="running_sum",
        group="lists",
        difficulty=1,
        params="xs: list[int]",
        returns="list[int]",
        summary="Return the prefix sums of xs: element i is xs[0] + ... + xs[i].",
        example=([1, 2, 3],),
        implementations=(
            """
            total = 0
            out = []
            for x in xs:
                total += x
                out.append(total)
            return out
            """,
            """
            import itertools
            return list(itertools.accumulate(xs))
            """,
            """
            out = list(xs)
            for i in range(1, len(out)):
                out[i] += out[i - 1]
            return out
            """,
        ),
        reference=_running_sum,
        draw=lambda rng: (_ints(rng, -20, 20),),
        edge_cases=(([],), ([5],), ([-1, 1],), ([0, 0, 0],), ([3, -3, 3],)),
    ),
    Family(
        name="dedupe",
        group="lists",
        difficulty=1,
        params="xs: list[int]",
        returns="list[int]",
        summary="Return xs without repeated values, keeping the first occurrence of each in order.",
        example=([3, 1, 3, 2, 1],),
        implementations=(
            """
            seen = set()
            out = []
            for x in xs:
                if x not in seen:
                    seen.add(x)
                    out.append(x)
            return out
            """,
            """
            return list(dict.fromkeys(xs))
            """,
            """
            return [x for i, x in enumerate(xs) if x not in xs[:i]]
            """,
        ),
        reference=lambda xs: list(dict.fromkeys(xs)),
        draw=lambda rng: (_ints(rng, -4, 6, 0, 10),),
        edge_cases=(([],), ([1],), ([1, 1, 1],), ([-1, 1, -1],), ([2, 1, 2, 1],)),
    ),
    Family(
        name="min_and_max",
        group="lists",
        difficulty=1,
        params="xs: list[int]",
        returns="tuple[int, int] | None",
        summary="Return the tuple (smallest, largest) of xs, or None if xs is empty.",
        example=([3, -1, 7, 2],),
        implementations=(
            """
            if not xs:
                return None
            return (min(xs), max(xs))
            """,
            """
            if not xs:
                return None
            lo = hi = xs[0]
            for x in xs[1:]:
                if x < lo:
                    lo = x
                if x > hi:
                    hi = x
            return (lo, hi)
            """,
            """
            if not xs:
                return None
            ordered = sorted(xs)
            return (ordered[0], ordered[-1])
            """,
        ),
        reference=lambda xs: (min(xs), max(xs)) if xs else None,
        draw=lambda rng: (_ints(rng, -50, 50, 1, 8),),
        edge_cases=(([],), ([4],), ([2, 2],), ([-3, -9],), ([5, 1, 5, 1],)),
    ),
    Family(
        name="mean",
        group="lists",
        difficulty=1,
        params="xs: list[float]",
        returns="float",
        summary="Return the arithmetic mean of xs, or 0.0 if xs is empty.",
        example=([1.0, 2.0, 4.5],),
        implementations=(
            """
            if not xs:
                return 0.0
            return sum(xs) / len(xs)
            """,
            """
            total = 0.0
            count = 0
            for x in xs:
                total += x
                count += 1
            return total / count if count else 0.0
            """,
        ),
        reference=lambda xs: sum(xs) / len(xs) if xs else 0.0,
        draw=lambda rng: (_floats(rng, 1, 8),),
        edge_cases=(([],), ([1.5],), ([-1.0, 1.0],), ([0.1, 0.2, 0.3],), ([2.0, 3.0],)),
        approx=True,
    ),
    Family(
        name="second_largest",
        group="lists",
        difficulty=2,
        params="xs: list[int]",
        returns="int | None",
        summary=(
            "Return the second largest distinct value in xs, or None if xs has fewer than two "
            "distinct values."
        ),
        example=([5, 1, 5, 3],),
        implementations=(
            """
            values = sorted(set(xs), reverse=True)
            if len(values) < 2:
                return None
            return values[1]
            """,
            """
            first = second = None
            for x in xs:
                if first is None or x > first:
                    first, second = x, first
                elif x != first and (second is None or x > second):
                    second = x
            return second
            """,
        ),
        reference=_second_largest,
        draw=lambda rng: (_ints(rng, -10, 10, 0, 8),),
        edge_cases=(([],), ([1],), ([2, 2],), ([1, 2],), ([2, 1],), ([3, 3, 1],), ([-1, -2, -3],)),
    ),
    Family(
        name="rotate_right",
        group="lists",
        difficulty=2,
        params="xs: list[int], k: int",
        returns="list[int]",
        summary=(
            "Return xs rotated k places to the right (the last k elements move to the front); k "
            "may exceed len(xs), and a negative k rotates to the left."
        ),
        example=([1, 2, 3, 4, 5], 2),
        implementations=(
            """
            if not xs:
                return []
            k %= len(xs)
            return xs[-k:] + xs[:-k]
            """,
            """
            import collections
            d = collections.deque(xs)
            d.rotate(k)
            return list(d)
            """,
            """
            n = len(xs)
            return [xs[(i - k) % n] for i in range(n)]
            """,
        ),
        reference=_rotate_right,
        draw=lambda rng: (_ints(rng, -9, 9, 0, 7), _int(rng, -8, 12)),
        edge_cases=(
            ([], 3),
            ([1], 5),
            ([1, 2, 3], 0),
            ([1, 2, 3], 1),
            ([1, 2, 3], 3),
            ([1, 2, 3], 4),
            ([1, 2, 3], -1),
        ),
    ),
    Family(
        name="chunk_list",
        group="lists",
        difficulty=2,
        params="xs: list[int], size: int",
        returns="list[list[int]]",
        summary=(
            "Return xs cut into consecutive pieces of length size (size >= 1); the last piece "
            "may be shorter."
        ),
        example=([1, 2, 3, 4, 5], 2),
        implementations=(
            """
            return [xs[i:i + size] for i in range(0, len(xs), size)]
            """,
            """
            chunks = []
            current = []
            for x in xs:
                current.append(x)
                if len(current) == size:
                    chunks.append(current)
                    current = []
            if current:
                chunks.append(current)
            return chunks
            """,
        ),
        reference=lambda xs, size: [xs[i : i + size] for i in range(0, len(xs), size)],
        draw=lambda rng: (_ints(rng, -9, 9, 0, 9), _int(rng, 1, 4)),
        edge_cases=(
            ([], 2),
            ([1], 1),
            ([1, 2, 3], 1),
            ([1, 2, 3], 2),
            ([1, 2, 3], 3),
            ([1, 2, 3], 5),
        ),
    ),
    Family(
        name="median",
        group="lists",
        difficulty=2,
        params="xs: list[float]",
        returns="float",
        summary=(
            "Return the median of the non-empty list xs: the middle value once sorted, or the "
            "mean of the two middle values if len(xs) is even."
        ),
        example=([3.0, 1.0, 2.0, 10.0],),
        implementations=(
            """
            ordered = sorted(xs)
            n = len(ordered)
            mid = n // 2
            if n % 2 == 1:
                return float(ordered[mid])
            return (ordered[mid - 1] + ordered[mid]) / 2
            """,
            """
            ordered = sorted(xs)
            n = len(ordered)
            return (ordered[(n - 1) // 2] + ordered[n // 2]) / 2
            """,
        ),
        reference=_median,
        draw=lambda rng: (_floats(rng, 1, 8),),
        edge_cases=(
            ([1.0],),
            ([2.0, 1.0],),
            ([3.0, 1.0, 2.0],),
            ([5.0, 5.0],),
            ([-1.5, 0.0, 1.5, 10.0],),
        ),
        approx=True,
    ),
    Family(
        name="merge_sorted",
        group="lists",
        difficulty=3,
        params="a: list[int], b: list[int]",
        returns="list[int]",
        summary="Return the sorted merge of the two ascending lists a and b (duplicates kept).",
        example=([1, 3, 5], [2, 3, 6]),
        implementations=(
            """
            i = j = 0
            out = []
            while i < len(a) and j < len(b):
                if a[i] <= b[j]:
                    out.append(a[i])
                    i += 1
                else:
                    out.append(b[j])
                    j += 1
            out.extend(a[i:])
            out.extend(b[j:])
            return out
            """,
            """
            return sorted(a + b)
            """,
            """
            import heapq
            return list(heapq.merge(a, b))
            """,
        ),
        reference=lambda a, b: sorted(a + b),
        draw=_draw_merge,
        edge_cases=(([], []), ([1], []), ([], [1]), ([1, 1], [1]), ([-3, 0], [-5, 10])),
    ),
    Family(
        name="binary_search",
        group="lists",
        difficulty=3,
        params="xs: list[int], target: int",
        returns="int",
        summary=(
            "Return the index of target in the ascending list xs of distinct integers, or -1 if "
            "it is absent."
        ),
        example=([1, 3, 5, 7], 5),
        implementations=(
            """
            lo, hi = 0, len(xs) - 1
            while lo <= hi:
                mid = (lo + hi) // 2
                if xs[mid] == target:
                    return mid
                if xs[mid] < target:
                    lo = mid + 1
                else:
                    hi = mid - 1
            return -1
            """,
            """
            import bisect
            i = bisect.bisect_left(xs, target)
            if i < len(xs) and xs[i] == target:
                return i
            return -1
            """,
            """
            lo, hi = 0, len(xs)
            while lo < hi:
                mid = (lo + hi) // 2
                if xs[mid] < target:
                    lo = mid + 1
                else:
                    hi = mid
            return lo if lo < len(xs) and xs[lo] == target else -1
            """,
        ),
        reference=_binary_search,
        draw=_draw_search,
        edge_cases=(
            ([], 1),
            ([1], 1),
            ([1], 0),
            ([1, 3, 5], 5),
            ([1, 3, 5], 1),
            ([1, 3, 5], 4),
            ([1, 3, 5], 6),
            ([-5, -1], -5),
        ),
    ),
    Family(
        name="max_subarray_sum",
        group="lists",
        difficulty=3,
        params="xs: list[int]",
        returns="int",
        summary=(
            "Return the largest sum of a non-empty run of consecutive elements of xs, or 0 if xs "
            "is empty."
        ),
        example=([-2, 1, -3, 4, -1, 2, 1, -5, 4],),
        implementations=(
            """
            if not xs:
                return 0
            best = current = xs[0]
            for x in xs[1:]:
                current = max(x, current + x)
                best = max(best, current)
            return best
            """,
            """
            best = None
            for i in range(len(xs)):
                total = 0
                for j in range(i, len(xs)):
                    total += xs[j]
                    if best is None or total > best:
                        best = total
            return 0 if best is None else best
            """,
            """
            if not xs:
                return 0
            best = xs[0]
            prefix = 0
            lowest = 0
            for x in xs:
                prefix += x
                best = max(best, prefix - lowest)
                lowest = min(lowest, prefix)
            return best
            """,
        ),
        reference=_max_subarray,
        draw=lambda rng: (_ints(rng, -10, 10, 0, 9),),
        edge_cases=(([],), ([5],), ([-5],), ([-2, -1, -3],), ([1, -2, 3],), ([2, -1, 2, -1, 2],)),
    ),
    Family(
        name="longest_increasing_subsequence",
        group="lists",
        difficulty=4,
        params="xs: list[int]",
        returns="int",
        summary=(
            "Return the length of the longest strictly increasing subsequence of xs (not "
            "necessarily contiguous)."
        ),
        example=([10, 9, 2, 5, 3, 7, 101, 18],),
        implementations=(
            """
            best = [1] * len(xs)
            for i in range(len(xs)):
                for j in range(i):
                    if xs[j] < xs[i]:
                        best[i] = max(best[i], best[j] + 1)
            return max(best, default=0)
            """,
            """
            import bisect
            tails = []
            for x in xs:
                k = bisect.bisect_left(tails, x)
                if k == len(tails):
                    tails.append(x)
                else:
                    tails[k] = x
            return len(tails)
            """,
        ),
        reference=_lis,
        draw=lambda rng: (_ints(rng, -5, 12, 0, 10),),
        edge_cases=(([],), ([1],), ([2, 2, 2],), ([3, 2, 1],), ([1, 2, 3],), ([0, 1, 0, 3, 2, 3],)),
    ),
    Family(
        name="spiral_order",
        group="lists",
        difficulty=4,
        params="matrix: list[list[int]]",
        returns="list[int]",
        summary=(
            "Return the elements of the rectangular matrix (a list of equally long rows) in "
            "clockwise spiral order, starting at the top left."
        ),
        example=([[1, 2, 3], [4, 5, 6], [7, 8, 9]],),
        implementations=(
            """
            out = []
            if not matrix:
                return out
            top, bottom = 0, len(matrix) - 1
            left, right = 0, len(matrix[0]) - 1
            while top <= bottom and left <= right:
                for j in range(left, right + 1):
                    out.append(matrix[top][j])
                for i in range(top + 1, bottom + 1):
                    out.append(matrix[i][right])
                if top < bottom and left < right:
                    for j in range(right - 1, left - 1, -1):
                        out.append(matrix[bottom][j])
                    for i in range(bottom - 1, top, -1):
                        out.append(matrix[i][left])
                top, bottom, left, right = top + 1, bottom - 1, left + 1, right - 1
            return out
            """,
            """
            rows = [list(r) for r in matrix]
            out = []
            while rows:
                out.extend(rows.pop(0))
                rows = [list(r) for r in zip(*rows)][::-1]
            return out
            """,
        ),
        reference=_spiral,
        draw=_draw_matrix,
        edge_cases=(
            ([],),
            ([[1]],),
            ([[1, 2, 3]],),
            ([[1], [2], [3]],),
            ([[1, 2], [3, 4]],),
            ([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]],),
        ),
    ),
    Family(
        name="knapsack",
        group="lists",
        difficulty=5,
        params="weights: list[int], values: list[int], capacity: int",
        returns="int",
        summary=(
            "Return the largest total value of a selection of items (item i weighs weights[i] "
            "> 0 and is worth values[i]; each item at most once) whose total weight is at most "
            "capacity."
        ),
        example=([1, 2, 3], [6, 10, 12], 5),
        implementations=(
            """
            best = [0] * (capacity + 1)
            for w, v in zip(weights, values):
                for c in range(capacity, w - 1, -1):
                    best[c] = max(best[c], best[c - w] + v)
            return best[capacity]
            """,
            """
            import functools

            @functools.lru_cache(maxsize=None)
            def solve(i, room):
                if i == len(weights):
                    return 0
                skip = solve(i + 1, room)
                if weights[i] <= room:
                    return max(skip, values[i] + solve(i + 1, room - weights[i]))
                return skip

            return solve(0, capacity)
            """,
            """
            import itertools
            best = 0
            items = list(zip(weights, values))
            for r in range(len(items) + 1):
                for combo in itertools.combinations(items, r):
                    if sum(w for w, _ in combo) <= capacity:
                        best = max(best, sum(v for _, v in combo))
            return best
            """,
        ),
        reference=_knapsack,
        draw=_draw_knapsack,
        edge_cases=(
            ([], [], 10),
            ([5], [10], 4),
            ([5], [10], 5),
            ([4, 4], [5, 5], 7),
            ([1, 1, 1], [1, 2, 3], 0),
            ([2, 3], [3, 4], 5),
        ),
    ),
)


# -- dicts, counting and sets ------------------------------------------------------------------
def _word_frequency(s: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for w in s.lower().split():
        counts[w] = counts.get(w, 0) + 1
    return counts


def _most_common_char(s: str) -> str | None:
    if not s:
        return None
    counts = collections.Counter(s)
    top = max(counts.values())
    return next(c for c in s if counts[c] == top)


def _group_anagrams(words: list[str]) -> list[list[str]]:
    groups: dict[str, list[str]] = {}
    for w in words:
        groups.setdefault("".join(sorted(w)), []).append(w)
    return sorted(sorted(g) for g in groups.values())


def _draw_anagrams(rng: np.random.Generator) -> Args:
    bases = [_word(rng, "aest", 1, 4) for _ in range(_int(rng, 1, 3))]
    words = []
    for _ in range(_int(rng, 0, 6)):
        base = list(bases[int(rng.integers(len(bases)))])
        rng.shuffle(base)
        words.append("".join(base))
    return (words,)


def _invert(d: dict[str, int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for key in sorted(d):
        out.setdefault(d[key], []).append(key)
    return out


def _draw_invert(rng: np.random.Generator) -> Args:
    return ({_word(rng, "abcdef", 1, 2): _int(rng, 0, 3) for _ in range(_int(rng, 0, 6))},)


def _draw_sets(rng: np.random.Generator) -> Args:
    def one() -> set[int]:
        return {int(v) for v in rng.choice(10, size=_int(rng, 1, 6), replace=False)}

    return (one(), one())


def _first_unique(s: str) -> int:
    counts = collections.Counter(s)
    return next((i for i, c in enumerate(s) if counts[c] == 1), -1)


def _two_sum(xs: list[int], target: int) -> tuple[int, int] | None:
    for j in range(len(xs)):
        for i in range(j):
            if xs[i] + xs[j] == target:
                return (i, j)
    return None


def _draw_two_sum(rng: np.random.Generator) -> Args:
    xs = _ints(rng, -5, 10, 0, 7)
    if len(xs) >= 2 and rng.random() < 0.6:
        i, j = (int(v) for v in rng.choice(len(xs), size=2, replace=False))
        return (xs, xs[i] + xs[j])
    return (xs, _int(rng, -5, 15))


def _top_k(xs: list[int], k: int) -> list[int]:
    counts = collections.Counter(xs)
    return sorted(counts, key=lambda v: (-counts[v], v))[:k]


def _subarray_sum_count(xs: list[int], target: int) -> int:
    return sum(
        1 for i in range(len(xs)) for j in range(i + 1, len(xs) + 1) if sum(xs[i:j]) == target
    )


def _topological(graph: dict[str, list[str]]) -> list[str] | None:
    indegree = dict.fromkeys(graph, 0)
    for targets in graph.values():
        for t in targets:
            indegree[t] += 1
    ready = [node for node, deg in indegree.items() if deg == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        node = heapq.heappop(ready)
        order.append(node)
        for t in graph[node]:
            indegree[t] -= 1
            if indegree[t] == 0:
                heapq.heappush(ready, t)
    return order if len(order) == len(graph) else None


def _draw_graph(rng: np.random.Generator) -> Args:
    nodes = [str(c) for c in rng.permutation(list("abcdefg"))[: _int(rng, 1, 6)]]
    acyclic = rng.random() < 0.7
    rank = {node: int(r) for node, r in zip(nodes, rng.permutation(len(nodes)), strict=True)}
    graph: dict[str, list[str]] = {node: [] for node in nodes}
    for a in nodes:
        for b in nodes:
            if a == b or (acyclic and rank[a] > rank[b]):
                continue
            if rng.random() < (0.35 if acyclic else 0.2):
                graph[a].append(b)
    return (graph,)


_DICTS = (
    Family(
        name="byte_histogram",
        group="dicts",
        difficulty=1,
        params="data: bytes",
        returns="dict[int, int]",
        summary="Return a dict mapping each byte value that occurs in data to its count.",
        example=(b"abca",),
        implementations=(
            """
            counts = {}
            for b in data:
                counts[b] = counts.get(b, 0) + 1
            return counts
            """,
            """
            import collections
            return dict(collections.Counter(data))
            """,
            """
            return {b: data.count(b) for b in set(data)}
            """,
        ),
        reference=lambda data: dict(collections.Counter(data)),
        draw=lambda rng: (bytes(b"abc\x00\xff"[_int(rng, 0, 4)] for _ in range(_int(rng, 0, 8))),),
        edge_cases=((b"",), (b"a",), (b"aaa",), (b"\x00\xff\x00",), (b"hello",)),
    ),
    Family(
        name="common_elements",
        group="dicts",
        difficulty=1,
        params="a: list[int], b: list[int]",
        returns="list[int]",
        summary="Return the distinct values that occur in both a and b, in ascending order.",
        example=([1, 2, 2, 5], [2, 5, 7]),
        implementations=(
            """
            return sorted(set(a) & set(b))
            """,
            """
            return sorted({x for x in a if x in b})
            """,
            """
            out = []
            for x in sorted(a):
                if x in b and x not in out:
                    out.append(x)
            return out
            """,
        ),
        reference=lambda a, b: sorted(set(a) & set(b)),
        draw=lambda rng: (_ints(rng, -5, 8, 0, 7), _ints(rng, -5, 8, 0, 7)),
        edge_cases=(
            ([], []),
            ([1], []),
            ([], [1]),
            ([1, 2, 2], [2, 2, 3]),
            ([1, 2], [3, 4]),
            ([-1, 0], [0, -1]),
        ),
    ),
    Family(
        name="word_frequency",
        group="dicts",
        difficulty=2,
        params="s: str",
        returns="dict[str, int]",
        summary=(
            "Return a dict mapping each lower-cased word of s (words are separated by "
            "whitespace) to the number of times it occurs."
        ),
        example=("The cat and the hat",),
        implementations=(
            """
            counts = {}
            for w in s.lower().split():
                counts[w] = counts.get(w, 0) + 1
            return counts
            """,
            """
            import collections
            return dict(collections.Counter(s.lower().split()))
            """,
            """
            counts = {}
            for w in s.split():
                key = w.lower()
                counts.setdefault(key, 0)
                counts[key] += 1
            return counts
            """,
        ),
        reference=_word_frequency,
        draw=lambda rng: (
            " ".join(_pick(rng, "ab") + _word(rng, "aA", 0, 1) for _ in range(_int(rng, 0, 7))),
        ),
        edge_cases=(("",), ("a",), ("A a",), ("  Spaces   everywhere ",), ("ÉTÉ été",)),
    ),
    Family(
        name="most_common_char",
        group="dicts",
        difficulty=2,
        params="s: str",
        returns="str | None",
        summary=(
            "Return the character that occurs most often in s; on a tie, the one that occurs "
            "first in s; None if s is empty."
        ),
        example=("abracadabra",),
        implementations=(
            """
            if not s:
                return None
            counts = {}
            for c in s:
                counts[c] = counts.get(c, 0) + 1
            best = s[0]
            for c in counts:
                if counts[c] > counts[best]:
                    best = c
            return best
            """,
            """
            import collections
            if not s:
                return None
            return collections.Counter(s).most_common(1)[0][0]
            """,
            """
            if not s:
                return None
            return max(s, key=s.count)
            """,
        ),
        reference=_most_common_char,
        draw=lambda rng: (_word(rng, "abcé ", 0, 10),),
        edge_cases=(("",), ("a",), ("abc",), ("abb",), ("bba",), ("aabb",), ("ééa",)),
    ),
    Family(
        name="invert_dict",
        group="dicts",
        difficulty=2,
        params="d: dict[str, int]",
        returns="dict[int, list[str]]",
        summary=(
            "Return a dict mapping each value of d to the sorted list of the keys that have "
            "that value."
        ),
        example=({"a": 1, "b": 2, "c": 1},),
        implementations=(
            """
            out = {}
            for key, value in d.items():
                out.setdefault(value, []).append(key)
            for value in out:
                out[value].sort()
            return out
            """,
            """
            return {v: sorted(k for k in d if d[k] == v) for v in set(d.values())}
            """,
        ),
        reference=_invert,
        draw=_draw_invert,
        edge_cases=(({},), ({"a": 1},), ({"b": 1, "a": 1},), ({"x": 0, "y": 2, "z": 0},)),
    ),
    Family(
        name="jaccard",
        group="dicts",
        difficulty=2,
        params="a: set[int], b: set[int]",
        returns="float",
        summary=(
            "Return the Jaccard similarity of the non-empty sets a and b: the size of their "
            "intersection divided by the size of their union."
        ),
        example=({1, 2, 3}, {2, 3, 4}),
        implementations=(
            """
            return len(a & b) / len(a | b)
            """,
            """
            common = sum(1 for x in a if x in b)
            return common / (len(a) + len(b) - common)
            """,
        ),
        reference=lambda a, b: len(a & b) / len(a | b),
        draw=_draw_sets,
        edge_cases=(({1}, {1}), ({1}, {2}), ({-1, 0}, {0}), ({1, 2}, {1, 2, 3, 4})),
        approx=True,
    ),
    Family(
        name="first_unique_index",
        group="dicts",
        difficulty=2,
        params="s: str",
        returns="int",
        summary="Return the index of the first character of s that occurs only once, or -1.",
        example=("abcabd",),
        implementations=(
            """
            for i, c in enumerate(s):
                if s.count(c) == 1:
                    return i
            return -1
            """,
            """
            import collections
            counts = collections.Counter(s)
            for i, c in enumerate(s):
                if counts[c] == 1:
                    return i
            return -1
            """,
        ),
        reference=_first_unique,
        draw=lambda rng: (_word(rng, "abcd", 0, 8),),
        edge_cases=(("",), ("a",), ("aa",), ("aab",), ("ééx",)),
    ),
    Family(
        name="group_anagrams",
        group="dicts",
        difficulty=3,
        params="words: list[str]",
        returns="list[list[str]]",
        summary=(
            "Group the words that are anagrams of each other; return the groups, each sorted, "
            "as a sorted list."
        ),
        example=(["eat", "tea", "tan", "ate", "nat", "bat"],),
        implementations=(
            """
            groups = {}
            for w in words:
                groups.setdefault(''.join(sorted(w)), []).append(w)
            return sorted(sorted(g) for g in groups.values())
            """,
            """
            import collections
            groups = collections.defaultdict(list)
            for w in words:
                groups[tuple(sorted(w))].append(w)
            result = [sorted(g) for g in groups.values()]
            result.sort()
            return result
            """,
        ),
        reference=_group_anagrams,
        draw=_draw_anagrams,
        edge_cases=(([],), ([""],), (["a"],), (["ab", "ba", "abc"],), (["x", "x"],)),
    ),
    Family(
        name="two_sum",
        group="dicts",
        difficulty=3,
        params="xs: list[int], target: int",
        returns="tuple[int, int] | None",
        summary=(
            "Return indices (i, j) with i < j and xs[i] + xs[j] == target, choosing the "
            "smallest such j and then the smallest i; None if there is no such pair."
        ),
        example=([2, 7, 11, 15], 9),
        implementations=(
            """
            seen = {}
            for j, x in enumerate(xs):
                if target - x in seen:
                    return (seen[target - x], j)
                if x not in seen:
                    seen[x] = j
            return None
            """,
            """
            for j in range(len(xs)):
                for i in range(j):
                    if xs[i] + xs[j] == target:
                        return (i, j)
            return None
            """,
        ),
        reference=_two_sum,
        draw=_draw_two_sum,
        edge_cases=(([], 0), ([1], 2), ([1, 1], 2), ([3, 3, 3], 6), ([1, 2, 3], 7), ([-1, 1], 0)),
    ),
    Family(
        name="top_k_frequent",
        group="dicts",
        difficulty=3,
        params="xs: list[int], k: int",
        returns="list[int]",
        summary=(
            "Return the k most frequent values of xs, most frequent first and equal counts in "
            "ascending order of value (all distinct values if there are fewer than k)."
        ),
        example=([1, 1, 1, 2, 2, 3], 2),
        implementations=(
            """
            counts = {}
            for x in xs:
                counts[x] = counts.get(x, 0) + 1
            ordered = sorted(counts, key=lambda v: (-counts[v], v))
            return ordered[:k]
            """,
            """
            import collections
            counts = collections.Counter(xs)
            return sorted(counts, key=lambda v: (-counts[v], v))[:k]
            """,
            """
            import collections
            import heapq
            counts = collections.Counter(xs)
            return heapq.nsmallest(k, counts, key=lambda v: (-counts[v], v))
            """,
        ),
        reference=_top_k,
        draw=lambda rng: (_ints(rng, -3, 5, 0, 10), _int(rng, 0, 4)),
        edge_cases=(
            ([], 2),
            ([1], 0),
            ([1, 1, 2], 1),
            ([1, 2, 2, 3, 3], 2),
            ([4, 4, -1, -1, 5], 5),
        ),
    ),
    Family(
        name="subarray_sum_count",
        group="dicts",
        difficulty=4,
        params="xs: list[int], target: int",
        returns="int",
        summary=(
            "Return the number of non-empty runs of consecutive elements of xs that sum to target."
        ),
        example=([1, 2, 3, -3, 3], 3),
        implementations=(
            """
            seen = {0: 1}
            total = 0
            count = 0
            for x in xs:
                total += x
                count += seen.get(total - target, 0)
                seen[total] = seen.get(total, 0) + 1
            return count
            """,
            """
            count = 0
            for i in range(len(xs)):
                total = 0
                for j in range(i, len(xs)):
                    total += xs[j]
                    if total == target:
                        count += 1
            return count
            """,
            """
            import collections
            prefixes = collections.defaultdict(int)
            prefixes[0] = 1
            total = 0
            count = 0
            for x in xs:
                total += x
                count += prefixes[total - target]
                prefixes[total] += 1
            return count
            """,
        ),
        reference=_subarray_sum_count,
        draw=lambda rng: (_ints(rng, -3, 3, 0, 9), _int(rng, -3, 4)),
        edge_cases=(([], 0), ([0], 0), ([0, 0, 0], 0), ([1, 1, 1], 2), ([1, -1, 1], 1), ([3], 4)),
    ),
    Family(
        name="topological_order",
        group="dicts",
        difficulty=5,
        params="graph: dict[str, list[str]]",
        returns="list[str] | None",
        summary=(
            "graph maps every node to the nodes that must come after it (every node is a key). "
            "Return the alphabetically smallest ordering of all nodes that respects it, or None "
            "if there is a cycle."
        ),
        example=({"b": ["a"], "a": [], "c": ["a"]},),
        implementations=(
            """
            import heapq
            indegree = {node: 0 for node in graph}
            for node in graph:
                for nxt in graph[node]:
                    indegree[nxt] += 1
            ready = [node for node in graph if indegree[node] == 0]
            heapq.heapify(ready)
            order = []
            while ready:
                node = heapq.heappop(ready)
                order.append(node)
                for nxt in graph[node]:
                    indegree[nxt] -= 1
                    if indegree[nxt] == 0:
                        heapq.heappush(ready, nxt)
            return order if len(order) == len(graph) else None
            """,
            """
            remaining = set(graph)
            order = []
            while remaining:
                free = [n for n in remaining if not any(n in graph[m] for m in remaining)]
                if not free:
                    return None
                node = min(free)
                order.append(node)
                remaining.remove(node)
            return order
            """,
        ),
        reference=_topological,
        draw=_draw_graph,
        edge_cases=(
            ({},),
            ({"a": []},),
            ({"a": ["b"], "b": []},),
            ({"a": ["b"], "b": ["a"]},),
            ({"a": ["a"]},),
            ({"c": [], "b": [], "a": []},),
        ),
    ),
)

#: every family, in a fixed order (the generator's default)
FAMILIES: tuple[Family, ...] = _ARITHMETIC + _STRINGS + _LISTS + _DICTS


def family_by_name(name: str) -> Family:
    for family in FAMILIES:
        if family.name == name:
            return family
    raise KeyError(f"no code family named {name!r}")
