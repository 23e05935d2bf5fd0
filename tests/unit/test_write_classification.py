"""How Google's answers to a write are classified: only what asking again cannot change is a refusal."""

from __future__ import annotations

from google.api_core import exceptions

from bot.adapters.cloudrun import classify


def test_an_unauthenticated_write_is_retried_not_taken_for_a_permanent_refusal() -> None:
    """google-auth has already refreshed the token once on the 401; one more is a token source's bad moment."""
    assert classify(exceptions.Unauthenticated("Request had invalid authentication credentials.")).outcome == "retry"


def test_a_denied_permission_is_a_refusal_and_a_stale_etag_a_conflict() -> None:
    assert classify(exceptions.PermissionDenied("Permission 'run.services.update' denied")).outcome == "refused"
    assert classify(exceptions.Aborted("etag mismatch")).outcome == "conflict"
    assert classify(exceptions.ServiceUnavailable("try again")).outcome == "retry"
