"""Slack request signatures, checked by the verifier Bolt runs before any listener."""

from __future__ import annotations

from slack_sdk.signature import Clock, SignatureVerifier

# Slack's published example ("Verifying requests from Slack", api.slack.com/authentication/verifying-requests-
# from-slack): a documentation value, not a credential of any app.
EXAMPLE_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
EXAMPLE_TIMESTAMP = "1531420618"
EXAMPLE_BODY = (
    "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&"
    "channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&"
    "response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&"
    "trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
EXAMPLE_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


class At(Clock):
    def __init__(self, now: float) -> None:
        self.at = now

    def now(self) -> float:
        return self.at


def headers(timestamp: str = EXAMPLE_TIMESTAMP, signature: str = EXAMPLE_SIGNATURE) -> dict[str, str]:
    return {"x-slack-request-timestamp": timestamp, "x-slack-signature": signature}


def test_the_published_example_request_is_accepted() -> None:
    verifier = SignatureVerifier(EXAMPLE_SECRET, clock=At(float(EXAMPLE_TIMESTAMP) + 10))
    assert verifier.is_valid_request(EXAMPLE_BODY, headers())


def test_a_tampered_body_a_wrong_secret_and_an_old_timestamp_are_refused() -> None:
    verifier = SignatureVerifier(EXAMPLE_SECRET, clock=At(float(EXAMPLE_TIMESTAMP) + 10))
    assert not verifier.is_valid_request(EXAMPLE_BODY.replace("roadrunner", "coyote"), headers())
    assert not SignatureVerifier("0" * 32, clock=At(float(EXAMPLE_TIMESTAMP))).is_valid_request(
        EXAMPLE_BODY, headers())
    late = SignatureVerifier(EXAMPLE_SECRET, clock=At(float(EXAMPLE_TIMESTAMP) + 5 * 60 + 1))
    assert not late.is_valid_request(EXAMPLE_BODY, headers())
