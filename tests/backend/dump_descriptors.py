"""Write the FileDescriptorSet of an installed connector service to stdout.

The Go suite in this folder reads it to speak the wire format of exactly the release the
daemon is built on: the Flyte backends' generated Go types are not importable here, so
their messages are built from these descriptors instead. The argument names the
generation: `flyte2` (flyteidl2's connector service, the default) or `flyte1` (flyteidl's
agent service, from the `flyteidl` package of the flyte1 extra).
"""

from __future__ import annotations

import importlib
import sys

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor

ROOTS = {
    "flyte2": ("flyteidl2.connector.service_pb2", "flyteidl2.core.literals_pb2"),
    "flyte1": ("flyteidl.service.agent_pb2", "flyteidl.core.literals_pb2"),
}


def collect(roots: list[FileDescriptor]) -> descriptor_pb2.FileDescriptorSet:
    """Every file reachable from `roots`, dependencies first."""
    out = descriptor_pb2.FileDescriptorSet()
    seen: set[str] = set()

    def visit(file: FileDescriptor) -> None:
        if file.name in seen:
            return
        seen.add(file.name)
        for dependency in file.dependencies:
            visit(dependency)
        file.CopyToProto(out.file.add())

    for root in roots:
        visit(root)
    return out


if __name__ == "__main__":
    generation = sys.argv[1] if len(sys.argv) > 1 else "flyte2"
    modules = [importlib.import_module(name) for name in ROOTS[generation]]
    files = collect([module.DESCRIPTOR for module in modules])
    sys.stdout.buffer.write(files.SerializeToString())
