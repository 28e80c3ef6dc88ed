"""Commands of the add-in: validate and convert (each a thin layer over its module)."""

from __future__ import annotations

from .convert_cli import convert_command
from .validate_cli import validate_command

__all__ = ["convert_command", "validate_command"]
