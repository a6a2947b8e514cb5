"""flyte-connector-sql: run SQL queries on SQLite (embedded) or PostgreSQL as Flyte tasks.

The connector class lives in `flyte_connector_sql.connector`; this package module stays
free of imports so the worker process starts quickly.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
