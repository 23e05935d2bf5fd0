"""What to grant when Google refuses: the permission a refusal names, and the role that carries it.

A refusal at 3 a.m. is only useful if it says what to ask for. Roles are Google's predefined ones
(https://cloud.google.com/run/docs/reference/iam/roles, https://cloud.google.com/iam/docs/service-account-permissions):
deploying a revision needs `iam.serviceAccounts.actAs` on the runtime service account, which
`roles/iam.serviceAccountUser` carries; changing a service needs `roles/run.developer`.
"""

from __future__ import annotations

import re

_ROLE_FOR = {
    "iam.serviceaccounts.actas": "roles/iam.serviceAccountUser on the service's runtime service account",
    "run.services.create": "roles/run.developer",
    "run.services.update": "roles/run.developer",
    "run.services.get": "roles/run.viewer or roles/run.developer",
    "run.services.list": "roles/run.viewer or roles/run.developer",
    "run.revisions.get": "roles/run.viewer or roles/run.developer",
    "run.revisions.list": "roles/run.viewer or roles/run.developer",
    "run.operations.get": "roles/run.viewer or roles/run.developer",
    "run.routes.invoke": "roles/run.invoker on the service",
    "logging.logentries.list": "roles/logging.viewer",
    "monitoring.timeseries.list": "roles/monitoring.viewer",
    "secretmanager.versions.access": "roles/secretmanager.secretAccessor on the secret",
    "artifactregistry.dockerimages.list": "roles/artifactregistry.reader on the repository",
    "artifactregistry.dockerimages.get": "roles/artifactregistry.reader on the repository",
}
_NAMED = re.compile(r"[Pp]ermission ['\"]?([a-zA-Z]+\.[a-zA-Z]+\.[a-zA-Z]+)['\"]?")


def denied_permission(permission: str, message: str) -> str:
    """The permission a refusal is about: from Google's ErrorInfo when it sent one, else from its message."""
    if permission:
        return permission
    found = _NAMED.search(message)
    return found.group(1) if found else ""


def grant_hint(permission: str) -> str:
    """`the bot's service account needs ...`, or "" when the permission is unknown."""
    if not permission:
        return ""
    role = _ROLE_FOR.get(permission.lower())
    if role is None:
        return f"the bot's service account lacks `{permission}`"
    return f"the bot's service account lacks `{permission}`: grant it {role}"
