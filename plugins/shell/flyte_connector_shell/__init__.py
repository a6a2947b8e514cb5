"""flyte-connector-shell: run a command as a detached job on the connector host.

The connector (task type "shell") is `flyte_connector_shell.connector.ShellConnector`;
it is served through the `flyte.connectors` entry point of this distribution.
"""

__version__ = "0.1.0"
