"""The local runner behind `flyte-connector test`: create -> get ... -> delete against a target."""
