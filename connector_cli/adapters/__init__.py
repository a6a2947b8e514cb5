"""Adapters that serve connectors written against other connector APIs (the Flyte SDK's)."""
