"""`flyte-connector serve`: run the gRPC daemon (see connector_cli.server)."""
