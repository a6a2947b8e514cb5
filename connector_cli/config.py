"""Frozen configuration built once by the CLI and handed to the core."""

from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class DiscoveryConfig:
    """Which plugins to load: `plugins` None means every installed one, () means none."""

    modules: tuple[str, ...] = ()
    plugins: Optional[tuple[str, ...]] = None
