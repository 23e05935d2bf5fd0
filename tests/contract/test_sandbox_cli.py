"""`chatops sandbox --headless`: starts the world, writes the endpoints file, stops cleanly on SIGTERM."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import EXAMPLE_CONFIG


def test_headless_sandbox_writes_endpoints_keeps_secrets_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    endpoints_file = tmp_path / "endpoints.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "sandbox", "--headless", "--world-only", "--config", str(EXAMPLE_CONFIG),
         "--endpoints-file", str(endpoints_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not endpoints_file.exists():
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the endpoints file never appeared"
            time.sleep(0.05)
        endpoints = json.loads(endpoints_file.read_text())
        assert endpoints["project"] == "nba-props-platform" and endpoints["region"] == "us-west2"
        assert endpoints["channels"]["deploys"] == "C07DEPLOYS1"
        assert {"oncall", "viewer"} <= set(endpoints["users"])

        with httpx.Client(timeout=5) as http:
            state = http.get(f"{endpoints['control_url']}/state").json()
            assert len(state["services"]) == 7
            # Google's APIs take the access token the metadata server issues, and nothing less (401 without it).
            access = http.get(f"{endpoints['metadata_url']}/computeMetadata/v1/instance/service-accounts/default/"
                              "token", headers={"Metadata-Flavor": "Google"}).json()["access_token"]
            google = {"Authorization": f"Bearer {access}"}
            described = f"{endpoints['cloud_run_endpoint']}/v2/projects/nba-props-platform/locations/us-west2/services/"
            assert http.get(described + "prediction-worker").status_code == 401
            service = http.get(described + "prediction-worker", headers=google).json()
            # The fleet is private (Cloud Run's default): an ID token for the service URL from the metadata
            # server opens it (https://cloud.google.com/run/docs/authenticating/service-to-service).
            assert http.get(f"{service['uri']}/health").status_code == 403
            token = http.get(f"{endpoints['metadata_url']}/computeMetadata/v1/instance/service-accounts/default/"
                             "identity", params={"audience": service["uri"], "format": "full"},
                             headers={"Metadata-Flavor": "Google"}).text
            answer = http.get(f"{service['uri']}/health", headers={"Authorization": f"Bearer {token}"})
            assert answer.json()["status"] == "healthy"
            assert http.post(f"{endpoints['slack_api_url']}auth.test").json()["error"] == "not_authed"
            secrets = [
                http.get(f"{endpoints['secret_manager_endpoint']}/v1/projects/nba-props-platform/secrets/"
                         f"{name}/versions/latest:access", headers=google).json()["payload"]["data"]
                for name in ("slack-bot-token", "slack-signing-secret")
            ]
            # the simulated traffic's first entries are searchable once Logging's ingestion delay has passed
            deadline = time.monotonic() + 10
            while not (logged := http.post(f"{endpoints['logging_endpoint']}/v2/entries:list", headers=google, json={
                    "resourceNames": ["projects/nba-props-platform"], "pageSize": 5}).json()):
                assert time.monotonic() < deadline, "no log entry became searchable"
                time.sleep(0.5)
            assert logged["entries"][0]["resource"]["type"] == "cloud_run_revision"
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    for encoded in secrets:
        secret = base64.b64decode(encoded).decode()
        assert secret not in out + err + endpoints_file.read_text()
