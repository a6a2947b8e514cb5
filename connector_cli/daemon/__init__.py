"""The gRPC daemon behind `flyte-connector serve`: servicers, server lifecycle, metrics."""
