"""flytekit's model objects for one call, built only when the connector reads them.

flytekit's server turns every CreateTask's template, inputs and execution metadata into
flytekit models (`TaskTemplate.from_flyte_idl`, `LiteralMap.from_flyte_idl`,
`TaskExecutionMetadata.from_flyte_idl`) before calling the connector: 45 us of a
CreateTask's 60 in-process, most of it for parts a connector never reads (the bench
connector reads none). Here each is an instance of a subclass of flytekit's own model
class holding the call's message; the first read of any attribute builds flytekit's own
model from that message (`from_flyte_idl`, the same function, on the same bytes) and takes
its attributes, so every value the connector sees is the one flytekit's server gives it.
Each call gets objects of its own: nothing is shared between calls, so a connector that
changes its template changes only its own. `isinstance` holds; only `type(x) is
TaskTemplate` tells them apart (see docs/migrating-from-flytekit.md).
"""

from __future__ import annotations

from typing import Any, ClassVar

from flyteidl.admin import agent_pb2 as v1
from flyteidl.core import literals_pb2, tasks_pb2
from flytekit.models.literals import LiteralMap
from flytekit.models.task import TaskExecutionMetadata, TaskTemplate

from connector_cli.v1_messages import recast

_SOURCE = "_connector_source"


def _rebuild(model: Any, state: dict[str, Any]) -> Any:
    """A plain flytekit model with `state` as its attributes (pickle and copy of a lazy one)."""
    out = model.__new__(model)
    out.__dict__.update(state)
    return out


class _Lazy:
    """Builds flytekit's model from the held message at the first read of a missing
    attribute (`__getattr__` runs only for those), keeping attributes already set."""

    model: ClassVar[Any]
    message: ClassVar[Any]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or not self._build():
            raise AttributeError(name)
        return object.__getattribute__(self, name)

    def _build(self) -> bool:
        """Take flytekit's model's attributes (False: nothing left to build)."""
        state = self.__dict__
        source = state.get(_SOURCE)
        if source is None:
            return False
        full = self.model.from_flyte_idl(recast(source, self.message))
        for key, value in vars(full).items():
            state.setdefault(key, value)
        state.pop(_SOURCE, None)  # from here on its attributes are flytekit's model's
        return True

    def __reduce__(self) -> Any:
        """Copied or pickled as flytekit's own model, with what the connector set."""
        self._build()
        return _rebuild, (self.model, dict(self.__dict__))


def _lazy(model: type, message: Any) -> type:
    """A subclass of `model` (same name) read lazily from a `message`-class source."""
    return type(model)(model.__name__, (_Lazy, model), {
        "model": model, "message": message, "__module__": __name__,
        "__qualname__": f"Lazy{model.__name__}",
    })


LazyTaskTemplate = _lazy(TaskTemplate, tasks_pb2.TaskTemplate)
LazyLiteralMap = _lazy(LiteralMap, literals_pb2.LiteralMap)
LazyTaskExecutionMetadata = _lazy(TaskExecutionMetadata, v1.TaskExecutionMetadata)


def _view(cls: Any, message: Any) -> Any:
    out = cls.__new__(cls)
    out.__dict__[_SOURCE] = message
    return out


def task_template(message: Any) -> Any:
    """`TaskTemplate.from_flyte_idl` of a (v1 or v2) TaskTemplate message, when read."""
    return _view(LazyTaskTemplate, message)


def literal_map(message: Any) -> Any:
    """`LiteralMap.from_flyte_idl` of a v1 LiteralMap or v2 Inputs message, when read."""
    return _view(LazyLiteralMap, message)


def execution_metadata(message: Any) -> Any:
    """`TaskExecutionMetadata.from_flyte_idl` of a (v1 or v2) message, when read."""
    return _view(LazyTaskExecutionMetadata, message)
