"""The plan: the shipped one loads, and every plan DocSpace would refuse is stopped with a named key and fix."""

from __future__ import annotations

import pytest

from onboarding.config import DEFAULT_PLAN
from onboarding.domain import Client
from onboarding.plan import PlanError, load_plan, parse_plan
from onboarding.steps import plan_steps
from tests.conftest import GENERIC_CRM


def test_the_shipped_plan_is_a_custom_room_with_viewer_client_and_external_link():
    plan = load_plan(DEFAULT_PLAN)
    assert (plan.room_type, plan.manager_access, plan.client_access, plan.link_kind, plan.link_access) == (
        5, 9, 2, "external", 2)
    assert [folder.title for folder in plan.folders] == ["Invoices", "Contracts", "Deliverables"]
    assert {template.folder for template in plan.templates} == {"Deliverables"}
    title = plan.render_room_title("D-1", None, Client("C-1", "Acme Corporation", "a@b.c"))
    assert title == "Client - Acme Corporation"


def test_steps_follow_the_plan_and_copies_wait_only_for_their_folder():
    steps = {step.name: step.needs for step in plan_steps(load_plan(DEFAULT_PLAN), GENERIC_CRM)}
    assert steps["room"] == ()
    assert steps["folder:Invoices"] == ("room",)
    assert steps["copy:Deliverables/Welcome to your client room.pdf"] == ("folder:Deliverables",)
    assert steps["client"] == ()
    assert steps["access"] == ("room", "client") and steps["link"] == ("room",)
    assert set(steps["callback"]) == set(steps) - {"callback"}


def test_a_long_client_name_is_cut_to_the_room_title_limit():
    plan = parse_plan({"room": {"title": "{client.name} / {deal.id}"}})
    assert len(plan.render_room_title("D-1", None, Client("C", "x" * 500, "e@x.y"))) == 170


@pytest.mark.parametrize(("document", "names"), [
    ({"room": {"type": "collaboration"}, "link": {"kind": "external"}},
     ['[link] kind = "external"', "collaboration", 'type = "custom"', 'kind = "none"']),
    ({"room": {"type": "public"}, "access": {"client": "viewer"}},
     ["[access] client", "public", "room-manager, content-creator"]),
    ({"access": {"client": "full"}}, ['[access] client = "full" is unknown']),
    ({"room": {"title": "Client {client.phone}"}}, ["{client.phone}", "{client.name}"]),
    ({"room": {"colour": "red"}}, ['[room] unknown key "colour"']),
    ({"folders": [{"title": "A"}, {"title": "A"}]}, ['"A" appears twice']),
    ({"templates": [{"file_id": 1, "title": "W.pdf", "folder": "Nowhere"}]}, ['folder = "Nowhere"']),
    ({"templates": [{"file_id": "9001", "title": "W.pdf"}]}, ["file_id must be the positive number"]),
    ({"templates": [{"file_id": 1, "title": "Welcome"}]}, ["with its extension"]),
    ({"link": {"kind": "external", "access": "room-manager"}}, ['[link] access = "room-manager"']),
    ({"room": {"tags": "crm"}}, ["[room] tags must be a list"]),
])
def test_refused_plans_name_the_key_and_the_fix(document, names):
    with pytest.raises(PlanError) as error:
        parse_plan(document)
    for name in names:
        assert name in str(error.value)


def test_a_collaboration_room_without_link_is_fine():
    plan = parse_plan({"room": {"type": "collaboration"}, "link": {"kind": "none"}})
    assert plan.room_type == 2
    assert "link" not in {step.name for step in plan_steps(plan, GENERIC_CRM)}


def test_unreadable_files_name_the_file(tmp_path):
    broken = tmp_path / "plan.toml"
    broken.write_text("[room\n")
    with pytest.raises(PlanError, match=r"plan\.toml: not valid TOML"):
        load_plan(broken)
    with pytest.raises(PlanError, match="cannot read"):
        load_plan(tmp_path / "missing.toml")
