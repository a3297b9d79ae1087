"""Episodes and a rubric with step criteria, for the annotation tests over steps.

The rubric is written as a draft through the rubric services; its criteria's scope and step
rule are set on the draft's rows (the editor's fields for them are another slice's work) and
it is then published, so the grader is compiled from them as any other."""

from __future__ import annotations

from decimal import Decimal

from annotation.content.episode import Episode
from annotation.models import Response
from rubrics import services as rubric_services
from rubrics.models import Criterion

SECRET_MODEL = "gpt-secret-agent-7"


def refund_episode(steps: int, *, tag: str = "") -> Episode:
    """An agent episode with `steps` assistant turns: steps - 1 turns that each call
    lookup_order (every fifth also calls refund) and a final answer."""
    messages: list[dict] = [{"role": "user", "content": f"Refund order A17{tag}, it broke."}]
    for i in range(steps - 1):
        calls = [
            {
                "id": f"c{i}",
                "type": "function",
                "function": {"name": "lookup_order", "arguments": f'{{"id": "A{i}"}}'},
            }
        ]
        if i % 5 == 4:
            calls.append(
                {
                    "id": f"r{i}",
                    "type": "function",
                    "function": {"name": "refund", "arguments": f'{{"id": "A{i}"}}'},
                }
            )
        messages.append(
            {"role": "assistant", "content": f"Turn {i}: checking order A{i}.", "tool_calls": calls}
        )
        for call in calls:
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": call["id"],
                    "content": f'{{"order": "A{i}", "status": "delivered", "by": "{call["id"]}"}}',
                }
            )
    messages.append(
        {"role": "assistant", "content": f"Done: your refund for A17{tag} is on its way."}
    )
    return Episode.parse(
        {
            "messages": messages,
            "final_state": {"orders": {"A17": {"refunded": True}}},
            "metadata": {"steps": steps, "model": SECRET_MODEL},
        }
    )


def add_episode(task, episode: Episode, *, model: str = SECRET_MODEL, sample_index: int = 0):
    return Response.objects.create(
        task=task,
        model=model,
        sample_index=sample_index,
        text=episode.final_text,
        content=episode.stored(),
    )


# (text, points, scope, step_rule, step_tool)
STEP_RUBRIC = [
    ("The final answer confirms the refund", 2, "outcome", "", ""),
    ("Each turn says which order it checks", 1, "step", "all", ""),
    ("Refunds only an order it looked up", -2, "step", "any", "refund"),
]


def publish_rubric(project, task, user, criteria=STEP_RUBRIC):
    """A published grader over `criteria` [(text, points, scope, step_rule, step_tool)]."""
    rubric = rubric_services.rubric_create(
        project=project,
        task=task,
        title=f"Steps rubric for {task.external_id}",
        user=user,
        criteria=[
            rubric_services.CriterionInput(text=text, points=Decimal(str(points)))
            for text, points, *_ in criteria
        ],
    )
    version = rubric.versions.get()
    for position, (_, _, scope, rule, tool) in enumerate(criteria):
        Criterion.objects.filter(version=version, position=position).update(
            scope=scope, step_rule=rule, step_tool=tool
        )
    return rubric_services.version_publish(version=version, user=user)
