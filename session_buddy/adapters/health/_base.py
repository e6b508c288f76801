"""Health: component checks in the shape mcp-common defines (ComponentHealth, HealthStatus)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class HealthBase(ABC):
    name: str = ""

    @abstractmethod
    async def check(self) -> dict[str, Any]:
        """A ``HealthCheckResponse.to_dict()``: overall status (the worst component's),
        timestamp, version, uptime and one entry per component."""
