"""A request's connection as the keyword arguments of a connector method.

The request's own `connection` (CreateTask, GetTask, DeleteTask), filled in from the
daemon's connections file (`connector_cli.connections`) where it lacks a key, checked
(`connector_cli.masking` bounds; no key may replace one of the method's own arguments)
and made the current task's mask. Shared by the dispatcher's every operation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional

from connector_cli.errors import UsageError
from connector_cli.masking import activate, check_configs

if TYPE_CHECKING:
    from connector_cli.connections import Rule

_RESERVED = {
    "create": frozenset({"task_template", "output_prefix", "inputs", "task_execution_metadata"}),
    "get": frozenset({"resource_meta"}),
    "delete": frozenset({"resource_meta"}),
    "get_metrics": frozenset({"resource_meta", "queries", "start_time", "end_time", "step"}),
    "get_logs": frozenset({"resource_meta", "token", "lines"}),
}
_WITH_CONNECTION = frozenset({"create", "get", "delete"})
_NO_SECRETS: Mapping[str, str] = {}


def connection_kwargs(request: Any, operation: str, rule: Optional[Rule] = None,
                      ) -> tuple[dict[str, str], Mapping[str, str]]:
    """A request's connection, filled in from the connections file's `rule`, as keyword
    arguments, and its secrets (for masking).

    A key the request carries (as a secret or a config) keeps the request's value; the
    rule fills the keys it lacks. A key that is both a secret and a config, or that would
    replace one of the method's own arguments, is INVALID_ARGUMENT naming the key (never
    the value); so are more secrets than `connector_cli.masking` bounds. Secrets become
    the current task's mask.
    """
    secrets: Mapping[str, str] = _NO_SECRETS
    configs: Mapping[str, str] = _NO_SECRETS
    if operation in _WITH_CONNECTION and request.HasField("connection"):
        secrets, configs = request.connection.secrets, request.connection.configs
    if rule is not None:
        from connector_cli.connections import fill

        secrets, configs = fill(secrets, configs, rule)
    if not secrets and not configs:
        return {}, _NO_SECRETS
    if secrets:
        activate(secrets)
    if configs:
        check_configs(configs)
    from connector_cli.sdk.secrets import Connection  # only requests with a connection

    kwargs = Connection(secrets=secrets, configs=configs).kwargs()
    taken = sorted(kwargs.keys() & (_RESERVED[operation] | {"executor"}))
    if taken:
        raise UsageError(
            f"connection key {taken[0]!r} clashes with an argument of the connector's "
            f"{operation} method; rename it"
        )
    return kwargs, secrets
