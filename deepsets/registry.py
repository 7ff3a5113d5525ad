"""One small table type for everything that is registered by name (fusion heads, their builders,
task kinds), and the plug-ins that fill it in every process (torch-free).

    heads = Registry("fusion head", "heads")
    heads.register("deepset", traits)
    heads.get("deepset")            # the traits
    heads.get("gated")              # ValueError: unknown fusion head 'gated' (known heads: deepset)
    heads.names()                   # ('deepset',)

Plug-ins: a head or task kind is registered by importing the module that registers it. Ray
workers, Ray Data actors and served models are other processes that never import a user's module
by themselves, so an installed package names its registering modules under the entry-point group
:data:`PLUGIN_GROUP`::

    [project.entry-points."deepsets.plugins"]
    gated_sum = "my_heads.gated_sum"

The first read of any registry in a process (a lookup, its names, a membership test) imports
every module named there, once; a lookup that still misses raises with the known names.
"""

from __future__ import annotations

from importlib import metadata
from typing import Dict, Generic, Iterable, Iterator, Optional, Tuple, TypeVar

PLUGIN_GROUP = "deepsets.plugins"
"""Entry-point group: any name -> a module whose import registers heads, task kinds, ..."""

V = TypeVar("V")

_plugins_loaded = False


def load_plugins() -> None:
    """Import every module named under :data:`PLUGIN_GROUP`, the first time it is called in this
    process (later calls do nothing, also while the first one is still importing).

    Raises:
        ValueError: when named modules fail to import (after trying every one), naming each
            entry point, its module and the error.
    """
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True  # set first: a plug-in that reads a registry while it imports does not recurse
    failed = []
    for entry in metadata.entry_points(group=PLUGIN_GROUP):
        try:
            entry.load()
        except Exception as err:  # noqa: BLE001 - whatever a broken plug-in raises, say which one
            failed.append(f"{entry.name} = {entry.value!r}: {type(err).__name__}: {err}")
    if failed:
        raise ValueError(f"plug-ins ({PLUGIN_GROUP}) that failed to import: {'; '.join(failed)}")


class Registry(Generic[V]):
    """Values registered by name, in registration order.

    Args:
        what: what one entry is, in messages ("fusion head", "task kind").
        plural: the word for the known names in the unknown-name message ("heads", "kinds").
        entries: ``(name, value)`` pairs registered up front (the built-in ones).

    Raises:
        ValueError: for two built-in entries of one name.
    """

    def __init__(self, what: str, plural: str, entries: Iterable[Tuple[str, V]] = ()) -> None:
        self.what, self.plural = what, plural
        self._entries: Dict[str, V] = {}
        for name, value in entries:
            if name in self._entries:
                raise ValueError(f"{what} {name!r} is listed twice")
            self._entries[name] = value

    def register(self, name: str, value: V, *, replace: bool = False, kind_of_value: str = "value") -> None:
        """Add ``name``; registering an equal value again is a no-op.

        Args:
            name: the name it is looked up by.
            value: what it stands for.
            replace: let a different value replace one registered under ``name``.
            kind_of_value: what the value is, in the duplicate message ("traits").

        Raises:
            ValueError: for an empty name, or a name registered already with a different value
                (unless ``replace``).
        """
        if not name or not isinstance(name, str):
            raise ValueError(f"a {self.what} needs a name (found {name!r})")
        known = self._entries.get(name)
        if known is not None and known != value and not replace:
            raise ValueError(f"{self.what} {name!r} is already registered with other {kind_of_value}: {known}")
        self._entries[name] = value

    def find(self, name: str) -> Optional[V]:
        """The value of ``name``, or None when nobody registered it (plug-ins loaded first)."""
        load_plugins()
        try:
            return self._entries.get(name)
        except TypeError:  # an unhashable name is no registered one
            return None

    def get(self, name: str) -> V:
        """The value of ``name``.

        Raises:
            ValueError: for a name nobody registered (nor any plug-in), listing the known ones.
        """
        value = self.find(name)
        if value is None:
            raise ValueError(f"unknown {self.what} {name!r} (known {self.plural}: {', '.join(self.names())})")
        return value

    def names(self) -> Tuple[str, ...]:
        """Every registered name, in registration order."""
        load_plugins()
        return tuple(self._entries)

    def items(self) -> Tuple[Tuple[str, V], ...]:
        """``(name, value)`` of every entry, in registration order."""
        load_plugins()
        return tuple(self._entries.items())

    def copy(self) -> "Registry[V]":
        """A registry with the same entries (registering in it leaves this one as it is)."""
        return Registry(self.what, self.plural, self._entries.items())

    def __contains__(self, name: object) -> bool:
        return self.find(name) is not None  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self._entries)})"
