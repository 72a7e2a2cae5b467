"""Reads the Lua scripts shipped in `runtime/engine/lua/` and resolves their includes.

A script pulls shared functions in with a line of its own:

    --- @include "include/limit.lua"

The line is replaced by that file's text (paths relative to the `lua/` folder), each file
at most once per script however often it is named, so a script can include pieces that
include each other. Redis sees one self-contained script; its SHA1 is that text's.
"""

from __future__ import annotations

import functools
import re
from importlib.resources import files
from importlib.resources.abc import Traversable

from runtime.errors import ChannelkitError

__all__ = ["ScriptNotFound", "load_script"]

_INCLUDE = re.compile(r'^--- @include "(?P<path>[^"]+)"\s*$', re.MULTILINE)


class ScriptNotFound(ChannelkitError, LookupError):
    """A script or an include names a file that is not in `runtime/engine/lua/`."""


def _folder() -> Traversable:
    return files("runtime.engine").joinpath("lua")


@functools.cache
def load_script(name: str) -> str:
    """The source of `lua/<name>.lua`, includes resolved."""
    return _resolve(f"{name}.lua", seen=set(), chain=())


def _read(path: str, chain: tuple[str, ...]) -> str:
    source = _folder().joinpath(*path.split("/"))
    if not source.is_file():
        named_by = f" (included by {chain[-1]})" if chain else ""
        raise ScriptNotFound(f"no Lua file {path!r} in runtime/engine/lua{named_by}")
    return source.read_text(encoding="utf-8")


def _resolve(path: str, seen: set[str], chain: tuple[str, ...]) -> str:
    # `seen` also ends include cycles: a file already inlined is never read again.
    seen.add(path)
    text = _read(path, chain)

    def include(match: re.Match[str]) -> str:
        wanted = match.group("path")
        if wanted in seen:
            return ""
        return _resolve(wanted, seen, (*chain, path)).rstrip("\n")

    return _INCLUDE.sub(include, text)
