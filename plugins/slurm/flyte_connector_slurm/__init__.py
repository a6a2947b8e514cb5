"""flyte-connector-slurm: run Flyte tasks as Slurm batch jobs, on a login node or over SSH.

The connector (task type "slurm") is `flyte_connector_slurm.connector.SlurmConnector`;
it is served through the `flyte.connectors` entry point of this distribution.
"""

__version__ = "0.1.0"
