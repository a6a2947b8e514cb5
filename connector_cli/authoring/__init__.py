"""The authoring kit: `flyte-connector init` packages and `template` starter task files."""
