"""The flytekit adapter's fast paths answer what flytekit's own conversions answer:
`flytekit_types.resource_proto` the bytes of `Resource.to_flyte_idl`, on its table and off
it; `flytekit_models`' views the values of `TaskTemplate` / `LiteralMap` /
`TaskExecutionMetadata.from_flyte_idl`, built only when read, never shared by two calls."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import math
import pickle
from typing import Any

import pytest

pytest.importorskip("flytekit.extend.backend.base_connector", reason="needs the flytekit extra")

from flyteidl.admin import agent_pb2 as v1
from flyteidl.core import identifier_pb2, interface_pb2, literals_pb2, tasks_pb2, types_pb2
from flyteidl.core.execution_pb2 import TaskExecution, TaskLog
from flyteidl2.core import tasks_pb2 as tasks_v2
from flyteidl2.task import common_pb2
from flytekit.core.type_engine import SimpleTransformer, TypeEngine
from flytekit.extend.backend.base_connector import Resource
from flytekit.extend.backend.base_connector import ResourceMeta as KitMeta
from flytekit.models.literals import LiteralMap
from flytekit.models.task import TaskExecutionMetadata, TaskTemplate
from google.protobuf import struct_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from connector_cli.adapters import flytekit_meta, flytekit_types
from connector_cli.adapters import flytekit_models as models
from connector_cli.adapters.flytekit_types import resource_proto
from connector_cli.v1_messages import recast

NAMES = st.text(alphabet="abcxyz_", min_size=1, max_size=4)
OUTPUT_VALUES = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1), st.integers(min_value=2**63),
    st.text(max_size=300), st.booleans(), st.floats(), st.just(-0.0), st.none(),
    st.lists(st.integers(max_value=9), max_size=2),
    st.just(dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)),
)


async def outcome(coro: Any) -> Any:
    """The message's exact wire bytes (map order included), or the exception's type."""
    try:
        return (await coro).SerializeToString()
    except Exception as exc:  # noqa: BLE001 - comparing which error, not handling it
        return type(exc)


@settings(max_examples=300, deadline=None)
@given(phase=st.sampled_from(list(TaskExecution.Phase.values())),
       message=st.one_of(st.none(), st.text(max_size=10)),
       outputs=st.one_of(st.none(), st.dictionaries(NAMES, OUTPUT_VALUES, max_size=4)),
       links=st.booleans(), info=st.booleans())
async def test_resources_convert_as_flytekit_converts_them(
        phase: int, message: Any, outputs: Any, links: bool, info: bool) -> None:
    resource = Resource(phase=phase, message=message, outputs=outputs,
                        log_links=[TaskLog(name="l", uri="http://x")] if links else None,
                        custom_info={"a": 1} if info else None)
    expected = await outcome(resource.to_flyte_idl())
    for _ in range(2):  # the second time from the table
        assert await outcome(resource_proto(resource)) == expected


async def test_outputs_come_in_the_order_flytekit_writes_them() -> None:
    """flytekit writes a protobuf map, in its own order; the fast path builds the same map."""
    for round_ in range(8):
        outputs = {f"{name}{round_}": i for i, name in enumerate(("b", "a", "c", "zz", "q"))}
        resource = Resource(phase=TaskExecution.SUCCEEDED, outputs=outputs)
        fast = (await resource_proto(resource)).SerializeToString()
        assert fast == (await resource.to_flyte_idl()).SerializeToString()


@pytest.mark.parametrize("values", [(1, True, 1.0), (0, False, 0.0, -0.0), ("1", 1),
                                    (math.nan, float("-nan"), math.inf)])
async def test_equal_outputs_of_other_types_or_bits_are_never_confused(values: Any) -> None:
    for value in values + values:
        resource = Resource(phase=TaskExecution.SUCCEEDED, outputs={"o": value})
        assert (await resource_proto(resource)).SerializeToString() == \
            (await resource.to_flyte_idl()).SerializeToString()


def doubling() -> Any:
    return SimpleTransformer(
        "doubled", int, TypeEngine.to_literal_type(int),
        lambda v: literals_pb_int(v * 2), lambda lv: lv.scalar.primitive.integer // 2)


def literals_pb_int(value: int) -> Any:
    from flytekit.models.literals import Literal, Primitive, Scalar

    return Literal(scalar=Scalar(primitive=Primitive(integer=value)))


@pytest.mark.parametrize("name", ["seen_first", "doubled_first"])
async def test_a_transformer_registered_over_int_is_used(
        monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Registered after the table has kept the value, or before it has seen it."""
    resource = Resource(phase=TaskExecution.SUCCEEDED, outputs={name: 4})
    if name == "seen_first":
        assert (await resource_proto(resource)).outputs.literals[name].scalar.primitive.integer == 4
    monkeypatch.setitem(TypeEngine._REGISTRY, int, doubling())
    for _ in range(2):
        got = await resource_proto(resource)
        assert got.outputs.literals[name].scalar.primitive.integer == 8
        assert got == await resource.to_flyte_idl()


async def test_a_resource_subclass_and_a_literal_map_convert_their_own_way() -> None:
    class Doubled(Resource):  # type: ignore[misc]
        async def to_flyte_idl(self) -> Any:
            return v1.Resource(phase=TaskExecution.RUNNING, message="own")

    assert (await resource_proto(Doubled(phase=TaskExecution.SUCCEEDED, outputs={"o": 1}))
            ).message == "own"
    literal_map = LiteralMap({"o": literals_pb_int(3)})
    resource = Resource(phase=TaskExecution.SUCCEEDED, outputs=literal_map)
    assert await resource_proto(resource) == await resource.to_flyte_idl()


async def test_the_table_is_bounded() -> None:
    flytekit_types._LITERALS.clear()
    for n in range(flytekit_types.CACHE_ENTRIES + 10):
        await resource_proto(Resource(phase=TaskExecution.SUCCEEDED, outputs={"n": n}))
    assert len(flytekit_types._LITERALS) <= flytekit_types.CACHE_ENTRIES
    flytekit_types._LITERALS.clear()
    await resource_proto(Resource(phase=TaskExecution.SUCCEEDED,
                                  outputs={"s": "x" * (flytekit_types.CACHE_STR_CHARS + 1)}))
    assert not flytekit_types._LITERALS


# --- the model views ------------------------------------------------------------------

SIMPLE = st.sampled_from([types_pb2.INTEGER, types_pb2.STRING, types_pb2.FLOAT,
                          types_pb2.BOOLEAN, types_pb2.DATETIME, types_pb2.STRUCT])
JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False,
                                                                   allow_infinity=False),
                              st.text(max_size=4)),
                    lambda inner: st.one_of(st.lists(inner, max_size=3),
                                            st.dictionaries(st.text(max_size=3), inner,
                                                            max_size=3)), max_leaves=6)


def variables(types: dict[str, int]) -> interface_pb2.VariableMap:
    return interface_pb2.VariableMap(variables={
        name: interface_pb2.Variable(type=types_pb2.LiteralType(simple=kind), description=name)
        for name, kind in types.items()})


@st.composite
def templates(draw: Any) -> tasks_pb2.TaskTemplate:
    custom = struct_pb2.Struct()
    custom.update(draw(st.dictionaries(st.text(max_size=4), JSON, max_size=3)))
    template = tasks_pb2.TaskTemplate(
        type=draw(st.text(max_size=6)), task_type_version=draw(st.integers(0, 3)),
        id=identifier_pb2.Identifier(resource_type=identifier_pb2.TASK, project="p",
                                     domain="d", name=draw(st.text(max_size=5)), version="v"),
        metadata=tasks_pb2.TaskMetadata(discoverable=draw(st.booleans()),
                                        interruptible=draw(st.booleans())),
        interface=interface_pb2.TypedInterface(
            inputs=variables(draw(st.dictionaries(NAMES, SIMPLE, max_size=3))),
            outputs=variables(draw(st.dictionaries(NAMES, SIMPLE, max_size=3)))),
        custom=custom, config=draw(st.dictionaries(st.text(max_size=3), st.text(max_size=3),
                                                   max_size=2)))
    if draw(st.booleans()):
        template.container.image = draw(st.text(max_size=5))
        template.container.args.extend(draw(st.lists(st.text(max_size=3), max_size=2)))
    if draw(st.booleans()):
        template.security_context.secrets.add(group="g", key=draw(st.text(max_size=3)))
    return template


LITERALS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(lambda v: literals_pb2.Literal(
        scalar=literals_pb2.Scalar(primitive=literals_pb2.Primitive(integer=v)))),
    st.text(max_size=5).map(lambda v: literals_pb2.Literal(
        scalar=literals_pb2.Scalar(primitive=literals_pb2.Primitive(string_value=v)))),
    st.just(literals_pb2.Literal(collection=literals_pb2.LiteralCollection(literals=[
        literals_pb2.Literal(scalar=literals_pb2.Scalar(none_type=literals_pb2.Void()))]))),
    st.just(literals_pb2.Literal()),
)


def same(view: Any, full: Any, names: tuple[str, ...]) -> None:
    """Every property and the whole message agree; the view builds nothing until read."""
    assert models._SOURCE in vars(view) and len(vars(view)) == 1
    assert isinstance(view, type(full)) and type(view).__name__ == type(full).__name__
    for name in names:
        assert getattr(view, name) == getattr(full, name), name
    assert view.to_flyte_idl().SerializeToString() == full.to_flyte_idl().SerializeToString()
    assert view == full and str(view) == str(full) and repr(view) == repr(full)
    assert vars(view).keys() == vars(full).keys()


TEMPLATE_FIELDS = ("id", "type", "metadata", "interface", "custom", "container",
                   "task_type_version", "security_context", "config", "k8s_pod", "sql",
                   "extended_resources")


@settings(max_examples=150, deadline=None)
@given(template=templates())
def test_a_template_view_reads_as_flytekits_template(template: tasks_pb2.TaskTemplate) -> None:
    for message in (template, recast(template, tasks_v2.TaskTemplate)):  # v1 or v2 message
        # what the adapter built before: the request's template parsed as flytekit's server
        # parses it (a protobuf map's order is that of its parse)
        full = TaskTemplate.from_flyte_idl(recast(message, tasks_pb2.TaskTemplate))
        same(models.task_template(message), full, TEMPLATE_FIELDS)
        assert list(models.task_template(message).custom) == list(full.custom)
        assert list(models.task_template(message).interface.inputs) == \
            list(full.interface.inputs)


@settings(max_examples=150, deadline=None)
@given(literals=st.dictionaries(NAMES, LITERALS, max_size=5))
def test_an_inputs_view_reads_as_flytekits_literal_map(literals: dict[str, Any]) -> None:
    message = literals_pb2.LiteralMap(literals=literals)
    for source in (message, recast(message, common_pb2.Inputs)):
        full = LiteralMap.from_flyte_idl(recast(source, literals_pb2.LiteralMap))
        same(models.literal_map(source), full, ("literals",))
        assert list(models.literal_map(source).literals) == list(full.literals)


@settings(max_examples=100, deadline=None)
@given(namespace=st.text(max_size=5),
       labels=st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=3),
       env=st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
       account=st.text(max_size=4))
def test_a_metadata_view_reads_as_flytekits_metadata(
        namespace: str, labels: dict[str, str], env: dict[str, str], account: str) -> None:
    message = v1.TaskExecutionMetadata(namespace=namespace, labels=labels,
                                       annotations=labels, k8s_service_account=account,
                                       environment_variables=env)
    message.task_execution_id.node_execution_id.node_id = namespace
    full = TaskExecutionMetadata.from_flyte_idl(recast(message, v1.TaskExecutionMetadata))
    same(models.execution_metadata(message), full,
         ("task_execution_id", "namespace", "labels", "annotations", "k8s_service_account",
          "environment_variables", "identity"))


def bench_template() -> tasks_pb2.TaskTemplate:
    custom = struct_pb2.Struct()
    custom.update({"query": "SELECT 1", "secrets": {}})
    return tasks_pb2.TaskTemplate(type="bench", custom=custom)


def test_each_call_gets_its_own_view_and_what_it_sets_is_kept() -> None:
    message = bench_template()
    first, second = models.task_template(message), models.task_template(message)
    first.custom["query"] = "changed"
    first._type = "set before read"  # a connector's own attribute wins over the message's
    assert first.type == "set before read" and first.custom["query"] == "changed"
    assert second.custom["query"] == "SELECT 1" and second.type == "bench"
    assert models.task_template(message).custom == {"query": "SELECT 1", "secrets": {}}


def copies(value: Any) -> list[Any]:
    """copy, deepcopy and a pickle round trip of `value`, or each one's error type."""
    out: list[Any] = []
    for how in (copy.copy, copy.deepcopy, lambda v: pickle.loads(pickle.dumps(v))):
        try:
            out.append(how(value))
        except Exception as exc:  # noqa: BLE001 - comparing which error, not handling it
            out.append(type(exc))
    return out


def test_a_view_copies_and_pickles_as_flytekits_own_model() -> None:
    for fresh in (True, False):
        message = bench_template()
        view = models.task_template(message)
        full = TaskTemplate.from_flyte_idl(recast(message, tasks_pb2.TaskTemplate))
        if not fresh:
            view.custom["query"] = full.custom["query"] = "changed"
        for mine, theirs in zip(copies(view), copies(full)):
            assert type(mine) is type(theirs)  # TaskTemplate, or the same error
            if type(mine) is TaskTemplate:
                assert mine == theirs and mine.custom == theirs.custom
    with pytest.raises(AttributeError):
        models.task_template(bench_template()).no_such_attribute  # noqa: B018


# --- the meta codec -------------------------------------------------------------------


@dataclasses.dataclass
class Inner:
    a: int = 0


@dataclasses.dataclass
class FlatMeta(KitMeta):  # type: ignore[misc]
    job_id: str
    region: Any = "local"
    tries: Any = 0


# real annotations (this module's are strings): `inner`'s type is a dataclass
NestedMeta: Any = dataclasses.make_dataclass(
    "NestedMeta", [("job_id", str), ("inner", Inner, dataclasses.field(default_factory=Inner))],
    bases=(KitMeta,))


@dataclasses.dataclass
class OwnCodecMeta(FlatMeta):
    def encode(self) -> bytes:
        return b"own:" + self.job_id.encode()

    @classmethod
    def decode(cls, data: bytes) -> OwnCodecMeta:
        return cls(job_id=data.decode()[4:])


META_VALUES = st.one_of(st.text(max_size=5), st.integers(), st.floats(), st.booleans(),
                        st.none(), st.lists(st.integers(), max_size=2),
                        st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
                        st.builds(Inner, st.integers()))


def decoded(cls: Any, data: bytes, how: Any) -> Any:
    try:
        value = how(cls, data)
    except Exception as exc:  # noqa: BLE001 - comparing which error, not handling it
        return type(exc)
    return type(value), value


@settings(max_examples=300, deadline=None)
@given(job_id=st.text(max_size=6), region=META_VALUES, tries=META_VALUES,
       cls=st.sampled_from([FlatMeta, OwnCodecMeta]))
def test_metas_encode_to_flytekits_bytes(job_id: str, region: Any, tries: Any, cls: Any) -> None:
    meta = cls(job_id=job_id, region=region, tries=tries)
    assert flytekit_meta.encode(meta) == meta.encode()
    nested = NestedMeta(job_id=job_id, inner=Inner(a=len(job_id)))
    assert flytekit_meta.encode(nested) == nested.encode()


JSON_OBJECTS = st.dictionaries(
    st.sampled_from(["job_id", "region", "tries", "inner", "other"]),
    st.one_of(JSON, st.fixed_dictionaries({"a": st.integers()})), max_size=4)


@settings(max_examples=300, deadline=None)
@given(body=st.one_of(JSON_OBJECTS.map(json.dumps), JSON.map(json.dumps),
                      st.text(max_size=8)),
       cls=st.sampled_from([FlatMeta, NestedMeta, OwnCodecMeta]))
def test_metas_decode_as_flytekit_decodes_them(body: str, cls: Any) -> None:
    for data in (body.encode(), body.encode("utf-16")):
        expected = decoded(cls, data, lambda c, d: c.decode(d))
        first = decoded(cls, data, flytekit_meta.decode)
        assert first == expected
        assert decoded(cls, data, flytekit_meta.decode) == expected  # from the kept kwargs


def test_a_kept_meta_is_a_new_object_each_time() -> None:
    data = FlatMeta(job_id="j1").encode()
    first = flytekit_meta.decode(FlatMeta, data)
    first.region = "changed"
    second = flytekit_meta.decode(FlatMeta, data)
    assert second is not first and second == FlatMeta(job_id="j1")
    assert (FlatMeta, data) in flytekit_meta._KWARGS
