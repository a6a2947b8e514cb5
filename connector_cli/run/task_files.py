"""Task templates and inputs for a run: read from files, or made from plain Python.

`load_task` and `read_inputs` read what `flyte-connector test` is given; `make_template`
and `make_inputs` build the same messages from Python for the test kit and `template`.

Accepted forms: a binary `flyteidl2.core.TaskTemplate`, a binary `flyteidl2.task.TaskSpec`
wrapping one (its `default_inputs` become input defaults), or either of those written as
proto-JSON or YAML. The form is detected from the content (the file suffix only decides
what is tried first), because binary protobuf parses leniently: a candidate is accepted
only when it parses with no unknown fields anywhere and names a task type.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Optional

from flyteidl2.core.identifier_pb2 import Identifier
from flyteidl2.core.interface_pb2 import TypedInterface, Variable, VariableEntry, VariableMap
from flyteidl2.core.tasks_pb2 import TaskTemplate
from flyteidl2.task.task_definition_pb2 import TaskSpec
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet

from connector_cli.errors import LiteralError, UsageError
from connector_cli.literals import json_to_inputs, literal_type_of
from connector_cli.run.syntax import json_error, safe_load_bounded, yaml_error

if TYPE_CHECKING:
    from flyteidl2.core.literals_pb2 import Literal
    from flyteidl2.task.common_pb2 import Inputs
    from google.protobuf.message import Message


@dataclasses.dataclass(frozen=True)
class LoadedTask:
    """A task template read from `path`, the form it was in, and its input defaults;
    `connector` names the connector class a task object says runs it (`module:Class`)."""

    template: TaskTemplate
    defaults: dict[str, Literal]
    path: str
    form: str
    connector: str = ""

    @property
    def category(self) -> tuple[str, int]:
        """The (task type, version) a connector must serve to run this template."""
        return (self.template.type, self.template.task_type_version)


class _NotThisForm(Exception):
    """A candidate form did not fit; the message says why, briefly."""


def load_task(path: str | os.PathLike[str]) -> LoadedTask:
    """Read a task template file in any accepted form.

    Raises `UsageError` with one line: the file is missing, it fits none of the forms
    (naming each form tried and why it did not fit), or the template names no task type.
    """
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read task template {str(file)!r}: {exc.strerror}") from None
    tried: list[str] = []
    syntax: _SyntaxError | None = None
    for form, parse in _candidates(file.suffix.lower()):
        try:
            spec_or_template = parse(data)
        except _NotThisForm as exc:
            tried.append(f"{form} ({exc})")
            continue
        except _SyntaxError as exc:
            syntax = exc
            continue
        except UsageError as exc:
            raise UsageError(f"task template {str(file)!r}: {exc}") from None
        return _loaded(spec_or_template, str(file), form)
    if syntax is not None:
        raise UsageError(f"task template {str(file)!r} is not valid {syntax}")
    raise UsageError(
        f"{str(file)!r} is not a task template; tried {'; '.join(tried)}"
    )


class _SyntaxError(Exception):
    """A file named .json/.yaml/.yml is text in that format with a syntax error: its
    message is the format's error alone, with line and column."""


def _candidates(suffix: str) -> list[tuple[str, Callable[[bytes], Any]]]:
    """The forms to try, in order. For a .json or .yaml/.yml file its own format comes
    first, and when no form fits, that format's syntax error is the one reported."""
    binary: list[tuple[str, Callable[[bytes], Any]]] = [
        ("binary TaskSpec", _binary_spec), ("binary TaskTemplate", _binary_template)]
    if suffix == ".json":
        return [("proto-JSON", functools.partial(_proto_json, strict=True)), *binary]
    if suffix in (".yaml", ".yml"):
        return [("YAML", functools.partial(_yaml, strict=True)), *binary]
    return binary + [("proto-JSON", _proto_json), ("YAML", _yaml)]


def _loaded(message: Message, path: str, form: str) -> LoadedTask:
    defaults: dict[str, Literal] = {}
    if isinstance(message, TaskSpec):
        template = message.task_template
        for named in message.default_inputs:
            if named.parameter.HasField("default"):
                defaults[named.name] = named.parameter.default
        form = form if "TaskSpec" in form else f"{form} TaskSpec"
    else:
        template = message
        form = form if "TaskTemplate" in form else f"{form} TaskTemplate"
    if not template.type:
        raise UsageError(
            f"task template {path!r} has no type; set `type` to the task type a connector "
            "serves (see `flyte-connector list`)"
        )
    return LoadedTask(template=template, defaults=defaults, path=path, form=form)


def _binary_spec(data: bytes) -> Message:
    spec = _strict_binary(TaskSpec, data)
    if not spec.HasField("task_template"):
        raise _NotThisForm("no task_template")
    if not spec.task_template.type:
        raise _NotThisForm("its task_template has no type")
    return spec


def _binary_template(data: bytes) -> Message:
    template = _strict_binary(TaskTemplate, data)
    if not template.type and template.ByteSize() == 0:
        raise _NotThisForm("empty")
    return template


def _strict_binary(cls: Any, data: bytes) -> Any:
    try:
        message = cls.FromString(data)
    except DecodeError:
        raise _NotThisForm("not valid protobuf wire data") from None
    if _has_unknown_fields(message):
        raise _NotThisForm(f"fields unknown to {cls.DESCRIPTOR.name}")
    return message


def _has_unknown_fields(message: Message) -> bool:
    """True when `message` or any message inside it kept fields its schema does not know."""
    if len(UnknownFieldSet(message)):
        return True
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            items = value.values() if value_field.message_type else []
        elif field.is_repeated:
            items = value
        else:
            items = [value]
        if any(_has_unknown_fields(item) for item in items):
            return True
    return False


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _NotThisForm("not UTF-8 text") from None


def _proto_json(data: bytes, strict: bool = False) -> Message:
    try:
        value = json.loads(_text(data))
    except json.JSONDecodeError as exc:
        if strict:
            raise _SyntaxError(json_error(exc)) from None
        raise _NotThisForm(f"not JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise UsageError("JSON nested too deeply") from None
    return _from_dict(value)


def _yaml(data: bytes, strict: bool = False) -> Message:
    import yaml

    try:
        value = safe_load_bounded(_text(data))
    except yaml.YAMLError as exc:
        if strict:
            raise _SyntaxError(yaml_error(exc)) from None
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise _NotThisForm(f"not YAML: {getattr(exc, 'problem', None) or exc}{where}") from None
    return _from_dict(value)


def _from_dict(value: Any) -> Message:
    """A TaskSpec when the mapping has a task template key, else a TaskTemplate.

    A mapping that has the right shape but a wrong field is reported as a `UsageError`
    straight away: it clearly is meant as a template, so other forms are not worth trying.
    """
    if value is None:
        raise _NotThisForm("empty")
    if not isinstance(value, dict):
        raise _NotThisForm(f"top level is a {type(value).__name__}, not a mapping")
    is_spec = "taskTemplate" in value or "task_template" in value
    message = TaskSpec() if is_spec else TaskTemplate()
    try:
        json_format.ParseDict(value, message)
    except json_format.ParseError as exc:
        raise UsageError(
            f"invalid {type(message).__name__}: {_short_parse_error(exc)}"
        ) from None
    return message


def _short_parse_error(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.replace("flyteidl2.core.", "").replace("flyteidl2.task.", "")



def read_inputs(file: str | os.PathLike[str] | None = None, pairs: Iterable[str] = (),
                option: str = "-i") -> dict[str, Any]:
    """Input values from a JSON (or YAML) object file and `NAME=VALUE` pairs.

    A pair's VALUE is parsed as JSON when it parses (`n=3` is a number, `s="3"` a string),
    else taken as a string; pairs win over the file for the same name. `option` names the
    flag the pairs came from in errors.
    """
    values: dict[str, Any] = {}
    if file is not None:
        values.update(_inputs_file(Path(file)))
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"{option} expects NAME=VALUE, got {pair!r}")
        try:
            values[name.strip()] = json.loads(raw)
        except ValueError:
            values[name.strip()] = raw
    return values


def _inputs_file(file: Path) -> dict[str, Any]:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise UsageError(f"cannot read inputs file {str(file)!r}: {reason}") from None
    try:
        if file.suffix.lower() in (".yaml", ".yml"):
            data = safe_load_bounded(text)
        else:
            data = json.loads(text, object_pairs_hook=_no_duplicates)
    except UsageError as exc:
        raise UsageError(f"inputs file {str(file)!r}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"inputs file {str(file)!r} is not valid {json_error(exc)}") from None
    except RecursionError:
        raise UsageError(
            f"inputs file {str(file)!r} is not valid JSON: nested too deeply"
        ) from None
    except Exception as exc:  # noqa: BLE001 - yaml.YAMLError; yaml is imported only for YAML
        raise UsageError(f"inputs file {str(file)!r} is not valid {yaml_error(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(
            f"inputs file {str(file)!r} must hold an object of input name -> value, "
            f"not a {type(data).__name__}"
        )
    for name, value in data.items():
        if _lone_surrogate(value):
            raise UsageError(f"inputs file {str(file)!r}: input {name!r} holds a lone "
                             "surrogate (\\ud800-\\udfff), which is not Unicode text")
    return data


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key given twice (json keeps the last one silently)."""
    data = dict(pairs)
    if len(data) < len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise UsageError(f"key {twice!r} appears twice in one object")
    return data


def _lone_surrogate(value: Any) -> bool:
    """True when a string in `value` cannot be encoded as UTF-8 (`"\\ud800"` in JSON)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_lone_surrogate(k) or _lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_lone_surrogate(v) for v in value)
    return False


TypeSpec = Any
"""A Python type (`int`, `list[str]`, `Optional[float]`, `FlyteFile`, an Enum class), a
ready `LiteralType`, or an example value whose type is inferred (`3`, `"x"`, `[1.5]`)."""


def make_template(
    task_type: str,
    *,
    custom: Optional[Mapping[str, Any]] = None,
    inputs: Optional[Mapping[str, TypeSpec]] = None,
    outputs: Optional[Mapping[str, TypeSpec]] = None,
    version: int = 0,
    name: str = "",
) -> TaskTemplate:
    """A `TaskTemplate` for `task_type` v`version` with a typed interface.

    `inputs`/`outputs` map names to a `TypeSpec`; `custom` is the template's JSON config
    (what the connector reads from `task_template.custom`).
    """
    if not task_type:
        raise UsageError("a task template needs a task type")
    template = TaskTemplate(type=task_type, task_type_version=version)
    if name:
        template.id.CopyFrom(Identifier(name=name))
    if inputs or outputs:
        template.interface.CopyFrom(TypedInterface(
            inputs=_variable_map(inputs or {}, "input"),
            outputs=_variable_map(outputs or {}, "output")))
    if custom is not None:
        if not isinstance(custom, Mapping):
            raise UsageError(
                f"custom must be a mapping (a JSON object), got {type(custom).__name__}"
            )
        try:
            template.custom.update(custom)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"custom is not JSON data: {exc}") from None
    return template


def _variable_map(specs: Mapping[str, TypeSpec], role: str) -> Any:
    entries = []
    for name, spec in specs.items():
        try:
            literal_type = literal_type_of(spec)
        except LiteralError as exc:
            raise LiteralError(f"{role} '{name}': {str(exc).partition(': ')[2] or exc}") from None
        entries.append(VariableEntry(key=name, value=Variable(type=literal_type)))
    return VariableMap(variables=entries)


def make_inputs(template: TaskTemplate, values: Mapping[str, Any],
                defaults: Optional[Mapping[str, Literal]] = None) -> Inputs:
    """`flyteidl2.task.Inputs` for `template` from Python or JSON values, typed by its
    interface (a `LiteralError` names a wrong, unknown or missing input)."""
    interface = template.interface if template.HasField("interface") else None
    return json_to_inputs(values, interface, defaults)
