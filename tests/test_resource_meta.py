"""ResourceMeta: deterministic encoding and checked decoding."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
from typing import Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector_cli import ResourceMeta, ResourceMetaError
from connector_cli.sdk.resource_meta import check_meta_class


class Kind(enum.Enum):
    QUERY = "query"
    EXPORT = "export"


@dataclasses.dataclass
class Step:
    name: str
    attempts: int = 0


@dataclasses.dataclass
class JobMeta(ResourceMeta):
    job_id: str
    region: Optional[str]
    steps: list[Step]
    labels: dict[str, str]
    kind: Kind = Kind.QUERY
    started: Optional[dt.datetime] = None
    score: float = 0.0
    shape: tuple[int, int] = (0, 0)
    note: Optional[Step] = None


@dataclasses.dataclass
class OtherMeta(ResourceMeta):
    query_id: int


def sample() -> JobMeta:
    return JobMeta(
        job_id="abc",
        region=None,
        steps=[Step("load", 2), Step("save")],
        labels={"team": "data", "env": "prod"},
        kind=Kind.EXPORT,
        started=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
        score=1,
        shape=(3, 4),
        note=Step("n"),
    )


def test_round_trip_rebuilds_nested_values() -> None:
    meta = sample()
    decoded = JobMeta.decode(meta.encode())
    assert decoded == dataclasses.replace(meta, score=1.0)
    assert isinstance(decoded.steps[0], Step)
    assert isinstance(decoded.note, Step)
    assert decoded.kind is Kind.EXPORT
    assert decoded.shape == (3, 4)
    assert decoded.started == meta.started


def test_encoding_is_small_sorted_json() -> None:
    data = OtherMeta(query_id=7).encode()
    assert data == b'{"query_id":7}'
    a = JobMeta("x", None, [], {"b": "1", "a": "2"}).encode()
    b = JobMeta("x", None, [], {"a": "2", "b": "1"}).encode()
    assert a == b
    assert b" " not in a


def test_base_class_round_trips_empty() -> None:
    assert ResourceMeta.decode(ResourceMeta().encode()) == ResourceMeta()


def test_defaults_fill_missing_optional_fields() -> None:
    decoded = JobMeta.decode(b'{"job_id":"x","region":"eu","steps":[],"labels":{}}')
    assert decoded.kind is Kind.QUERY and decoded.note is None and decoded.region == "eu"


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\xff\xfe", "not valid JSON"),
        (b"{job_id", "not valid JSON"),
        (b"[1, 2]", "top level: expected an object (JobMeta), got list"),
        (b'{"region":null,"steps":[],"labels":{}}', "field 'job_id': expected a value, got nothing"),
        (b'{"job_id":1,"region":null,"steps":[],"labels":{}}', "field 'job_id': expected a string, got 1"),
        (
            b'{"job_id":"x","region":null,"steps":[{"name":"a"},{"name":5}],"labels":{}}',
            "field 'steps[1].name': expected a string, got 5",
        ),
        (
            b'{"job_id":"x","region":null,"steps":[],"labels":{"a":3}}',
            "field 'labels.a': expected a string, got 3",
        ),
        (
            b'{"job_id":"x","region":null,"steps":[],"labels":{},"kind":"nope"}',
            "field 'kind': expected one of 'query', 'export', got \"nope\"",
        ),
        (
            b'{"job_id":"x","region":null,"steps":[],"labels":{},"started":"yesterday"}',
            "field 'started': expected an ISO 8601 datetime",
        ),
        (
            b'{"job_id":"x","region":null,"steps":[],"labels":{},"shape":[1]}',
            "field 'shape': expected a list of 2 items",
        ),
    ],
)
def test_bad_bytes_raise_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(ResourceMetaError, match="resource_meta") as info:
        JobMeta.decode(data)
    assert message in str(info.value)
    assert not isinstance(info.value, KeyError)


def test_another_connectors_meta_is_refused() -> None:
    with pytest.raises(ResourceMetaError, match="does not match JobMeta: field 'job_id'"):
        JobMeta.decode(OtherMeta(query_id=3).encode())


def test_bool_is_not_an_int_but_an_int_is_a_float() -> None:
    with pytest.raises(ResourceMetaError, match="expected an integer, got true"):
        OtherMeta.decode(b'{"query_id":true}')
    assert JobMeta.decode(b'{"job_id":"x","region":null,"steps":[],"labels":{},"score":2}').score == 2.0


def test_unsupported_values_fail_at_encode_with_the_type() -> None:
    @dataclasses.dataclass
    class Bad(ResourceMeta):
        payload: object

    with pytest.raises(TypeError, match="cannot encode a set"):
        Bad(payload={1, 2}).encode()


def test_meta_classes_are_checked_up_front() -> None:
    class Undecorated(ResourceMeta):
        job_id: str

    with pytest.raises(TypeError, match="not decorated with @dataclass"):
        check_meta_class(Undecorated)

    @dataclasses.dataclass
    class Weird(ResourceMeta):
        handle: complex

    with pytest.raises(TypeError, match="unsupported type"):
        check_meta_class(Weird)
    with pytest.raises(TypeError, match="not a ResourceMeta subclass"):
        check_meta_class(dict)


@dataclasses.dataclass
class FlatMeta(ResourceMeta):
    zeta: object = None
    alpha: object = None
    mid: object = None


_FLAT_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.text(), st.floats(allow_nan=True), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
)


@given(_FLAT_VALUES, _FLAT_VALUES, _FLAT_VALUES)
@settings(max_examples=400, deadline=None)
def test_encode_is_sorted_key_compact_json(a: object, b: object, c: object) -> None:
    """The bytes are sorted-key compact ASCII JSON of the fields (escapes, unicode, big and
    negative ints, bool vs int): what metas already issued were written as."""
    meta = FlatMeta(zeta=a, alpha=b, mid=c)
    expected = json.dumps({"zeta": a, "alpha": b, "mid": c}, sort_keys=True,
                          separators=(",", ":")).encode()
    assert meta.encode() == expected


def test_a_meta_without_fields_encodes_as_an_empty_object() -> None:
    @dataclasses.dataclass
    class Empty(ResourceMeta):
        pass

    assert Empty().encode() == b"{}"
    assert Empty.decode(b"{}") == Empty()


@dataclasses.dataclass
class PolledMeta(ResourceMeta):
    job_id: str
    attempt: int = 0
    region: Optional[str] = None

    def __post_init__(self) -> None:
        if self.job_id == "forged":
            raise ValueError("job_id 'forged' is not one of ours")


@dataclasses.dataclass
class ListMeta(ResourceMeta):
    ids: list[str]


def test_a_flat_meta_decoded_twice_from_the_same_bytes_is_two_equal_objects() -> None:
    from connector_cli.sdk.resource_meta import meta_decoder

    decode = meta_decoder(PolledMeta)
    data = PolledMeta(job_id="j-1", attempt=2).encode()
    first, second = decode(data), decode(bytes(data))
    assert first == second == PolledMeta(job_id="j-1", attempt=2)
    assert first is not second
    first.attempt = 9  # a connector may change what it was given
    assert decode(data).attempt == 2


def test_a_kept_flat_meta_still_runs_its_checks_every_time() -> None:
    from connector_cli.sdk.resource_meta import meta_decoder

    decode = meta_decoder(PolledMeta)
    for _ in range(3):
        with pytest.raises(ResourceMetaError, match="'forged' is not one of ours"):
            decode(b'{"job_id":"forged"}')
    with pytest.raises(ResourceMetaError, match="field 'attempt': expected an integer"):
        decode(b'{"attempt":"2","job_id":"j"}')


def test_a_meta_with_a_list_is_rebuilt_from_its_bytes_each_time() -> None:
    from connector_cli.sdk.resource_meta import meta_decoder

    decode = meta_decoder(ListMeta)
    data = ListMeta(ids=["a"]).encode()
    first = decode(data)
    first.ids.append("b")
    assert decode(data).ids == ["a"]
