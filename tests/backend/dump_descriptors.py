"""Write the FileDescriptorSet of the installed flyteidl2 connector service to stdout.

The Go suite in this folder reads it to speak the wire format of exactly the flyteidl2
release the daemon is built on: the Flyte backend's generated Go types are not importable
here, so its messages are built from these descriptors instead.
"""

from __future__ import annotations

import sys

from flyteidl2.connector import service_pb2
from flyteidl2.core import literals_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor


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
    files = collect([service_pb2.DESCRIPTOR, literals_pb2.DESCRIPTOR])
    sys.stdout.buffer.write(files.SerializeToString())
