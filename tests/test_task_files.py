"""connector_cli.run.task_files: task templates in every form, and inputs files and pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from flyteidl2.core.tasks_pb2 import TaskTemplate
from flyteidl2.task.task_definition_pb2 import TaskSpec
from google.protobuf import json_format

from connector_cli.errors import UsageError
from connector_cli.run.task_files import load_task, read_inputs
from tests.conftest import JOB_TASK


def template_dict() -> dict[str, Any]:
    return yaml.safe_load(JOB_TASK.read_text())["taskTemplate"]


@pytest.mark.parametrize("form", ["binary TaskTemplate", "binary TaskSpec", "proto-JSON TaskTemplate",
                                  "proto-JSON TaskSpec", "YAML TaskTemplate", "YAML TaskSpec"])
def test_every_template_form_loads_to_the_same_template(tmp_path: Path, form: str) -> None:
    spec = json_format.ParseDict(yaml.safe_load(JOB_TASK.read_text()), TaskSpec())
    message = spec if form.endswith("TaskSpec") else spec.task_template
    suffix = {"binary": ".pb", "proto-JSON": ".json", "YAML": ".yml"}[form.split()[0]]
    path = tmp_path / f"task{suffix}"
    if suffix == ".pb":
        path.write_bytes(message.SerializeToString())
    elif suffix == ".json":
        path.write_text(json_format.MessageToJson(message))
    else:
        path.write_text(yaml.safe_dump(json_format.MessageToDict(message)))
    loaded = load_task(path)
    assert loaded.form == form
    assert loaded.template == spec.task_template
    assert loaded.category == ("job", 0)
    assert sorted(loaded.defaults) == (["outcome", "record", "seconds"] if "Spec" in form else [])


def test_form_is_detected_from_content_not_suffix(tmp_path: Path) -> None:
    path = tmp_path / "task.json"
    path.write_bytes(TaskTemplate(type="job").SerializeToString())
    assert load_task(path).form == "binary TaskTemplate"
    path = tmp_path / "task.pb"
    path.write_text("type: job\n")
    assert load_task(path).form == "YAML TaskTemplate"


def test_a_file_that_is_no_template_names_every_form_tried(tmp_path: Path) -> None:
    path = tmp_path / "task.pb"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UsageError) as err:
        load_task(path)
    text = str(err.value)
    assert text.startswith(f"'{path}' is not a task template; tried binary TaskSpec (")
    for form in ("binary TaskTemplate (", "proto-JSON (", "YAML ("):
        assert form in text
    assert "\n" not in text


def test_template_errors_are_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"cannot read task template '.*nope.yaml': No such file"):
        load_task(tmp_path / "nope.yaml")
    path = tmp_path / "t.yaml"
    path.write_text("id: {name: x}\n")
    with pytest.raises(UsageError, match=r"has no type; set `type` to the task type"):
        load_task(path)
    path.write_text("type: job\ncolour: blue\n")
    with pytest.raises(UsageError, match=r"t.yaml': invalid TaskTemplate: .*no field named \"colour\""):
        load_task(path)
    path.write_bytes(TaskTemplate(id={"name": "x"}).SerializeToString())
    with pytest.raises(UsageError, match="has no type"):
        load_task(path)


def test_inputs_pairs_parse_json_else_string_and_win_over_the_file(tmp_path: Path) -> None:
    file = tmp_path / "inputs.json"
    file.write_text('{"outcome": "fail", "seconds": 2}')
    values = read_inputs(file, ["outcome=succeed", "n=3", 's="3"', "l=[1, 2]", "t=not json"])
    assert values == {"outcome": "succeed", "seconds": 2, "n": 3, "s": "3", "l": [1, 2], "t": "not json"}
    file.write_text("[1]")
    with pytest.raises(UsageError, match="must hold an object"):
        read_inputs(file)
    with pytest.raises(UsageError, match="-i expects NAME=VALUE"):
        read_inputs(None, ["novalue"])
