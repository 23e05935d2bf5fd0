"""Who may do what in the emulated project: the bot's service account, its roles, and resource policies.

Sandbox simplification: every caller of the emulated Google APIs is one member, the bot's runtime service
account `serviceAccount:chatops@<project>.iam.gserviceaccount.com`: the only credentials the APIs accept are the
access tokens the metadata server issues, all for that account (sandbox.access_tokens). Its project-level
roles are set through the control API; a resource such as a Cloud Run service
may carry its own allow policy, whose bindings add to them ("Roles can be granted to users on an entire
project or on individual services", https://cloud.google.com/run/docs/reference/iam/roles).

Every emulator asks before it acts, through an `Authorize` callable: permission and resource in, nothing
out, or a PERMISSION_DENIED GoogleError shaped as Google sends it.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sandbox.google_errors import GoogleError, error_info

Authorize = Callable[[str, str], None]
"""(permission, full resource name) -> None, or raise GoogleError("PERMISSION_DENIED", ...)."""


def allow_all(permission: str, resource: str) -> None:
    """For an emulator used on its own, without the world's IAM."""


_RUN_READ = frozenset({
    "run.services.get", "run.services.list", "run.services.getIamPolicy",
    "run.revisions.get", "run.revisions.list", "run.operations.get", "run.operations.list",
})
_RUN_WRITE = _RUN_READ | {
    "run.services.create", "run.services.update", "run.services.delete",
    "run.revisions.delete", "run.operations.delete", "run.routes.invoke",
}
_SECRETS_READ = frozenset({"secretmanager.secrets.get", "secretmanager.secrets.list",
                           "secretmanager.versions.get", "secretmanager.versions.list"})
_SECRETS_WRITE = _SECRETS_READ | {"secretmanager.secrets.create", "secretmanager.secrets.update",
                                   "secretmanager.secrets.delete", "secretmanager.versions.add",
                                   "secretmanager.versions.enable", "secretmanager.versions.disable",
                                   "secretmanager.versions.destroy"}
_OBSERVE = frozenset({"logging.logEntries.list", "monitoring.timeSeries.list",
                      "monitoring.metricDescriptors.get", "monitoring.metricDescriptors.list"})
_ACT_AS = "iam.serviceAccounts.actAs"
_IMAGES_READ = frozenset({"artifactregistry.dockerimages.list", "artifactregistry.dockerimages.get"})

ROLES: dict[str, frozenset[str]] = {
    # The permissions each predefined role holds, restricted to those the emulators check. Source: Google's
    # predefined-roles reference, https://cloud.google.com/iam/docs/roles-permissions/run and
    # https://cloud.google.com/run/docs/reference/iam/roles ("Cloud Run Developer: Read and write access to
    # all Cloud Run resources" - it includes run.routes.invoke and run.services.getIamPolicy, not
    # setIamPolicy), cross-checked against the role definitions the IAM API serves.
    "roles/run.admin": _RUN_WRITE | {"run.services.setIamPolicy"},
    "roles/run.developer": _RUN_WRITE,
    "roles/run.viewer": _RUN_READ,
    "roles/run.invoker": frozenset({"run.routes.invoke"}),
    "roles/run.servicesInvoker": frozenset({"run.routes.invoke"}),
    "roles/iam.serviceAccountUser": frozenset({_ACT_AS}),
    "roles/logging.viewer": frozenset({"logging.logEntries.list"}),
    "roles/monitoring.viewer": _OBSERVE - {"logging.logEntries.list"},
    "roles/secretmanager.secretAccessor": frozenset({"secretmanager.versions.access"}),
    "roles/secretmanager.viewer": _SECRETS_READ,
    # "Artifact Registry Reader: Read and download artifacts", which holds artifactregistry.dockerimages.get and
    # .list (https://cloud.google.com/artifact-registry/docs/access-control#roles); so do Viewer, Editor and Owner.
    "roles/artifactregistry.reader": _IMAGES_READ,
    # https://cloud.google.com/iam/docs/roles-permissions/secretmanager: Admin holds secretmanager.*; Secret Version
    # Adder only secretmanager.versions.add; Secret Version Manager adds, enables, disables, destroys, gets and
    # lists versions.
    "roles/secretmanager.admin": _SECRETS_WRITE | {"secretmanager.versions.access"},
    "roles/secretmanager.secretVersionAdder": frozenset({"secretmanager.versions.add"}),
    "roles/secretmanager.secretVersionManager": frozenset({
        "secretmanager.versions.add", "secretmanager.versions.enable", "secretmanager.versions.disable",
        "secretmanager.versions.destroy", "secretmanager.versions.get", "secretmanager.versions.list"}),
    # Basic roles, as the same reference lists them among the roles that include each permission: "By
    # default, only project owners and editors can create, update, delete, or invoke services and jobs, and
    # only project owners and Cloud Run Admins can modify ... IAM policies"
    # (https://cloud.google.com/run/docs/securing/managing-access). Editor cannot read secret payloads.
    "roles/owner": _RUN_WRITE | _SECRETS_WRITE | _OBSERVE | _IMAGES_READ | {"run.services.setIamPolicy", _ACT_AS,
                                                           "secretmanager.versions.access"},
    "roles/editor": _RUN_WRITE | _SECRETS_WRITE | _OBSERVE | _IMAGES_READ | {_ACT_AS},
    "roles/viewer": _RUN_READ | _SECRETS_READ | _OBSERVE | _IMAGES_READ,
}

DEFAULT_ROLES = ("roles/run.developer", "roles/iam.serviceAccountUser", "roles/logging.viewer",
                 "roles/monitoring.viewer", "roles/secretmanager.secretAccessor", "roles/artifactregistry.reader")
"""The least set that lets the bot work: deploy and shift traffic, run revisions as their service account,
read logs and metrics, read its Slack secrets, read its images' upload times (DORA's lead time)."""

SERVICE_ROLES = frozenset({"roles/run.admin", "roles/run.developer", "roles/run.viewer", "roles/run.invoker",
                           "roles/run.servicesInvoker"})
"""Roles whose "lowest-level resource where you can grant this role" is a Cloud Run service
(https://cloud.google.com/run/docs/reference/iam/roles)."""

_MEMBER_KINDS = ("user:", "serviceAccount:", "group:", "domain:", "principal:", "principalSet:")
_PUBLIC = ("allUsers", "allAuthenticatedUsers")


def project_number(project: str) -> str:
    """The emulated project's 12-digit number, stable per project id."""
    return str(int(hashlib.sha256(project.encode()).hexdigest(), 16) % 10**12).zfill(12)


class RoleError(ValueError):
    """A role name IAM does not know; the message lists the known ones."""


def _domain(permission: str) -> str:
    """The service a permission belongs to, the ErrorInfo domain Google reports (run.* -> run.googleapis.com)."""
    return f"{permission.split('.', 1)[0]}.googleapis.com"


@dataclass
class Policy:
    """A google.iam.v1.Policy without conditions: role -> members, and a fingerprint for read-modify-write."""

    bindings: dict[str, list[str]] = field(default_factory=dict)
    revision: int = 0
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def etag(self) -> str:
        digest = hashlib.sha256(f"{self.uid}:{self.revision}".encode()).digest()[:8]
        return base64.b64encode(digest).decode()

    def roles_of(self, member: str) -> set[str]:
        return {role for role, members in self.bindings.items() if member in members}

    def to_json(self) -> dict[str, object]:
        """Version 1: "If a policy does not include any conditions, ... any valid version" (Policy.version)."""
        body: dict[str, object] = {"version": 1, "etag": self.etag}
        bindings = [{"role": role, "members": sorted(members)} for role, members in sorted(self.bindings.items())
                    if members]
        if bindings:
            body["bindings"] = bindings
        return body


class Iam:
    """The bot's project roles and the allow policies of individual resources."""

    def __init__(self, project: str, region: str, roles: Iterable[str] = DEFAULT_ROLES) -> None:
        self.project = project
        self.region = region
        self.number = project_number(project)
        self.roles: list[str] = []
        self.set_roles(roles)
        self.policies: dict[str, Policy] = {}
        # Services whose `invokerIamDisabled` is set are public without any binding ("Disable the Cloud Run
        # Invoker IAM check", https://cloud.google.com/run/docs/authenticating/public).
        self.invoker_check_disabled: set[str] = set()

    @property
    def email(self) -> str:
        return f"chatops@{self.project}.iam.gserviceaccount.com"

    @property
    def member(self) -> str:
        return f"serviceAccount:{self.email}"

    def set_roles(self, roles: Iterable[str]) -> list[str]:
        """Replace the project-level roles, all or nothing."""
        wanted = list(dict.fromkeys(roles))
        unknown = [role for role in wanted if role not in ROLES]
        if unknown:
            raise RoleError(f"unknown role {unknown[0]!r}; known: {', '.join(sorted(ROLES))}")
        self.roles = wanted
        return self.roles

    # -- checks -----------------------------------------------------------------------------------

    def in_project(self, resource: str) -> bool:
        """Whether a resource is the project or lies in it, named by id or number; `projects/-` (a service
        account's project left to the server) counts as this one."""
        return any(resource == parent or resource.startswith(parent + "/")
                   for parent in (f"projects/{self.project}", f"projects/{self.number}", "projects/-"))

    def permissions(self, resource: str) -> set[str]:
        """What the bot may do on a resource: its project roles, on resources of its project only (a role
        granted on a project is inherited by the resources in it, nowhere else:
        https://cloud.google.com/iam/docs/resource-hierarchy-access-control), plus any role bound to it on the
        resource or an ancestor that has a policy."""
        roles = set(self.roles) if self.in_project(resource) else set()
        for name, policy in self.policies.items():
            if resource == name or resource.startswith(name + "/"):
                roles |= policy.roles_of(self.member)
        return {permission for role in roles for permission in ROLES[role]}

    def authorize(self, permission: str, resource: str) -> None:
        """An `Authorize`. Messages and the ErrorInfo follow what Google returns: "Permission 'X' denied on
        resource 'R' (or resource may not exist)." with reason IAM_PERMISSION_DENIED and metadata
        {permission, resource} (google.api.ErrorReason, https://github.com/googleapis/googleapis/blob/master/
        google/api/error_reason.proto). actAs is phrased as Cloud Run phrases it: "Permission
        'iam.serviceaccounts.actAs' denied on service account E (or it may not exist)."
        (https://github.com/GoogleCloudPlatform/cloud-run-release-manager/issues/81)."""
        if permission in self.permissions(resource):
            return
        raise self.denial(permission, resource)

    @staticmethod
    def denial(permission: str, resource: str) -> GoogleError:
        """Google's PERMISSION_DENIED for a permission missing on a resource, with its ErrorInfo: also what a
        resource in another project gets, since the bot holds nothing there."""
        if permission == _ACT_AS:
            email = resource.rsplit("/", 1)[-1]
            message = f"Permission 'iam.serviceaccounts.actAs' denied on service account {email} (or it may not exist)."
        else:
            message = f"Permission '{permission}' denied on resource '{resource}' (or resource may not exist)."
        detail = error_info("IAM_PERMISSION_DENIED", _domain(permission),
                            {"permission": permission, "resource": resource})
        return GoogleError("PERMISSION_DENIED", message, [detail])

    def test_permissions(self, resource: str, asked: Iterable[str]) -> list[str]:
        """testIamPermissions: the subset of `asked` the caller holds on the resource."""
        held = self.permissions(resource)
        return [permission for permission in asked if permission in held]

    # -- resource policies ------------------------------------------------------------------------

    def service_name(self, service: str) -> str:
        return service if "/" in service else f"projects/{self.project}/locations/{self.region}/services/{service}"

    def policy(self, resource: str) -> Policy:
        return self.policies.setdefault(resource, Policy())

    def set_policy(self, resource: str, bindings: list[dict[str, object]], etag: str = "") -> Policy:
        """setIamPolicy. A stale etag is refused with 409 ABORTED, as IAM does ("If the etag values do not
        match, the request fails with a 409 error code and ABORTED status",
        https://cloud.google.com/python/docs/reference/iam/latest/google.cloud.iam_v2.types.UpdatePolicyRequest);
        no etag overwrites blindly (google.iam.v1.Policy.etag)."""
        current = self.policy(resource)
        if etag and etag != current.etag:
            raise GoogleError("ABORTED", "There were concurrent policy changes. Please retry the whole "
                              "read-modify-write with exponential backoff.")
        checked: dict[str, list[str]] = {}
        for binding in bindings:
            role = str(binding.get("role", ""))
            members = binding.get("members") or []
            if role not in SERVICE_ROLES:
                raise GoogleError("INVALID_ARGUMENT", f"Role {role} is not supported for this resource.")
            if not isinstance(members, list):
                raise GoogleError("INVALID_ARGUMENT", f"The members of role {role} must be a list.")
            for member in members:
                if not (member in _PUBLIC or str(member).startswith(_MEMBER_KINDS)):
                    raise GoogleError("INVALID_ARGUMENT", f"Invalid member '{member}' in role {role}: write "
                                      "user:EMAIL, serviceAccount:EMAIL, group:EMAIL, domain:DOMAIN, allUsers "
                                      "or allAuthenticatedUsers.")
            checked.setdefault(role, [])
            checked[role] += [str(m) for m in members if m not in checked[role]]
        current.bindings = checked
        current.revision += 1
        return current

    def drop_policy(self, resource: str) -> None:
        self.policies.pop(resource, None)

    def bind(self, service: str, role: str, member: str) -> None:
        """Add one binding the way `gcloud run services add-iam-policy-binding` does (the world's seeding)."""
        policy = self.policy(self.service_name(service))
        members = policy.bindings.setdefault(role, [])
        if member not in members:
            members.append(member)
            policy.revision += 1

    # -- invoking services --------------------------------------------------------------------------

    def _invokers(self, service: str) -> set[str]:
        policy = self.policies.get(self.service_name(service), Policy())
        return {member for role, members in policy.bindings.items() if "run.routes.invoke" in ROLES[role]
                for member in members}

    def private(self, service: str) -> bool:
        """A service needs credentials unless allUsers may invoke it or its invoker check is disabled
        (https://cloud.google.com/run/docs/authenticating/public: "Assign the Cloud Run Invoker IAM role to the
        allUsers member type")."""
        open_to_all = self.service_name(service) in self.invoker_check_disabled
        return not open_to_all and "allUsers" not in self._invokers(service)

    def may_invoke(self, service: str, email: str | None) -> bool:
        """Whether a request to the service, made with an ID token for `email` (None: no token), passes
        Cloud Run's invoker check: allUsers holds run.routes.invoke on the service; or the caller does, bound
        on the service (as user: or serviceAccount:) or, for the bot, at project level (run.developer
        includes run.routes.invoke). allAuthenticatedUsers admits any valid token."""
        if not self.private(service):
            return True
        invokers = self._invokers(service)
        if email is None:
            return False
        if "allAuthenticatedUsers" in invokers or {f"user:{email}", f"serviceAccount:{email}"} & invokers:
            return True
        return email == self.email and "run.routes.invoke" in self.permissions(self.service_name(service))
