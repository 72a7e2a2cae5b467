"""runtime/engine/script_loader.py and ScriptSet: every shipped script loads with its
includes resolved and its contract on top, Redis compiles it, and a connection
registers each script once."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

import pytest
from redis.asyncio import Redis

from runtime.engine import script_loader
from runtime.engine.client import Client
from runtime.engine.keys import ChannelKeys
from runtime.engine.script_loader import ScriptNotFound, load_script
from runtime.engine.scripts import ChannelScripts, ScriptSet

LUA = files("runtime.engine").joinpath("lua")
SCRIPTS = sorted(
    entry.name.removesuffix(".lua")
    for entry in LUA.iterdir()
    if entry.is_file() and entry.name.endswith(".lua")
)
INCLUDE = re.compile(r'^--- @include "([^"]+)"', re.MULTILINE)


# What ScriptSet registers; the dashboard's browse scripts (runtime.engine.browse) and the
# schedules' (runtime.engine.schedules) register the rest of lua/.
SCRIPT_SET = [
    "bulk",
    "cancel",
    "discard",
    "enqueue",
    "finish",
    "heartbeat",
    "limit",
    "pause",
    "progress",
    "reclaim",
    "requeue",
    "restamp",
    "retry_failed",
    "start",
    "take",
]
ELSEWHERE = [
    "filter_finished",
    *(f"schedule_{step}" for step in ("advance", "done", "pause", "recover", "remove", "upsert")),
]


def test_the_shipped_scripts_are_found() -> None:
    # Nothing in lua/ that no module registers.
    assert sorted([*SCRIPT_SET, *ELSEWHERE]) == SCRIPTS


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_has_its_includes_resolved(name: str) -> None:
    source = load_script(name)
    assert "@include" not in source
    raw = LUA.joinpath(f"{name}.lua").read_text(encoding="utf-8")
    for included in INCLUDE.findall(raw):
        body = LUA.joinpath(*included.split("/")).read_text(encoding="utf-8")
        function = re.search(r"^local function (\w+)", body, re.MULTILINE)
        assert function is not None, included
        # The include's function is defined exactly once, in the script sent to Redis.
        assert source.count(function.group(0)) == 1, (name, included)


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_opens_with_its_contract(name: str) -> None:
    source = load_script(name)
    assert source.startswith("--[[\n")
    header = source[: source.index("]]")]
    assert "KEYS" in header
    assert "ARGV" in header
    assert "Returns" in header


@pytest.mark.parametrize("name", SCRIPTS)
async def test_redis_compiles_the_script(redis: Redis, name: str) -> None:
    source = load_script(name)
    sha = await redis.script_load(source)
    assert sha == hashlib.sha1(source.encode()).hexdigest()


def test_load_script_is_cached() -> None:
    assert load_script("finish") is load_script("finish")


@pytest.fixture
def lua_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A lua/ folder of the test's own, seen by the loader instead of the shipped one."""
    (tmp_path / "include").mkdir()
    monkeypatch.setattr(script_loader, "_folder", lambda: tmp_path)
    load_script.cache_clear()
    yield tmp_path
    load_script.cache_clear()


def test_an_include_named_twice_is_inlined_once(lua_folder: Path) -> None:
    (lua_folder / "include" / "a.lua").write_text("local function a() return 1 end\n")
    (lua_folder / "include" / "b.lua").write_text(
        '--- @include "include/a.lua"\nlocal function b() return a() + 1 end\n'
    )
    (lua_folder / "main.lua").write_text(
        "--[[ main ]]\n"
        '--- @include "include/a.lua"\n'
        '--- @include "include/b.lua"\n'
        '--- @include "include/a.lua"\n'
        "return b()\n"
    )
    source = load_script("main")
    assert source.count("local function a()") == 1
    assert source.count("local function b()") == 1
    assert "@include" not in source
    # a comes before b, which uses it
    assert source.index("local function a()") < source.index("local function b()")
    assert source.rstrip().endswith("return b()")


def test_pieces_that_include_each_other_are_each_inlined_once(lua_folder: Path) -> None:
    (lua_folder / "include" / "a.lua").write_text(
        '--- @include "include/b.lua"\nlocal function a() return 1 end\n'
    )
    (lua_folder / "include" / "b.lua").write_text(
        '--- @include "include/a.lua"\nlocal function b() return 2 end\n'
    )
    (lua_folder / "main.lua").write_text('--- @include "include/a.lua"\nreturn a()\n')

    source = load_script("main")

    assert source.count("local function a()") == 1
    assert source.count("local function b()") == 1
    assert "@include" not in source


def test_a_missing_include_names_the_file(lua_folder: Path) -> None:
    (lua_folder / "main.lua").write_text('--- @include "include/nope.lua"\nreturn 1\n')
    with pytest.raises(ScriptNotFound, match=r"'include/nope\.lua'.*included by main\.lua"):
        load_script("main")


def test_a_missing_include_of_an_include_names_both(lua_folder: Path) -> None:
    (lua_folder / "include" / "a.lua").write_text('--- @include "include/gone.lua"\n')
    (lua_folder / "main.lua").write_text('--- @include "include/a.lua"\nreturn 1\n')
    with pytest.raises(ScriptNotFound, match=r"'include/gone\.lua'.*included by include/a\.lua"):
        load_script("main")


def test_a_missing_script_names_the_file(lua_folder: Path) -> None:
    with pytest.raises(ScriptNotFound, match=r"'absent\.lua'"):
        load_script("absent")


def test_a_script_set_registers_each_script_once(redis: Redis) -> None:
    shared = ScriptSet(redis)
    first = ChannelScripts(shared, ChannelKeys("p", "one"))
    second = ChannelScripts(shared, ChannelKeys("p", "two"))
    for name in SCRIPT_SET:
        script = getattr(first._scripts, name)
        assert getattr(second._scripts, name) is script
        assert script.sha == hashlib.sha1(load_script(name).encode()).hexdigest()
    assert len({getattr(shared, name).sha for name in SCRIPT_SET}) == len(SCRIPT_SET)


async def test_a_client_shares_one_script_set_across_channels(redis: Redis) -> None:
    client = Client(redis, prefix="p")
    one, two = client.scripts("one"), client.scripts("two")
    assert one is client.scripts("one")
    assert one.keys != two.keys
    assert one._scripts is two._scripts
