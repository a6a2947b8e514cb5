"""Literal conversion speed on a realistic task interface (about 20 inputs), both ways.

Prints conversions per second for Inputs -> Python (CreateTask) and Python -> Outputs
(GetTask), each as a ratio against baselines measured in this same run:
  * protobuf: ParseFromString + SerializeToString of the same Inputs message (the floor
    any conversion pays to touch the data once);
  * uncached: the same conversion with the compiled-converter caches emptied each call.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flyteidl2.core.interface_pb2 import TypedInterface, Variable, VariableEntry, VariableMap
from flyteidl2.core.types_pb2 import (
    BlobType,
    EnumType,
    LiteralType,
    SimpleType,
    StructuredDatasetType,
    UnionType,
)
from flyteidl2.task.common_pb2 import Inputs

from connector_cli.literals import inputs_to_python, json_to_inputs, outputs_to_proto
from connector_cli.literals._cache import CompiledCache


def simple(kind: int) -> LiteralType:
    return LiteralType(simple=kind)


INT, FLOAT, STR = simple(SimpleType.INTEGER), simple(SimpleType.FLOAT), simple(SimpleType.STRING)
STRUCT = simple(SimpleType.STRUCT)
TYPES: dict[str, LiteralType] = {
    "count": INT, "ratio": FLOAT, "name": STR, "dry_run": simple(SimpleType.BOOLEAN),
    "since": simple(SimpleType.DATETIME), "timeout": simple(SimpleType.DURATION),
    "region": LiteralType(enum_type=EnumType(values=["us-east-1", "eu-west-1"])),
    "limit": LiteralType(union_type=UnionType(variants=[INT, simple(SimpleType.NONE)])),
    "ids": LiteralType(collection_type=INT),
    "records": LiteralType(map_value_type=STRUCT),
    "config": STRUCT,
    "source": LiteralType(blob=BlobType(format="csv")),
    "workdir": LiteralType(blob=BlobType(dimensionality=BlobType.MULTIPART)),
    "table": LiteralType(structured_dataset_type=StructuredDatasetType(format="parquet")),
    "tags": LiteralType(collection_type=STR),
    "weights": LiteralType(map_value_type=FLOAT),
    "windows": LiteralType(collection_type=simple(SimpleType.DATETIME)),
    "query": STR, "retries": INT, "threshold": FLOAT,
}
DATA: dict[str, Any] = {
    "count": 10, "ratio": 0.25, "name": "nightly", "dry_run": False,
    "since": "2024-05-17T09:30:00Z", "timeout": "1h30m", "region": "eu-west-1", "limit": None,
    "ids": list(range(1000)),
    "records": {f"r{i}": {"id": i, "name": f"row {i}", "score": i / 3, "ok": True} for i in range(20)},
    "config": {"cluster": "c1", "workers": 8, "labels": {"team": "data"}, "steps": ["a", "b"]},
    "source": "s3://bucket/in.csv", "workdir": "s3://bucket/work/",
    "table": {"uri": "bq://project.dataset.table", "format": "parquet"},
    "tags": ["a", "b", "c"], "weights": {"x": 0.5, "y": 1.5},
    "windows": ["2024-05-0%dT00:00:00Z" % d for d in range(1, 8)],
    "query": "SELECT 1", "retries": 3, "threshold": 0.9,
}


def best_rate(fn: Callable[[], Any], seconds: float = 0.25, repeats: int = 3) -> float:
    """Calls per second: the best of `repeats` timed runs of about `seconds` each."""
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        if time.perf_counter() - start > seconds / 10:
            break
        calls *= 2
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        n = 0
        while time.perf_counter() - start < seconds:
            for _ in range(calls):
                fn()
            n += calls
        best = max(best, n / (time.perf_counter() - start))
    return best


def uncached(fn: Callable[[], Any]) -> Callable[[], Any]:
    caches = [c for m in list(sys.modules.values()) if m and m.__name__.startswith("connector_cli.literals")
              for c in vars(m).values() if isinstance(c, CompiledCache)]

    def run() -> Any:
        for cache in caches:
            cache.clear()
        return fn()
    return run


def measure(label: str, data: dict[str, Any], iface: TypedInterface) -> None:
    inputs = json_to_inputs(data, iface)
    wire = inputs.SerializeToString()
    values = inputs_to_python(inputs, iface)
    assert outputs_to_proto(values, iface).literals == inputs.literals

    def protobuf() -> None:
        Inputs.FromString(wire).SerializeToString()

    def decode() -> None:
        inputs_to_python(inputs, iface)

    def encode() -> None:
        outputs_to_proto(values, iface)

    base = best_rate(protobuf)
    print(f"\n{label}: {len(data)} inputs, {len(wire):,} bytes on the wire")
    print(f"  {'conversion':36} {'conv/s':>9} {'us/conv':>9} {'vs protobuf':>12} {'vs uncached':>12}")
    print(f"  {'protobuf parse+serialize (baseline)':36} {base:9,.0f} {1e6 / base:9.1f} {'1.0x':>12} {'-':>12}")
    for name, fn in [("Inputs -> Python  (CreateTask)", decode), ("Python -> Outputs (GetTask)", encode)]:
        rate, slow = best_rate(fn), best_rate(uncached(fn))
        print(f"  {name:36} {rate:9,.0f} {1e6 / rate:9.1f} {base / rate:11.1f}x {rate / slow:11.1f}x")


def main() -> None:
    entries = [VariableEntry(key=k, value=Variable(type=t)) for k, t in TYPES.items()]
    iface = TypedInterface(inputs=VariableMap(variables=entries), outputs=VariableMap(variables=entries))
    measure("realistic (a list of 1,000 ints, a map of 20 msgpack records, a msgpack struct, files)",
            DATA, iface)
    small = {**DATA, "ids": list(range(10)), "records": dict(list(DATA["records"].items())[:2])}
    measure("small (the same 20 inputs with a 10-int list and 2 records)", small, iface)
    print("\nvs protobuf = cost of one conversion in protobuf round trips of the same message;")
    print("vs uncached = speed-up from compiling converters once per LiteralType and interface.")


if __name__ == "__main__":
    main()
