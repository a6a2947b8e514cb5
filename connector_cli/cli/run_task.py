"""`flyte-connector test`: run a connector end to end (see connector_cli.runner)."""
