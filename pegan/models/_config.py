"""Config sections as module keyword arguments (shared by the model builders)."""

from __future__ import annotations

__all__ = ["module_kwargs"]


def module_kwargs(section) -> dict:
    """A config section (ConfigDict or dict) as keyword arguments of a Flax module: nested
    ConfigDicts become dicts and lists become tuples, so module attributes stay hashable."""
    def plain(v):
        v = v.to_dict() if hasattr(v, "to_dict") else v
        return tuple(plain(x) for x in v) if isinstance(v, list) else v
    return {k: plain(v) for k, v in section.items()}
