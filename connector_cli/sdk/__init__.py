"""What a connector author imports: the connector base class, resource meta, the registry
and the secrets of a call. `connector_cli` re-exports the public names."""
