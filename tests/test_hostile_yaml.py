"""`flyte-connector test` refuses YAML alias bombs in task files and inputs with one line."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from connector_cli.errors import UsageError
from connector_cli.run.task_files import load_task, read_inputs


def bomb(key: str, levels: int = 9, width: int = 10) -> str:
    """A billion laughs: `levels` anchors each repeating the previous one `width` times."""
    lines = [f"{key}:", '  a0: &a0 ["lol"]']
    for i in range(1, levels + 1):
        refs = ", ".join([f"*a{i - 1}"] * width)
        lines.append(f"  a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_in_custom_is_refused_quickly(tmp_path: Path) -> None:
    task = tmp_path / "task.yaml"
    task.write_text("type: shell\n" + bomb("custom"))
    started = time.perf_counter()
    with pytest.raises(UsageError) as info:
        load_task(task)
    assert time.perf_counter() - started < 5
    message = str(info.value)
    assert str(task) in message and "alias" in message and "\n" not in message


def test_alias_bomb_in_inputs_is_refused(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs.yaml"
    inputs.write_text(bomb("rows"))
    with pytest.raises(UsageError) as info:
        read_inputs(inputs)
    assert str(inputs) in str(info.value) and "alias" in str(info.value)


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs.yaml"
    inputs.write_text("x: &x [1, *x]\n")
    with pytest.raises(UsageError) as info:
        read_inputs(inputs)
    assert "refers to itself" in str(info.value)


def test_a_few_aliases_still_work(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs.yaml"
    inputs.write_text("base: &b {n: 1}\ncopy: *b\nmany: [*b, *b, *b]\n")
    assert read_inputs(inputs) == {"base": {"n": 1}, "copy": {"n": 1}, "many": [{"n": 1}] * 3}


def test_deeply_nested_json_is_one_line(tmp_path: Path) -> None:
    task, inputs = tmp_path / "task.json", tmp_path / "inputs.json"
    task.write_text("[" * 100_000)
    inputs.write_text("[" * 100_000)
    for call in (lambda: load_task(task), lambda: read_inputs(inputs)):
        with pytest.raises(UsageError) as info:
            call()
        assert "\n" not in str(info.value)
