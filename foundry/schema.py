"""Fast validation of candidate payloads against a domain's JSON schema.

Every candidate is validated before its rule check, so validation sits on the hot path of the
loop. ``jsonschema`` interprets the schema on every call (about 2 ms for a 13-part circuit);
``fastjsonschema`` compiles it to Python once (tens of microseconds). fastjsonschema knows
drafts 4, 6 and 7 only, and silently ignores keywords it does not know - a silent pass is the
one thing a validator must never do - so a schema that uses any keyword introduced after
draft 7 is validated by ``jsonschema`` (Draft 2020-12) instead: slower, never wrong.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import fastjsonschema
import jsonschema

__all__ = ["POST_DRAFT7_KEYWORDS", "PayloadValidator"]

#: Keywords that only 2019-09 / 2020-12 define; their presence selects the slow, complete path.
POST_DRAFT7_KEYWORDS = frozenset(
    {
        "$defs",
        "$anchor",
        "$dynamicRef",
        "$dynamicAnchor",
        "$recursiveRef",
        "$recursiveAnchor",
        "$vocabulary",
        "prefixItems",
        "dependentRequired",
        "dependentSchemas",
        "unevaluatedItems",
        "unevaluatedProperties",
        "minContains",
        "maxContains",
    }
)
_DRAFT7 = "http://json-schema.org/draft-07/schema#"


def _keywords(node: Any) -> Iterator[str]:
    """Every key used anywhere in the schema (over-approximates: property names count too,
    which can only send a schema to the slow path, never to a wrong one)."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield str(key)
            yield from _keywords(value)
    elif isinstance(node, list):
        for value in node:
            yield from _keywords(value)


class PayloadValidator:
    """``validator(payload) -> None | reason``: the first violation as one line of text."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        jsonschema.validators.validator_for(schema).check_schema(schema)
        self.wants_object = schema.get("type") == "object"
        self.compiled = not (POST_DRAFT7_KEYWORDS & set(_keywords(schema)))
        self._fast: Callable[[Any], Any] | None = None
        self._slow: jsonschema.protocols.Validator | None = None
        if self.compiled:
            draft7 = copy.deepcopy(dict(schema))
            draft7["$schema"] = _DRAFT7
            # use_default=False: a validator must not fill in (mutate) the payload it judges
            self._fast = fastjsonschema.compile(draft7, use_default=False)
        else:
            self._slow = jsonschema.Draft202012Validator(schema)

    def __call__(self, payload: Any) -> str | None:
        if self.wants_object and not isinstance(payload, Mapping):
            return "payload is not an object"
        if self._fast is not None:
            try:
                self._fast(payload)
            except fastjsonschema.JsonSchemaValueException as exc:
                return f"schema: {exc.message}"[:500]
            return None
        assert self._slow is not None
        error = jsonschema.exceptions.best_match(self._slow.iter_errors(payload))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "payload"
        return f"schema: {where}: {error.message}"[:500]
