"""The kit's floor server with one change: its CreateTask converts the inputs as the daemon does.

That is what any server must do per CreateTask to hand a connector Python values: size the
inputs (the `input_literal_bytes` metric) and convert them with the task's declared
interface (`connector_cli.literals.inputs_to_python`). Everything else is the floor's own
code, so against the floor this measures the conversion alone (`bench_server.py`).

Usage: python bench/floor_converting.py --kit DIR --port PORT
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from connector_cli.literals import inputs_to_python


def load_floor(kit: Path) -> Any:
    """The kit's floor_server.py as a module, its CreateTask now converting the inputs."""
    spec = importlib.util.spec_from_file_location("floor_server", kit / "floor_server.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"no floor_server.py in {kit}")
    floor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(floor)
    answer = floor.CREATE_RESP

    class Converting(floor.Async):  # type: ignore[misc]
        async def CreateTask(self, request: Any, context: Any) -> Any:
            template = request.template
            if request.HasField("inputs"):
                inputs = request.inputs
                inputs.ByteSize()
                inputs_to_python(inputs, template.interface
                                 if template.HasField("interface") else None)
            return answer

    floor.Async = Converting  # what the floor's serve() registers
    return floor


def main() -> None:
    args = sys.argv[1:]
    if len(args) < 2 or args[0] != "--kit":
        raise SystemExit(__doc__)
    floor = load_floor(Path(args[1]))
    sys.argv = [sys.argv[0], *args[2:]]
    floor.main()


if __name__ == "__main__":
    main()
