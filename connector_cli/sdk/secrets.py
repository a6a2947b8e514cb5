"""The secrets and configs of a call (`Connection`): what a connector method receives as
keyword arguments, from the request's `connection` (and the daemon's connections file).

Where a local run gets them is `connector_cli.run.secret_sources`; how values are hidden
in everything said is `connector_cli.masking`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from connector_cli.errors import UsageError

MASK = "****"


@dataclasses.dataclass(frozen=True)
class Connection:
    """Resolved connection keyword arguments: secret values and plain configs."""

    secrets: Mapping[str, str] = dataclasses.field(default_factory=dict)
    configs: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def kwargs(self) -> dict[str, str]:
        """Secrets and configs as the keyword arguments a connector method receives.

        A name that is both a secret and a config is refused rather than letting one
        silently replace the other.
        """
        clash = sorted(set(self.secrets) & set(self.configs))
        if clash:
            raise UsageError(
                f"{', '.join(map(repr, clash))} is both a secret and a config; rename one"
            )
        return {**self.configs, **self.secrets}

    def masked(self) -> dict[str, Any]:
        """What may be printed: secret names with masked values, and the configs."""
        return {"secrets": dict.fromkeys(sorted(self.secrets), MASK),
                "configs": dict(self.configs)}
