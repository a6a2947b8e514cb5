"""A Flyte SDK connector's resource meta through our adapter (`FlyteMeta`): the bytes its
own `encode` gives and the object its own `decode` gives, on the fast path for plain
dataclass metas and off it. No `from __future__ import annotations` here: `Nested.inner`
must be a real class, as the Flyte SDK's decode looks at it."""

import dataclasses
import json
from typing import Any, Optional

import pytest

pytest.importorskip("flyte.connectors", reason="needs the flyte extra (make test installs it)")

from flyte.connectors import AsyncConnector, Resource, ResourceMeta
from flyteidl2.core.execution_pb2 import TaskExecution
from hypothesis import given, settings
from hypothesis import strategies as st

from connector_cli.adapters.flyte_sdk import FlyteSdkConnector
from connector_cli.errors import ResourceMetaError


@dataclasses.dataclass
class Plain(ResourceMeta):
    job_id: str
    attempt: int = 0
    ratio: Optional[float] = None
    done: bool = False
    extra: Any = None


@dataclasses.dataclass
class Nested(ResourceMeta):
    inner: Plain
    label: str = ""


@dataclasses.dataclass
class Custom(ResourceMeta):
    job_id: str

    def encode(self) -> bytes:
        return self.job_id.encode()

    @classmethod
    def decode(cls, data: bytes) -> "Custom":
        return cls(job_id=data.decode())


def meta_class(kind: type) -> Any:
    class Connector(AsyncConnector[Any]):
        name = f"{kind.__name__} Connector"
        task_type_name = f"meta_{kind.__name__.lower()}"
        metadata_type = kind

        async def create(self, task_template: Any, output_prefix: str, inputs: Any = None,
                         **kwargs: Any) -> Any:
            raise NotImplementedError

        async def get(self, resource_meta: Any, **kwargs: Any) -> Resource:
            return Resource(phase=TaskExecution.SUCCEEDED)

        async def delete(self, resource_meta: Any, **kwargs: Any) -> None:
            return None

    return FlyteSdkConnector(Connector()).metadata_type


PLAIN = meta_class(Plain)
EXTRA = st.one_of(st.none(), st.text(max_size=5), st.integers(), st.booleans(),
                  st.floats(allow_nan=False), st.lists(st.integers(), max_size=2),
                  st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))


def test_only_a_plain_dataclass_with_the_sdks_own_coding_takes_the_fast_path() -> None:
    assert PLAIN.plain_fields == ("job_id", "attempt", "ratio", "done", "extra")
    assert meta_class(Nested).plain_fields is None
    assert meta_class(Custom).plain_fields is None


@settings(max_examples=300, deadline=None)
@given(job_id=st.text(max_size=8), attempt=st.integers(), ratio=st.one_of(
    st.none(), st.floats(allow_nan=False)), done=st.booleans(), extra=EXTRA)
def test_encode_and_decode_give_what_the_sdk_gives(
        job_id: str, attempt: int, ratio: Any, done: bool, extra: Any) -> None:
    meta = Plain(job_id=job_id, attempt=attempt, ratio=ratio, done=done, extra=extra)
    data = PLAIN(meta).encode()
    assert data == meta.encode()
    for _ in range(2):  # the second time from the kept keyword arguments
        decoded = PLAIN.decode(data).value
        assert type(decoded) is Plain and decoded == Plain.decode(data)


def test_every_decode_is_a_new_object() -> None:
    data = Plain(job_id="j", extra="x").encode()
    first = PLAIN.decode(data).value
    first.job_id = "changed"
    assert PLAIN.decode(data).value == Plain(job_id="j", extra="x")


def test_other_metas_keep_their_own_coding() -> None:
    nested, custom = meta_class(Nested), meta_class(Custom)
    meta = Nested(inner=Plain(job_id="j"), label="l")
    assert nested(meta).encode() == meta.encode()
    assert nested.decode(meta.encode()).value == meta == Nested.decode(meta.encode())
    assert custom(Custom(job_id="abc")).encode() == b"abc"
    assert custom.decode(b"abc").value == Custom(job_id="abc")


@pytest.mark.parametrize("data", [b"not json", b'{"job_id": "j", "nope": 1}', b"[1]",
                                  b"\xff"])
def test_bad_bytes_are_a_meta_error_every_time(data: bytes) -> None:
    for _ in range(2):
        with pytest.raises(ResourceMetaError, match="not a valid Plain"):
            PLAIN.decode(data)


def test_a_subclass_instance_is_encoded_by_its_own_encode() -> None:
    @dataclasses.dataclass
    class More(Plain):
        more: str = "m"

    meta = More(job_id="j")
    assert json.loads(PLAIN(meta).encode())["more"] == "m"
