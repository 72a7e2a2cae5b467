"""hypothesis on the channels.yaml loader: whatever the file holds, `load_config` returns a
configuration or raises ConfigError whose every problem says where (file, a line >= 1 or
0 for an unreadable file, a column) and what; never another exception.

Inputs: YAML-ish text, random nested data dumped as YAML, mutations of the reference
channels.yaml (keys dropped or replaced, values swapped for random ones, lines cut), and
values nested thousands of levels deep or inside their own anchor (bounded by
generator/yaml_source.py).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generator.config import load_config
from generator.errors import ConfigError
from tests.conftest import ROOT

EXAMPLES = int(os.environ.get("FUZZ_CONFIG_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
REFERENCE = (ROOT / "channels.yaml").read_text(encoding="utf-8")
REFERENCE_DATA: dict[str, Any] = yaml.safe_load(REFERENCE)
KEYS = [
    "version", "defaults", "channels", "handler", "concurrency", "limiter", "max", "duration",
    "key", "stalled", "interval", "max_count", "retry", "attempts", "backoff", "type", "delay",
    "max_delay", "jitter", "payload", "result", "$ref", "keep", "completed", "failed", "count",
    "age", "description", "batch", "email", "sms", "to", "registry",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    st.sampled_from(["1s", "500ms", "0", "-1s", "1x", "notifications.sms:send_sms", "a:b", ":"]),
    st.sampled_from(["schema/sms.json", "schema/missing.json", "../x.json", "/etc/passwd"]),
)
data = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), children, max_size=5
        ),
    ),
    max_leaves=25,
)
yamlish = st.text(
    alphabet=st.sampled_from(list("abc:-{}[],'\"&*!|>#% \n\t\\0123456789.$@`?~=")), max_size=200
)


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder of its own per test (hypothesis runs every example in one test call); a
    link to the reference schema/ and notifications/ beside the file, so the reference's
    `$ref`s and handlers resolve and unmutated parts can be valid."""
    with tempfile.TemporaryDirectory(prefix="cfgfuzz-") as name:
        path = Path(name)
        for linked in ("schema", "notifications"):
            (path / linked).symlink_to(ROOT / linked, target_is_directory=True)
        yield path


def _check(folder: Path, content: str | bytes) -> None:
    path = folder / "channels.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    problems = []
    try:
        load_config(path)
    except ConfigError as error:
        problems = error.problems
        assert problems, "a ConfigError without problems"
    for problem in problems:
        assert problem.file, problem
        assert isinstance(problem.line, int), problem
        assert isinstance(problem.column, int), problem
        assert problem.line >= 1 or (problem.line == 0 and problem.column == 0), problem
        assert problem.column >= (1 if problem.line else 0), problem
        assert problem.message.strip(), problem
        assert str(problem)


@FUZZ
@given(text=yamlish)
def test_yamlish_text(folder: Path, text: str) -> None:
    _check(folder, text)


@FUZZ
@given(text=st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_random_text(folder: Path, text: str) -> None:
    _check(folder, text)


def test_a_file_that_is_not_utf8(folder: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_write_bytes(folder, b"version: 1\nchannels: {}\n# caf\xe9\n"))
    assert [(p.line, p.column) for p in caught.value.problems] == [(3, 1)]
    assert "not UTF-8" in caught.value.problems[0].message


def _write_bytes(folder: Path, content: bytes) -> Path:
    path = folder / "channels.yaml"
    path.write_bytes(content)
    return path


@FUZZ
@given(value=data)
def test_random_data_dumped_as_yaml(folder: Path, value: Any) -> None:
    _check(folder, yaml.safe_dump(value, allow_unicode=True))


@FUZZ
@given(value=st.dictionaries(st.sampled_from(KEYS), data, max_size=4))
def test_random_channels(folder: Path, value: dict[str, Any]) -> None:
    _check(folder, yaml.safe_dump({"version": 1, "channels": {"sms": value}}, allow_unicode=True))


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


@st.composite
def mutated_reference(draw: st.DrawFn) -> str:
    document = yaml.safe_load(REFERENCE)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(document)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "rename"]))
        if action == "replace":
            parent[path[-1]] = draw(data)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS))] = parent.pop(path[-1])
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False)


@FUZZ
@given(text=mutated_reference())
def test_mutations_of_the_reference(folder: Path, text: str) -> None:
    _check(folder, text)


@FUZZ
@given(cut=st.integers(min_value=0, max_value=len(REFERENCE)), junk=yamlish)
def test_the_reference_cut_and_spliced(folder: Path, cut: int, junk: str) -> None:
    _check(folder, REFERENCE[:cut] + junk + REFERENCE[cut:])


@FUZZ
@given(
    depth=st.integers(min_value=1, max_value=3000),
    openers=st.lists(st.sampled_from(["[", "{a: ", "[b, ", "{c: d, e: "]), min_size=1, max_size=3),
    anchored=st.booleans(),
)
def test_deep_nesting_and_aliases(
    folder: Path, depth: int, openers: list[str], anchored: bool
) -> None:
    """Nesting down to thousands of levels, optionally inside an anchor that its innermost
    value aliases (`&x [[...*x...]]`, infinitely deep): a ConfigError with its place,
    never a RecursionError."""
    chain = [openers[level % len(openers)] for level in range(depth)]
    closing = "".join("]" if opener.startswith("[") else "}" for opener in reversed(chain))
    value = ("&x " if anchored else "") + "".join(chain) + ("*x" if anchored else "1") + closing
    _check(folder, REFERENCE.replace("concurrency: 10", f"concurrency: {value}", 1))


def test_the_reference_is_valid(folder: Path) -> None:
    _check(folder, REFERENCE)
    assert load_config(_write(folder, REFERENCE)).channels


def _write(folder: Path, text: str) -> Path:
    path = folder / "channels.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_an_unknown_tag(folder: Path) -> None:
    _check_strictly(folder, "version: !0 1\nchannels: {}\n")


def _check_strictly(folder: Path, text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(folder, text))
    assert all(problem.line >= 1 for problem in caught.value.problems)


def test_unreadable_file(folder: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(folder / "missing.yaml")
    assert [(p.line, p.column) for p in caught.value.problems] == [(0, 0)]
