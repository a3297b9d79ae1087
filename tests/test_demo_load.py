"""The demo loads whole on PostgreSQL: its runs show a cost, and its admin may set prices."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from grading import demo
from grading.models import GradingRun, ModelPrice

pytestmark = pytest.mark.django_db


def test_demo_runs_show_an_estimated_cost_and_its_admin_may_change_prices(
    client, settings, tmp_path
):
    settings.JUDGE_ALLOW_PRIVATE_URLS = True  # the simulator is on loopback, as in the demo
    result = demo.load_demo(simulator_url="http://127.0.0.1:8765/v1", out_dir=tmp_path)
    assert result.created and result.runs == 4
    assert ModelPrice.objects.filter(model=demo.SIM_MODEL).exists()

    run = GradingRun.objects.filter(project=result.project).first()
    client.force_login(User.objects.get(username="demo"))
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert "no price set" not in page
    assert "about $" in page
    listed = client.get("/admin/grading/modelprice/")
    assert listed.status_code == 200 and demo.SIM_MODEL in listed.content.decode()
    # Other demo personas are not staff.
    client.force_login(User.objects.get(username="engineer"))
    assert client.get("/admin/grading/modelprice/").status_code == 302
