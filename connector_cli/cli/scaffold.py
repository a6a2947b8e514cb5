"""`flyte-connector init` and `flyte-connector template`: scaffolding for authors."""
