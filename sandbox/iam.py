"""Who may do what in the emulated project: the bot's service account and its roles.

Every emulator asks before it acts, through an `Authorize` callable: permission and resource in, nothing
out, or a PERMISSION_DENIED GoogleError shaped as Google sends it.
"""

from __future__ import annotations

from collections.abc import Callable

Authorize = Callable[[str, str], None]
"""(permission, full resource name) -> None, or raise GoogleError("PERMISSION_DENIED", ...)."""


def allow_all(permission: str, resource: str) -> None:
    """For an emulator used on its own, without the world's IAM."""
