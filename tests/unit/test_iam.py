"""IAM as the sandbox models it: Google's predefined roles, PERMISSION_DENIED as Google words it, allow
policies with etags, and who may invoke a Cloud Run service."""

from __future__ import annotations

import pytest

from sandbox.google_errors import GoogleError
from sandbox.iam import DEFAULT_ROLES, ROLES, Iam, RoleError

SERVICE = "projects/p/locations/us-west2/services/worker"


def denied(iam: Iam, permission: str, resource: str) -> GoogleError:
    with pytest.raises(GoogleError) as raised:
        iam.authorize(permission, resource)
    assert raised.value.status == "PERMISSION_DENIED" and raised.value.http_status == 403
    return raised.value


def test_run_developer_deploys_and_invokes_but_cannot_change_policies() -> None:
    """https://cloud.google.com/run/docs/securing/managing-access: Cloud Run Developer "Can get but not set IAM
    policies"; https://cloud.google.com/iam/docs/roles-permissions/run lists run.routes.invoke in it."""
    developer = ROLES["roles/run.developer"]
    assert {"run.services.update", "run.services.getIamPolicy", "run.routes.invoke"} <= developer
    assert "run.services.setIamPolicy" not in developer and "iam.serviceAccounts.actAs" not in developer
    assert "run.services.setIamPolicy" in ROLES["roles/run.admin"]
    assert ROLES["roles/run.invoker"] == {"run.routes.invoke"}
    assert ROLES["roles/run.viewer"].isdisjoint({"run.services.update", "run.routes.invoke"})


def test_basic_roles_follow_the_cloud_run_reference() -> None:
    """https://cloud.google.com/run/docs/securing/managing-access: "only project owners and editors can create,
    update, delete, or invoke services ..., and only project owners and Cloud Run Admins can modify ... IAM
    policies"."""
    assert {"run.services.update", "run.routes.invoke", "iam.serviceAccounts.actAs"} <= ROLES["roles/editor"]
    assert "run.services.setIamPolicy" not in ROLES["roles/editor"]
    assert "secretmanager.versions.access" not in ROLES["roles/editor"]
    assert "run.services.setIamPolicy" in ROLES["roles/owner"]
    assert "run.services.update" not in ROLES["roles/viewer"]


def test_the_default_roles_are_the_least_that_let_the_bot_work() -> None:
    iam = Iam("p", "us-west2")
    assert iam.member == "serviceAccount:chatops@p.iam.gserviceaccount.com"
    assert iam.roles == list(DEFAULT_ROLES)
    for permission in ("run.services.update", "iam.serviceAccounts.actAs", "logging.logEntries.list",
                       "monitoring.timeSeries.list", "secretmanager.versions.access"):
        iam.authorize(permission, SERVICE)
    denied(iam, "run.services.setIamPolicy", SERVICE)


def test_an_unknown_role_is_refused_whole_and_named() -> None:
    iam = Iam("p", "us-west2")
    with pytest.raises(RoleError, match=r"'roles/run\.deployer'.*roles/run\.developer"):
        iam.set_roles(["roles/run.viewer", "roles/run.deployer"])
    assert iam.roles == list(DEFAULT_ROLES)


def test_a_denial_reads_like_googles_with_an_error_info() -> None:
    """Message as Cloud Run words it ("Permission 'run.services.get' denied on resource '...' (or resource may not
    exist).", https://github.com/google-github-actions/deploy-cloudrun/issues/182) and ErrorInfo reason
    IAM_PERMISSION_DENIED with metadata {permission, resource} (google/api/error_reason.proto)."""
    iam = Iam("p", "us-west2", roles=["roles/run.viewer"])
    error = denied(iam, "run.services.update", SERVICE)
    assert error.message == (f"Permission 'run.services.update' denied on resource '{SERVICE}' "
                             "(or resource may not exist).")
    assert error.details == [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "IAM_PERMISSION_DENIED",
                              "domain": "run.googleapis.com",
                              "metadata": {"permission": "run.services.update", "resource": SERVICE}}]


def test_act_as_is_denied_on_the_service_account() -> None:
    """"Permission 'iam.serviceaccounts.actAs' denied on service account 2336...-compute@developer.gserviceaccount
    .com (or it may not exist)." (https://github.com/GoogleCloudPlatform/cloud-run-release-manager/issues/81)."""
    iam = Iam("p", "us-west2", roles=["roles/run.developer"])
    account = "projects/-/serviceAccounts/1-compute@developer.gserviceaccount.com"
    error = denied(iam, "iam.serviceAccounts.actAs", account)
    assert error.message == ("Permission 'iam.serviceaccounts.actAs' denied on service account "
                             "1-compute@developer.gserviceaccount.com (or it may not exist).")
    assert error.details[0]["domain"] == "iam.googleapis.com"


def test_a_role_bound_on_a_service_adds_to_the_project_roles_there_only() -> None:
    """"Roles can be granted to users on an entire project or on individual services"
    (https://cloud.google.com/run/docs/reference/iam/roles)."""
    iam = Iam("p", "us-west2", roles=[])
    iam.bind("worker", "roles/run.developer", iam.member)
    iam.authorize("run.services.update", SERVICE)
    iam.authorize("run.revisions.get", f"{SERVICE}/revisions/worker-00001-abc")
    denied(iam, "run.services.update", "projects/p/locations/us-west2/services/other")


def test_a_stale_policy_etag_is_aborted_and_no_etag_overwrites() -> None:
    """google.iam.v1.Policy.etag: "systems are expected to put that etag in the request to setIamPolicy";
    a mismatch "fails with a 409 error code and ABORTED status"
    (https://cloud.google.com/python/docs/reference/iam/latest/google.cloud.iam_v2.types.UpdatePolicyRequest)."""
    iam = Iam("p", "us-west2")
    read = iam.policy(SERVICE).etag
    iam.set_policy(SERVICE, [{"role": "roles/run.invoker", "members": ["user:a@example.com"]}], read)
    with pytest.raises(GoogleError) as stale:
        iam.set_policy(SERVICE, [{"role": "roles/run.invoker", "members": ["allUsers"]}], read)
    assert stale.value.status == "ABORTED" and stale.value.http_status == 409
    blind = iam.set_policy(SERVICE, [{"role": "roles/run.invoker", "members": ["allUsers"]}])
    assert blind.to_json()["bindings"] == [{"role": "roles/run.invoker", "members": ["allUsers"]}]
    assert blind.etag != read


@pytest.mark.parametrize("binding, message", [
    ({"role": "roles/owner", "members": ["user:a@example.com"]}, "not supported for this resource"),
    ({"role": "roles/run.invoker", "members": ["a@example.com"]}, "Invalid member 'a@example.com'"),
])
def test_a_policy_with_a_role_or_member_cloud_run_cannot_hold_is_refused(binding: dict[str, object],
                                                                         message: str) -> None:
    """Only roles grantable on a Cloud Run service ("Lowest-level resources where you can grant this role: Cloud
    Run service", https://cloud.google.com/run/docs/reference/iam/roles) and typed members."""
    iam = Iam("p", "us-west2")
    with pytest.raises(GoogleError, match=message) as refused:
        iam.set_policy(SERVICE, [binding])
    assert refused.value.status == "INVALID_ARGUMENT"


def test_who_may_invoke_a_private_service() -> None:
    """https://cloud.google.com/run/docs/authenticating/overview: services are private by default and "only
    callable by Project Owners, Project Editors, and Cloud Run Admins and Cloud Run Invokers"."""
    iam = Iam("p", "us-west2", roles=["roles/run.viewer"])
    assert iam.private("worker")
    assert not iam.may_invoke("worker", None)
    assert not iam.may_invoke("worker", iam.email)
    iam.bind("worker", "roles/run.invoker", "serviceAccount:scheduler@p.iam.gserviceaccount.com")
    assert iam.may_invoke("worker", "scheduler@p.iam.gserviceaccount.com")
    assert not iam.may_invoke("worker", "someone@example.com")
    iam.set_roles(["roles/run.developer"])
    assert iam.may_invoke("worker", iam.email), "run.developer includes run.routes.invoke at project level"
    assert not iam.may_invoke("worker", "someone@example.com")


def test_all_users_or_a_disabled_invoker_check_make_a_service_public() -> None:
    """https://cloud.google.com/run/docs/authenticating/public: "Disable the Cloud Run Invoker IAM check" or
    "Assign the Cloud Run Invoker IAM role to the allUsers member type"."""
    iam = Iam("p", "us-west2", roles=[])
    iam.bind("dashboard", "roles/run.invoker", "allUsers")
    assert not iam.private("dashboard") and iam.may_invoke("dashboard", None)
    iam.invoker_check_disabled.add(iam.service_name("api"))
    assert not iam.private("api") and iam.may_invoke("api", None)
    iam.bind("internal", "roles/run.invoker", "allAuthenticatedUsers")
    assert iam.private("internal") and not iam.may_invoke("internal", None)
    assert iam.may_invoke("internal", "anyone@example.com")
