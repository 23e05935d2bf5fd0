"""The console's text for a modal: each field with the ids `:fill` takes, its value, its choices and its error."""

from __future__ import annotations

from bot.render.modals import Origin, deploy_modal
from sandbox.console_modals import describe


def test_a_modal_reads_as_its_fields_with_their_ids_values_and_errors() -> None:
    view = deploy_modal(Origin("C1", "http://x"), ("canary", "direct"), "canary") | {
        "state": {"values": {"image": {"modal_image": {"type": "plain_text_input", "value": "v3"}}}},
        "errors": {"image": "Not one of the repositories"}}
    lines = [line.strip() for line in describe(view).splitlines()]
    assert lines[0] == "[Deploy]"
    assert "Service: —  (external_select · service modal_service)" in lines
    assert "Strategy: —  (static_select · strategy modal_strategy) one of canary, direct" in lines
    image = lines.index(next(line for line in lines if line.startswith("Image tag")))
    assert lines[image].startswith("Image tag or full image reference: v3  (plain_text_input · image modal_image)")
    assert lines[image + 1] == "! Not one of the repositories"
    assert lines[image + 2].startswith("Past a lock or freeze window? Say why (override): —  (plain_text_input · "
                                       "override modal_override)")
    assert lines[image + 3].endswith("[Preview plan] (:press deploy_preview)")
