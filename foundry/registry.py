"""Finding domain plugins: entry points in the ``foundry.domains`` group, or ``module:attr``.

A run names its domain; an optional allow-list in the run config pins which plugins may load,
so a cluster run is reproducible and a stray installed plugin cannot change it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any

from foundry.contract import Domain, FoundryError

ENTRY_POINT_GROUP = "foundry.domains"


class DomainNotFound(FoundryError):
    pass


def available_domains() -> dict[str, str]:
    """Installed domain plugins: name -> ``module:attr``."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _import_target(target: str) -> object:
    module_name, _, attr = target.partition(":")
    if not attr:
        raise DomainNotFound(f"{target!r} is not 'module:attr'")
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise DomainNotFound(f"cannot import {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise DomainNotFound(f"{module_name!r} has no attribute {attr!r}") from exc
    return obj


def load_domain(
    spec: str,
    allowed: Sequence[str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> Domain:
    """Instantiate the domain named ``spec`` (entry point name or ``module:attr``).

    ``allowed``: if given, ``spec`` must be in it (the run config's allow-list).
    ``options``: the ``[domain_options]`` table, validated against the domain's ``Options``
    (:class:`~foundry.options.OptionsError` when it does not fit).
    """
    if allowed is not None and spec not in allowed:
        raise DomainNotFound(f"domain {spec!r} is not in the run's allow-list {list(allowed)}")
    installed = available_domains()
    if spec in installed:
        target = installed[spec]
    elif ":" in spec:
        target = spec
    else:
        names = ", ".join(sorted(installed)) or "none"
        raise DomainNotFound(f"no domain {spec!r}; installed: {names} (or give module:attr)")
    obj = _import_target(target)
    if isinstance(obj, type):
        if not issubclass(obj, Domain):
            raise DomainNotFound(f"{target!r} is not a foundry.contract.Domain")
        from foundry.options import parse_options

        parsed = parse_options(obj, options)
        domain = obj(options=parsed) if parsed is not None else obj()
    else:
        domain = obj
        if options and isinstance(domain, Domain):
            raise DomainNotFound(f"{target!r} is an instance; options need the class")
    if not isinstance(domain, Domain):
        raise DomainNotFound(f"{target!r} is not a foundry.contract.Domain")
    return domain
