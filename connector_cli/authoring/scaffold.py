"""Scaffolding for connector authors: a new plugin package, and starter task templates.

`init_package` writes a package that installs, shows up in `flyte-connector list`, and
passes its own tests and `flyte-connector test` on its example straight away. Its files
come from `connector_cli/authoring/templates/scaffold/*.tmpl` (`string.Template` placeholders).
`starter_template_yaml` writes a task template in the YAML form `flyte-connector test`
reads, with the interface inferred from example values.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import keyword
import os
import re
import shlex
import shutil
import string
import sys
from importlib.metadata import PackageNotFoundError, distribution
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional
from urllib.parse import unquote, urlparse

import yaml
from google.protobuf.json_format import MessageToDict

import connector_cli
from connector_cli._version import __version__
from connector_cli.errors import UsageError
from connector_cli.run.task_files import make_template, read_inputs

if TYPE_CHECKING:
    from flyteidl2.core.tasks_pb2 import TaskTemplate

_TEMPLATES = "templates/scaffold"
_TASK_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_DIST_PREFIX = "flyte_connector_"
EXAMPLE_INPUTS = {"message": "hello", "seconds": 0.5}
EXAMPLE_OUTPUTS = {"echo": "", "length": 0}
EXAMPLE_CUSTOM = {"prefix": "> "}


@dataclasses.dataclass(frozen=True)
class PackageNames:
    """The names a new connector package uses, all derived from one NAME."""

    name: str
    dist: str
    package: str
    camel: str
    task_type: str

    @classmethod
    def from_name(cls, raw: str, task_type: Optional[str] = None) -> PackageNames:
        """Normalise NAME ('my-service', 'My Service') to an identifier, or `UsageError`."""
        name = re.sub(r"[\s.\-]+", "_", raw.strip()).lower()
        if name.startswith(_DIST_PREFIX):
            name = name[len(_DIST_PREFIX):]
        if not name.isidentifier() or keyword.iskeyword(name) or name.strip("_") == "":
            raise UsageError(
                f"{raw!r} is not a usable connector name: it must become a Python identifier "
                "(letters, digits, '_' or '-', not starting with a digit), e.g. 'weather'"
            )
        task_type = name if task_type is None else task_type
        if not _TASK_TYPE.match(task_type):
            raise UsageError(f"task type {task_type!r} must be letters, digits, '_', '.' or '-'")
        camel = "".join(part[:1].upper() + part[1:] for part in name.split("_"))
        return cls(name=name, dist="flyte-connector-" + name.replace("_", "-"),
                   package=_DIST_PREFIX + name, camel=camel, task_type=task_type)

    def placeholders(self) -> dict[str, str]:
        """The `string.Template` values for the scaffold files."""
        return {"name": self.name, "dist": self.dist, "package": self.package,
                "camel": self.camel, "task_type": self.task_type,
                "entry_name": self.name, "version": __version__}


@dataclasses.dataclass(frozen=True)
class Scaffold:
    """What `init_package` wrote."""

    root: Path
    names: PackageNames
    files: tuple[Path, ...]


def init_package(name: str, directory: Optional[str | Path] = None,
                 task_type: Optional[str] = None) -> Scaffold:
    """Write a new connector package into `directory` (default ./<dist name>).

    Refuses (`UsageError`) a bad name and a directory that exists and is not empty, so
    nothing is ever overwritten.
    """
    names = PackageNames.from_name(name, task_type)
    root = Path(directory) if directory is not None else Path(names.dist)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise UsageError(f"{str(root)!r} already exists and is not an empty directory; "
                         "pick another --dir")
    rendered = dict(_render_files(names))
    local = local_requirements()
    if local is not None:
        rendered[LOCAL_REQUIREMENTS] = local
    rendered["examples/task.yaml"] = starter_template_yaml(
        names.task_type, inputs=EXAMPLE_INPUTS, outputs=EXAMPLE_OUTPUTS, custom=EXAMPLE_CUSTOM,
        run_hint="flyte-connector test examples/task.yaml --inputs examples/task.inputs.json")
    written = []
    for relative, text in sorted(rendered.items()):
        path = root / relative
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {str(path)!r}: {exc.strerror}") from None
        written.append(path)
    return Scaffold(root=root, names=names, files=tuple(written))


def next_steps(made: Scaffold) -> list[str]:
    """Shell commands that install and try the new package from here, in this environment.

    pip is this interpreter's own (`python -m pip`), so the package lands where
    flyte-connector is; while flyte-connector is on no index, the package's
    `requirements-local.txt` installs it from where it came from in the same command.
    Commands not on PATH are given with their full path.
    """
    root = made.root.resolve()
    python, bindir = Path(sys.executable), Path(sys.executable).parent
    local = ["-r", LOCAL_REQUIREMENTS] if (made.root / LOCAL_REQUIREMENTS).exists() else []
    pip = shlex.join([_command("python", python), "-m", "pip", "install", *local,
                      "-e", ".[test]"])
    inputs = "examples/task.inputs.json"
    return [
        f"cd {shlex.quote(str(root))}",
        pip,
        f"{_command('flyte-connector', bindir / 'flyte-connector')} list",
        (f"{_command('flyte-connector', bindir / 'flyte-connector')} test examples/task.yaml "
        f"--inputs {inputs}"),
        _command("pytest", bindir / "pytest"),
    ]


LOCAL_REQUIREMENTS = "requirements-local.txt"


def local_requirements() -> Optional[str]:
    """`requirements-local.txt` for a new package: flyte-connector from the checkout (kept
    editable) or the wheel it was installed from, or None when it came from an index.

    The package itself depends on `flyte-connector>=VERSION` by name, so it installs
    unchanged where flyte-connector already is (the daemon's image) or from an index; a
    `file://` dependency would tie it to this machine's path.
    """
    source = framework_source()
    if source is None:
        return None
    line = f"-e {source.resolve()}" if source.is_dir() and _is_checkout(source) else \
        str(source.resolve())
    return ("# flyte-connector from where `flyte-connector init` found it, until it is on your\n"
            "# package index: pip install -r requirements-local.txt -e '.[test]'\n"
            f"{line}\n")


def _is_checkout(path: Path) -> bool:
    return (path / "connector_cli").is_dir() and (path / "pyproject.toml").is_file()


def _command(name: str, path: Path) -> str:
    """`name` when PATH finds exactly `path` under it, else the full (quoted) path.

    `path` may be a versioned interpreter (`.venv/bin/python3.11`): its plain-named link
    in the same directory (`.venv/bin/python`) counts as the same command. A command the
    install step will put in a directory on PATH is given by name."""
    plain = path.parent / name
    if plain.exists() and os.path.realpath(plain) == os.path.realpath(path):
        path = plain
    found = shutil.which(name)
    if found is not None and os.path.abspath(found) == os.path.abspath(path):
        return name
    on_path = [os.path.abspath(d) for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    rank = {d: i for i, d in reversed(list(enumerate(on_path)))}  # first occurrence wins
    home = rank.get(os.path.abspath(path.parent))
    other = None if found is None else rank.get(os.path.abspath(os.path.dirname(found)))
    if home is not None and (other is None or home < other):
        return name  # not installed yet (pytest, before the install step); then found first
    return shlex.quote(str(path))


def framework_source() -> Optional[Path]:
    """The local directory flyte-connector was installed from, or None (from an index).

    An editable install runs from the checkout itself (its pyproject.toml sits next to the
    package); a plain install from a directory or wheel records it in direct_url.json.
    """
    checkout = Path(connector_cli.__file__).resolve().parent.parent
    pyproject = checkout / "pyproject.toml"
    if pyproject.is_file() and 'name = "flyte-connector"' in pyproject.read_text("utf-8"):
        return checkout
    return _direct_url_path()


def _direct_url_path() -> Optional[Path]:
    try:
        text = distribution("flyte-connector").read_text("direct_url.json")
    except PackageNotFoundError:
        return None
    try:
        url = urlparse(json.loads(text or "{}").get("url", ""))
    except (ValueError, AttributeError):
        return None
    path = Path(unquote(url.path)) if url.scheme == "file" else None
    return path if path is not None and path.exists() else None


def _render_files(names: PackageNames) -> Iterable[tuple[str, str]]:
    """(relative path, text) of every scaffold file; `package/` becomes the package."""
    values = names.placeholders()
    base = files("connector_cli.authoring").joinpath(_TEMPLATES)
    for source, relative in _walk(base, ""):
        target = relative.removesuffix(".tmpl")
        if target.startswith("package/"):
            target = names.package + target[len("package"):]
        yield target, string.Template(source.read_text(encoding="utf-8")).substitute(values)


def _walk(node: Any, prefix: str) -> Iterable[tuple[Any, str]]:
    for child in node.iterdir():
        if child.is_dir():
            yield from _walk(child, f"{prefix}{child.name}/")
        elif child.name.endswith(".tmpl"):
            yield child, prefix + child.name


def starter_template_yaml(
    task_type: str,
    *,
    version: int = 0,
    inputs: Optional[Mapping[str, Any]] = None,
    outputs: Optional[Mapping[str, Any]] = None,
    custom: Optional[Mapping[str, Any]] = None,
    run_hint: Optional[str] = None,
) -> str:
    """A task template as commented YAML; input/output types inferred from example values."""
    if not task_type or not _TASK_TYPE.match(task_type):
        raise UsageError(f"task type {task_type!r} must be letters, digits, '_', '.' or '-'")
    template = make_template(task_type, version=version, inputs=inputs, outputs=outputs,
                             custom=custom)
    header = [
        f"# A task template for task type {task_type!r} v{version}, generated by flyte-connector.",
        "# Types were inferred from example values; edit them as needed, e.g.",
        ("# {simple: DATETIME}, {blob: {dimensionality: SINGLE}} (a file), "
         "{collectionType: {simple: STRING}}."),
    ]
    if run_hint:
        header.append(f"# Run it: {run_hint}")
    return "\n".join(header) + "\n" + template_yaml(template, custom)


def template_yaml(template: TaskTemplate, custom: Optional[Mapping[str, Any]] = None) -> str:
    """`template` in the proto-JSON YAML form, each variable's type on one line.

    `custom` (the mapping the template's Struct was built from) is written as given, so
    integers stay integers instead of the Struct's doubles.
    """
    data = MessageToDict(template)
    for role in ("inputs", "outputs"):
        for variable in data.get("interface", {}).get(role, {}).get("variables", []):
            variable["value"] = _Flow(variable["value"])
    if custom is not None:
        data["custom"] = json.loads(json.dumps(custom))
    first = ("type", "taskTypeVersion", "id", "interface", "custom")
    data = {**{k: data[k] for k in first if k in data}, **data}
    return yaml.dump(data, Dumper=_dumper(), sort_keys=False, allow_unicode=True, width=100)


def read_examples(pairs: Iterable[str], option: str,
                  file: Optional[str | Path] = None) -> dict[str, Any]:
    """Example values from a JSON/YAML object file and NAME=EXAMPLE pairs (JSON when it
    parses, else a string), as `flyte-connector test` reads inputs."""
    return read_inputs(file, pairs, option)


def parse_custom(text: Optional[str]) -> Optional[dict[str, Any]]:
    """The --custom JSON object, or `UsageError`."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--custom is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"--custom must be a JSON object, not a {type(value).__name__}")
    return value


class _Flow(dict):
    """A mapping written in YAML flow style: `{type: {simple: STRING}}`."""


@functools.lru_cache(maxsize=None)
def _dumper() -> type:
    """A SafeDumper that indents lists and writes `_Flow` mappings on one line."""
    class Dumper(yaml.SafeDumper):
        def increase_indent(self, flow: bool = False, indentless: bool = False) -> Any:
            return super().increase_indent(flow, False)

    def flow(dumper: Any, value: _Flow) -> Any:
        return dumper.represent_mapping("tag:yaml.org,2002:map", value, flow_style=True)

    Dumper.add_representer(_Flow, flow)
    return Dumper

