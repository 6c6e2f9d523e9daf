"""What the versioned policy files (drift, promotion) share: their error type and overrides."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


class PolicyError(ValueError):
    """A policy file (or a run-time override of it) is invalid; the message names the key."""


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` applied key by key, nested mappings merged, inputs untouched."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
