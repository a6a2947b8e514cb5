"""Call the Hello connector through a real daemon, exactly as the Flyte backend would."""

import asyncio

from flyteidl2.core.execution_pb2 import TaskExecution
from flyteidl2.core.tasks_pb2 import TaskTemplate

from connector_cli.testing import serve_in_background


async def main():
    async with serve_in_background(modules=["hello_connector"]) as daemon:
        print("daemon on", daemon.address)
        served = await daemon.client.list_connectors()
        print("serves", [c.name for c in served])
        meta = await daemon.client.create(TaskTemplate(type="hello"), "file:///tmp/out")
        resource = await daemon.client.get(("hello", 0), meta)
        print("phase", TaskExecution.Phase.Name(resource.phase), "-", resource.message)
        await daemon.client.delete(("hello", 0), meta)
        return resource


if __name__ == "__main__":
    asyncio.run(main())
