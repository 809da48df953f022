"""Domain options: a plugin's typed settings (basis set, Lean project, sandbox policy).

A domain declares ``Options``, a dataclass. The run config's ``[domain_options]`` table is
checked against it here, once, in the coordinator - unknown keys and wrong types are a config
error, not a surprise on a worker an hour later. The validated options travel to workers as
canonical JSON and are recorded with every example.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from foundry.contract import Domain, canonical_json


class OptionsError(ValueError):
    """``[domain_options]`` does not fit the domain's ``Options``."""


def parse_options(domain_cls: type[Domain], values: Mapping[str, Any] | None) -> Any:
    """Build ``domain_cls.Options`` from ``values``; ``None`` for a domain without options."""
    options_type = getattr(domain_cls, "Options", None)
    values = dict(values or {})
    name = getattr(domain_cls, "name", domain_cls.__name__)
    if options_type is None:
        if values:
            raise OptionsError(f"domain {name!r} takes no options, got {sorted(values)}")
        return None
    if not dataclasses.is_dataclass(options_type):
        raise OptionsError(f"{name}.Options must be a dataclass, not {options_type!r}")
    known = {f.name for f in dataclasses.fields(options_type) if f.init}
    unknown = sorted(set(values) - known)
    if unknown:
        raise OptionsError(
            f"unknown option(s) {unknown} for domain {name!r}; it has {sorted(known)}"
        )
    from pydantic import TypeAdapter, ValidationError

    try:
        return TypeAdapter(options_type).validate_python(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "options"
        raise OptionsError(
            f"domain {name!r} option {where}: {first.get('msg', 'invalid')}"
        ) from None
    except (TypeError, ValueError) as exc:  # the dataclass's own __post_init__ checks
        raise OptionsError(f"domain {name!r} options: {exc}") from None


def options_to_dict(options: Any) -> dict[str, Any]:
    if options is None:
        return {}
    return dataclasses.asdict(options)


def options_json(options: Any) -> str:
    """Canonical JSON of a domain's options (``{}`` for none): provenance and the wire form."""
    return canonical_json(options_to_dict(options))
