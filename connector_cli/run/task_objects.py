"""Task templates from Python objects: `flyte-connector test module:attr`.

The object is a Flyte SDK task (what a Flyte 2 user calls in workflow code; it is
serialized by the Flyte SDK into the TaskTemplate the backend sends, by
`connector_cli.adapters.flyte_tasks`), a flytekit task (Flyte 1's; serialized by flytekit,
by `connector_cli.adapters.flytekit_tasks`, then read as the daemon's Flyte 1 service
reads propeller's) or a ready `flyteidl2` TaskTemplate. The module is imported from the
current directory first, as `--modules` are.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from pathlib import Path
from typing import Any, Optional

from connector_cli.errors import UsageError
from connector_cli.run.task_files import LoadedTask, load_task

__all__ = ["load_any", "looks_like_object", "template_of"]

_OBJECT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def looks_like_object(spec: str) -> bool:
    """True for `module:attr` that is not an existing file."""
    return bool(_OBJECT.match(spec)) and not Path(spec).exists()


def load_any(spec: str | os.PathLike[str], import_from: Optional[str] = None) -> LoadedTask:
    """A task template file (any form `load_task` reads) or a `module:attr` task object."""
    text = os.fspath(spec)
    if looks_like_object(text):
        return load_object(text, import_from)
    return load_task(text)


def load_object(spec: str, import_from: Optional[str] = None) -> LoadedTask:
    """The TaskTemplate of the task object `module:attr` names; `UsageError` otherwise."""
    module_name, _, attr = spec.partition(":")
    where = import_from if import_from is not None else os.getcwd()
    if where not in sys.path:
        sys.path.insert(0, where)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UsageError(f"no module named {module_name!r} for task {spec!r}: run from the "
                             "directory that holds it, or install its package") from None
        raise UsageError(f"importing {module_name!r} for task {spec!r} failed: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the user's module; one line says what broke
        raise UsageError(f"importing {module_name!r} for task {spec!r} failed: "
                         f"{type(exc).__name__}: {exc}") from None
    value: Any = module
    for part in attr.split("."):
        if not hasattr(value, part):
            raise UsageError(f"module {module_name!r} has no {attr!r} (task {spec!r})")
        value = getattr(value, part)
    return LoadedTask(template=template_of(value, spec), defaults={}, path=spec,
                      form=_form(value), connector=_connector_of(value))


def template_of(value: Any, what: str = "the task") -> Any:
    """The TaskTemplate of a Flyte SDK task object or a ready TaskTemplate message."""
    from flyteidl2.core.tasks_pb2 import TaskTemplate

    if isinstance(value, TaskTemplate):
        template = value
    elif _is_flyte_task(value):
        from connector_cli.adapters.flyte_tasks import task_template

        template = task_template(value)
    elif _is_flytekit_task(value):
        from flyteidl2.core.tasks_pb2 import TaskTemplate as V2Template

        from connector_cli.adapters import flytekit_tasks
        from connector_cli.v1_messages import recast

        template = recast(flytekit_tasks.task_template(value), V2Template)
    else:
        kind = type(value).__name__
        article = "an" if kind[:1].lower() in "aeiou" else "a"
        raise UsageError(f"{what} is {article} {kind}, not a task: give a Flyte SDK or "
                         "flytekit task object (e.g. one made with a task class `init` "
                         "writes) or a flyteidl2 TaskTemplate")
    if not template.type:
        raise UsageError(f"{what} has no task type")
    return template


def _is_flyte_task(value: Any) -> bool:
    if "flyte" not in sys.modules:  # the object cannot be a Flyte SDK task
        return False
    from connector_cli.adapters.flyte_tasks import is_flyte_task

    return is_flyte_task(value)


def _is_flytekit_task(value: Any) -> bool:
    if "flytekit" not in sys.modules:  # the object cannot be a flytekit task
        return False
    from connector_cli.adapters.flytekit_tasks import is_flytekit_task

    return is_flytekit_task(value)


def _connector_of(value: Any) -> str:
    """`module:Class` of the connector a task class names (`ConnectorTask.connector`)."""
    cls = getattr(type(value), "connector", None)
    if not isinstance(cls, type):
        return ""
    return f"{cls.__module__}:{cls.__qualname__}"


def _form(value: Any) -> str:
    from flyteidl2.core.tasks_pb2 import TaskTemplate

    if isinstance(value, TaskTemplate):
        return "TaskTemplate object"
    return "flytekit task" if _is_flytekit_task(value) else "Flyte SDK task"
