"""The one way a request to generate is refused before anything starts or is saved."""

from __future__ import annotations

from typing import Any


class GenerationRejected(Exception):
    """A request that cannot start; ``code`` and ``message`` go to the client, ``details`` too."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
