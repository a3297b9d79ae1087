"""Episodes in: response rows with `messages` (JSONL, Parquet), inspect-ai eval logs and
OpenTelemetry GenAI spans, each validated by the content model, all or nothing."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotation import services
from annotation.content.episode import Episode
from annotation.models import Response
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def project(personas):
    for external_id in ("t1", "t2"):
        factories.make_task(personas.project, external_id)
    return personas.project


def refund_messages(order: str = "A17") -> list[dict]:
    return [
        {"role": "user", "content": f"Refund order {order}, it arrived broken."},
        {
            "role": "assistant",
            "content": "Let me look it up.",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "lookup_order", "arguments": json.dumps({"id": order})},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"status": "delivered"}'},
        {"role": "assistant", "content": "Done: your refund is on its way."},
    ]


def episode_row(i: int, **more) -> dict:
    return {
        "task_id": "t1",
        "model": "agent",
        "messages": refund_messages(f"A{i}"),
        "final_state": {"orders": {f"A{i}": {"refunded": True, "note": None}}},
        "sample_index": i,
        "metadata": {"tokens": 812, "temperature": 0.2},
        **more,
    }


def lines_of(items: list[dict]) -> list[bytes]:
    return [json.dumps(item).encode() + b"\n" for item in items]


def test_episode_rows_import_with_their_final_answer_and_twice_adds_nothing(project):
    items = [episode_row(i) for i in range(3)] + [
        {"task_id": "t2", "model": "agent", "response": "plain text"}
    ]
    first = services.responses_import_jsonl(project=project, lines=lines_of(items))
    assert (first.ok, first.created) == (True, 4), first.errors
    stored = Response.objects.get(task__external_id="t1", sample_index=1)
    assert stored.text == "Done: your refund is on its way."
    expected = Episode.parse(
        {"messages": refund_messages("A1"), "final_state": items[1]["final_state"]},
        metadata={"tokens": 812},
    )
    assert stored.content == expected.stored() == expected.as_json()
    assert stored.episode == expected
    assert stored.metadata == {"tokens": 812, "temperature": 0.2}
    assert [c.arguments for _, c in stored.episode.tool_calls()] == [{"id": "A1"}]
    assert Response.objects.get(task__external_id="t2").content is None

    again = services.responses_import_jsonl(project=project, lines=lines_of(items))
    assert (again.ok, again.created, again.already_present) == (True, 0, 4)


def test_a_differing_episode_is_refused_like_a_differing_text(project):
    services.responses_import_jsonl(project=project, lines=lines_of([episode_row(0)]))
    changed = episode_row(0)
    changed["final_state"]["orders"]["A0"]["refunded"] = False  # same final text
    result = services.responses_import_jsonl(project=project, lines=lines_of([changed]))
    assert [(e.line, e.field) for e in result.errors] == [(1, "messages")]
    assert "immutable" in result.errors[0].message
    as_text = {"task_id": "t1", "model": "agent", "response": "Done: your refund is on its way."}
    result = services.responses_import_jsonl(project=project, lines=lines_of([as_text]))
    assert [(e.line, e.field) for e in result.errors] == [(1, "response")]
    assert Response.objects.count() == 1


def test_a_bad_episode_names_line_and_field_path_and_nothing_is_imported(project):
    bad_arguments = episode_row(3)
    bad_arguments["messages"][1]["tool_calls"][0]["function"]["arguments"] = "{id: A3"
    orphan = episode_row(4)
    orphan["messages"][2]["tool_call_id"] = "nope"
    items = [
        episode_row(0),
        {**episode_row(1), "response": "both"},
        {"task_id": "t1", "model": "agent", "final_state": {}, "response": "x", "sample_index": 2},
        bad_arguments,
        orphan,
        {**episode_row(5), "messages": [{"role": "robot", "content": "hi"}]},
        {**episode_row(6), "metadata": {"tokens": -1}},
    ]
    result = services.responses_import_jsonl(project=project, lines=lines_of(items))
    assert [(e.line, e.field) for e in result.errors] == [
        (2, "messages"),
        (3, "final_state"),
        (4, "messages[1].tool_calls[0].function.arguments"),
        (5, "messages[2].tool_call_id"),
        (6, "messages[0].role"),
        (7, "metadata.tokens"),
    ]
    assert str(result.errors[2]).startswith(
        "line 4, field 'messages[1].tool_calls[0].function.arguments': not valid JSON"
    )
    assert Response.objects.count() == 0


def test_parquet_rows_carry_episodes_as_json_text_or_as_lists(project, tmp_path):
    as_text = tmp_path / "text.parquet"
    pq.write_table(
        pa.Table.from_pylist(
            [
                {
                    **episode_row(i),
                    "messages": json.dumps(episode_row(i)["messages"]),
                    "final_state": json.dumps(episode_row(i)["final_state"]),
                    "metadata": json.dumps(episode_row(i)["metadata"]),
                }
                for i in range(2)
            ]
        ),
        as_text,
    )
    nested = tmp_path / "nested.parquet"
    pq.write_table(
        pa.Table.from_pylist(
            [
                {
                    "task_id": "t2",
                    "model": "agent",
                    "messages": refund_messages(),
                    "sample_index": 0,
                }
            ]
        ),
        nested,
    )
    for path in (as_text, nested):
        with path.open("rb") as upload:
            result = services.responses_import_file(
                project=project, upload=upload, filename=path.name, format="parquet"
            )
        assert result.ok, result.errors
    stored = Response.objects.get(task__external_id="t1", sample_index=1)
    assert stored.episode.final_state == {"orders": {"A1": {"refunded": True, "note": None}}}
    from_lists = Response.objects.get(task__external_id="t2")
    assert from_lists.episode == Episode.parse(refund_messages())


# --- inspect-ai eval logs, made by inspect-ai with its offline mock model and a real tool ----


def run_inspect_eval(log_dir, log_format: str, *, epochs: int = 2):
    """A real eval: two samples, each answered by the mock model with a call of a real tool
    (which writes the environment's store) and then a final answer. Returns the log's path."""
    from inspect_ai import Task as InspectTask
    from inspect_ai import eval as inspect_eval
    from inspect_ai.dataset import Sample
    from inspect_ai.model import ChatMessageUser, ModelOutput, ModelUsage, get_model
    from inspect_ai.solver import generate, use_tools
    from inspect_ai.tool import tool
    from inspect_ai.util import store

    @tool
    def lookup_order():
        async def execute(order_id: str) -> str:
            """Look up an order by its id.

            Args:
                order_id: The order's id.
            """
            store().set("looked_up", order_id)
            return json.dumps({"id": order_id, "status": "delivered"})

        return execute

    def respond(messages, tools, tool_choice, config):
        last = messages[-1]
        if last.role == "tool":
            output = ModelOutput.from_content("mockllm/model", f"Refunded: {last.text}")
        else:
            order = messages[-1].text.split()[-1]
            output = ModelOutput.for_tool_call(
                "mockllm/model",
                "lookup_order",
                {"order_id": order},
                tool_call_id=f"call-{order}-{len(messages)}",
            )
        # Set usage, or the mock counts tokens with an encoding it would download.
        output.usage = ModelUsage(input_tokens=11, output_tokens=4, total_tokens=15)
        return output

    task = InspectTask(
        dataset=[
            Sample(id="refund-A17", input="Refund order A17"),
            Sample(
                id="refund-B2",
                input=[ChatMessageUser(content="Please refund order B2")],
            ),
        ],
        solver=[use_tools(lookup_order()), generate()],
        name="refunds",
    )
    model = get_model("mockllm/model", custom_outputs=respond)
    [log] = inspect_eval(
        task,
        model=model,
        epochs=epochs,
        log_dir=str(log_dir),
        log_format=log_format,
        display="none",
    )
    assert log.status == "success", log.error
    return log.location


@pytest.fixture(scope="module")
def inspect_logs(tmp_path_factory):
    """The logs, made in a thread of their own: inspect-ai runs its eval with asyncio.run,
    which refuses to start while another loop runs in this thread, and Playwright's sync API
    (the session's Chromium, when a browser test ran earlier in this process) keeps one."""
    from concurrent.futures import ThreadPoolExecutor

    logs = tmp_path_factory.mktemp("inspect-logs")
    with ThreadPoolExecutor(max_workers=1) as pool:
        made = {fmt: pool.submit(run_inspect_eval, logs / fmt, fmt) for fmt in ("eval", "json")}
        return {fmt: future.result() for fmt, future in made.items()}


@pytest.mark.parametrize("log_format", ["eval", "json"])
def test_an_inspect_log_imports_samples_as_tasks_and_episodes(project, inspect_logs, log_format):
    from pathlib import Path

    from inspect_ai.log import read_eval_log

    path = Path(inspect_logs[log_format])
    with path.open("rb") as upload:
        result = services.responses_import_file(project=project, upload=upload, filename=path.name)
    assert (result.ok, result.created) == (True, 4), result.errors
    # Tasks made from the samples' inputs, by sample id.
    task = project.tasks.get(external_id="refund-B2")
    assert task.messages == [{"role": "user", "content": "Please refund order B2"}]
    log = read_eval_log(str(path))
    responses = Response.objects.filter(task__project=project, model=log.eval.model)
    assert sorted(responses.values_list("task__external_id", "sample_index")) == [
        ("refund-A17", 0),
        ("refund-A17", 1),
        ("refund-B2", 0),
        ("refund-B2", 1),
    ]
    stored = responses.get(task__external_id="refund-A17", sample_index=1)
    sample = next(s for s in log.samples if s.id == "refund-A17" and s.epoch == 2)
    episode = stored.episode
    assert [m.role for m in episode.messages] == ["assistant", "tool", "assistant"]
    [(index, call)] = list(episode.tool_calls())
    assert (index, call.name, call.arguments) == (0, "lookup_order", {"order_id": "A17"})
    assert call.id == sample.messages[1].tool_calls[0].id
    assert episode.tool_result(call.id).text == '{"id": "A17", "status": "delivered"}'
    assert stored.text == episode.final_text == sample.output.completion
    assert episode.final_state == {"looked_up": "A17"}
    usage = sum(u.total_tokens for u in sample.model_usage.values())
    assert stored.metadata["tokens"] == usage == 30  # two generations of 15
    assert stored.metadata["wall_time_s"] == sample.total_time
    assert episode.metadata["tokens"] == usage
    assert stored.external_id == sample.uuid

    with path.open("rb") as upload:  # again: nothing added, no task twice
        again = services.responses_import_file(project=project, upload=upload, filename=path.name)
    assert (again.ok, again.created, again.already_present) == (True, 0, 4)
    assert project.tasks.filter(external_id__startswith="refund-").count() == 2


def test_a_broken_inspect_log_is_refused_and_leaves_no_task(project, inspect_logs, tmp_path):
    from inspect_ai.log import read_eval_log, write_eval_log

    log = read_eval_log(inspect_logs["json"])
    sample = log.samples[0]
    sample.messages[2].tool_call_id = "no-such-call"  # a result with no matching call
    broken = tmp_path / "broken.json"
    write_eval_log(log, str(broken), format="json")
    with broken.open("rb") as upload:
        result = services.responses_import_file(
            project=project, upload=upload, filename=broken.name, format="inspect"
        )
    assert [(e.line, e.field) for e in result.errors] == [(1, "messages[1].tool_call_id")]
    assert not project.tasks.filter(external_id__startswith="refund-").exists()
    assert Response.objects.count() == 0
    not_a_log = tmp_path / "notes.eval"
    not_a_log.write_bytes(b"PK\x03\x04 not really a zip")
    with not_a_log.open("rb") as upload:
        result = services.responses_import_file(
            project=project, upload=upload, filename=not_a_log.name
        )
    assert result.errors[0].field == "file"
    assert "not a readable inspect-ai eval log" in result.errors[0].message


# --- OpenTelemetry GenAI spans, made by the real SDK --------------------------------------


def genai(*messages) -> str:
    return json.dumps(list(messages))


def text_part(role: str, text: str) -> dict:
    return {"role": role, "parts": [{"type": "text", "content": text}]}


def record_agent_traces():
    """Two traces as an instrumented agent records them, through the SDK's in-memory exporter:
    one whose chat spans repeat the conversation (the tool's result inside the second input),
    the task on a span; one whose chat spans hold only new messages and whose tool result is
    only on its execute_tool span, the task on the resource."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    finished = []
    for resource in ({"service.name": "support-agent"}, {"assay.task_id": "t2"}):
        provider = TracerProvider(resource=Resource.create(resource))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("support-agent")
        call = {
            "type": "tool_call",
            "id": "call_1",
            "name": "lookup_order",
            "arguments": {"id": "A17"},
        }
        asked = text_part("user", "Refund order A17, it arrived broken.")
        called = {"role": "assistant", "parts": [{"type": "text", "content": "Checking."}, call]}
        answered = {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": "call_1", "response": "delivered"}],
        }
        repeats = "assay.task_id" not in resource
        with tracer.start_as_current_span("invoke_agent support") as agent:
            if repeats:
                agent.set_attribute("assay.task_id", "t1")
                agent.set_attribute("assay.final_state", json.dumps({"refunded": ["A17"]}))
            with tracer.start_as_current_span("chat gpt-agent") as chat:
                chat.set_attribute("gen_ai.operation.name", "chat")
                chat.set_attribute("gen_ai.request.model", "gpt-agent")
                chat.set_attribute(
                    "gen_ai.system_instructions",
                    json.dumps([{"type": "text", "content": "You are a support agent."}]),
                )
                chat.set_attribute("gen_ai.input.messages", genai(asked))
                chat.set_attribute("gen_ai.output.messages", genai(called))
                chat.set_attribute("gen_ai.usage.input_tokens", 40)
                chat.set_attribute("gen_ai.usage.output_tokens", 9)
            with tracer.start_as_current_span("execute_tool lookup_order") as run_tool:
                run_tool.set_attribute("gen_ai.operation.name", "execute_tool")
                run_tool.set_attribute("gen_ai.tool.name", "lookup_order")
                run_tool.set_attribute("gen_ai.tool.call.id", "call_1")
                run_tool.set_attribute("gen_ai.tool.call.arguments", '{"id": "A17"}')
                run_tool.set_attribute("gen_ai.tool.call.result", "delivered")
            with tracer.start_as_current_span("chat gpt-agent") as chat:
                chat.set_attribute("gen_ai.operation.name", "chat")
                chat.set_attribute("gen_ai.request.model", "gpt-agent")
                history = genai(asked, called, answered) if repeats else genai()
                chat.set_attribute("gen_ai.input.messages", history)
                chat.set_attribute(
                    "gen_ai.output.messages", genai(text_part("assistant", "Refunded A17."))
                )
                chat.set_attribute("gen_ai.usage.input_tokens", 60)
                chat.set_attribute("gen_ai.usage.output_tokens", 5)
        finished += exporter.get_finished_spans()
        exporter.clear()
    return finished


def otlp_json(spans) -> bytes:
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    return json.dumps(MessageToDict(encode_spans(spans))).encode()


def span_list_json(spans) -> bytes:
    return ("[" + ",".join(span.to_json() for span in spans) + "]").encode()


EXPECTED_OTEL_EPISODE = [
    {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "lookup_order", "arguments": '{"id": "A17"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "delivered", "name": "lookup_order"},
    {"role": "assistant", "content": "Refunded A17."},
]


@pytest.mark.parametrize("encode", [otlp_json, span_list_json], ids=["otlp", "span-list"])
def test_otel_genai_traces_import_one_episode_per_trace(project, tmp_path, encode):
    spans = record_agent_traces()
    path = tmp_path / "traces.json"
    path.write_bytes(encode(spans))
    with path.open("rb") as upload:
        result = services.responses_import_file(project=project, upload=upload, filename=path.name)
    assert (result.ok, result.created) == (True, 2), result.errors
    first, second = Response.objects.order_by("task__external_id")
    trace_ids = {format(s.context.trace_id, "032x") for s in spans}
    assert {first.external_id, second.external_id} == trace_ids
    for stored in (first, second):
        assert stored.model == "gpt-agent"
        assert stored.content["messages"] == EXPECTED_OTEL_EPISODE
        assert stored.text == "Refunded A17."
        assert stored.metadata["tokens"] == 40 + 9 + 60 + 5
        assert stored.metadata["wall_time_s"] > 0
    assert first.task.external_id == "t1" and first.episode.final_state == {"refunded": ["A17"]}
    assert not second.episode.has_final_state
    with path.open("rb") as upload:
        again = services.responses_import_file(project=project, upload=upload, filename=path.name)
    assert (again.ok, again.created, again.already_present) == (True, 0, 2)


def test_otel_traces_create_missing_tasks_and_refuse_a_trace_without_one(project, tmp_path):
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    spans = record_agent_traces()
    document = MessageToDict(encode_spans(spans))
    for resource_spans in document["resourceSpans"]:
        for attribute in resource_spans["resource"]["attributes"]:
            if attribute["key"] == "assay.task_id":
                attribute["value"] = {"stringValue": "new-task"}
    path = tmp_path / "traces.json"
    path.write_text(json.dumps(document))
    with path.open("rb") as upload:
        result = services.responses_import_file(project=project, upload=upload, filename=path.name)
    assert result.ok, result.errors
    created = project.tasks.get(external_id="new-task")
    assert created.messages == [
        {"role": "system", "content": "You are a support agent."},
        {"role": "user", "content": "Refund order A17, it arrived broken."},
    ]
    Response.objects.all().delete()
    created.delete()
    for resource_spans in document["resourceSpans"]:
        resource_spans["resource"]["attributes"] = []  # the second trace loses its task
    path.write_text(json.dumps(document))
    with path.open("rb") as upload:
        result = services.responses_import_file(
            project=project, upload=upload, filename=path.name, format="otel"
        )
    assert [(e.line, e.field) for e in result.errors] == [(2, "assay.task_id")]
    assert Response.objects.count() == 0


# --- Export then import ---------------------------------------------------------------------


def episodes_by_key(project) -> dict:
    return {
        (r.task.external_id, r.model, r.sample_index): (r.episode, r.text, r.metadata)
        for r in Response.objects.filter(task__project=project).select_related("task")
    }


def test_episodes_round_trip_through_the_responses_export_and_the_command(
    project, personas, tmp_path, inspect_logs
):
    from django.core.management import call_command

    from grading.datasets import formats

    items = [episode_row(i) for i in range(2)] + [
        {"task_id": "t2", "model": "plain", "response": "just text", "metadata": {"k": [1]}}
    ]
    assert services.responses_import_jsonl(project=project, lines=lines_of(items)).ok
    # The command finds an inspect-ai log by its content, whatever its name.
    renamed = tmp_path / "log-without-extension"
    renamed.write_bytes(open(inspect_logs["eval"], "rb").read())  # noqa: SIM115
    call_command("import_responses", str(renamed), "--project", project.slug)
    exported = tmp_path / "responses.jsonl"
    call_command(
        "export_dataset",
        "--project",
        project.slug,
        "--format",
        "responses-jsonl",
        "--output",
        str(exported),
    )
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    episode_line = next(x for x in lines if x["model"] == "agent" and x["sample_index"] == 1)
    assert episode_line["response"] is None
    assert episode_line["final_state"] == items[1]["final_state"]
    assert next(x for x in lines if x["model"] == "plain")["messages"] is None

    target = factories.make_project(owner=personas.admin, name="Episodes copy")
    for task in project.tasks.all():
        factories.make_task(target, task.external_id)
    call_command("import_responses", str(exported), "--project", target.slug, "--format", "jsonl")
    source_episodes, copied = episodes_by_key(project), episodes_by_key(target)
    assert len(copied) == len(source_episodes) == 3 + 4
    assert copied == source_episodes
    # The copy exports the same lines (key order may differ by database: compared as JSON).
    out = tmp_path / "again.jsonl"
    formats.responses_jsonl(out.open("wb"), project=target)
    assert [json.loads(x) for x in out.read_text().splitlines()] == lines


def test_verdict_exports_carry_episodes_and_steps_and_the_step_supervision_dataset(
    project, personas, tmp_path
):
    import io

    from annotation.models import Rater, Verdict
    from grading.datasets import formats

    items = [episode_row(0), {"task_id": "t1", "model": "plain", "response": "just text"}]
    assert services.responses_import_jsonl(project=project, lines=lines_of(items)).ok
    task = project.tasks.get(external_id="t1")
    grader = factories.make_published_rubric(
        project, task, [("Checks the order before refunding", 3), ("Is polite", 1)], personas.admin
    )
    judge = factories.make_judge(project, "http://127.0.0.1:9/v1")
    run = factories.make_run(project=project, grader=grader, judge=judge, total_items=2)
    rater = Rater.objects.create(project=project, kind="judge", name="judge: sim")
    checks, polite = grader.version.criteria.order_by("position")
    agent = Response.objects.get(model="agent")
    plain = Response.objects.get(model="plain")

    def verdict(response, criterion, outcome, step=None, sample=0):
        Verdict.objects.create(
            run=run,
            grader=grader,
            rater=rater,
            response=response,
            criterion=criterion,
            outcome=outcome,
            step=step,
            sample_index=sample,
            error="failed" if outcome == "error" else "",
        )

    # Steps of the agent's episode: messages 1 and 3. Step 1 met by two samples of three,
    # step 3 unmet; an error at step 3 of the second sample is left out.
    verdict(agent, checks, "met", step=1, sample=0)
    verdict(agent, checks, "met", step=1, sample=1)
    verdict(agent, checks, "unmet", step=1, sample=2)
    verdict(agent, checks, "unmet", step=3, sample=0)
    verdict(agent, checks, "error", step=3, sample=1)
    verdict(agent, checks, "unmet")  # the step rule's result for the response
    verdict(agent, polite, "met")
    verdict(plain, polite, "met")

    out = io.BytesIO()
    formats.verdicts_jsonl(out, project=project, run=run)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    steps = [(x["model"], x["step"]) for x in lines if x["criterion_id"] == checks.pk]
    assert sorted(steps, key=lambda s: (s[0], -1 if s[1] is None else s[1])) == [
        ("agent", None),
        ("agent", 1),
        ("agent", 1),
        ("agent", 1),
        ("agent", 3),
        ("agent", 3),
    ]
    on_agent = next(x for x in lines if x["model"] == "agent")
    assert (
        Episode.parse(
            {"messages": on_agent["messages"], "final_state": on_agent["final_state"]},
            metadata={"tokens": 812},
        )
        == agent.episode
    )
    assert next(x for x in lines if x["model"] == "plain")["messages"] is None

    out = io.BytesIO()
    formats.verdicts_parquet(out, project=project, run=run)
    table = pq.read_table(io.BytesIO(out.getvalue())).to_pylist()
    row = next(r for r in table if r["model"] == "agent" and r["step"] == 3)
    assert json.loads(row["messages"]) == agent.content["messages"]
    assert json.loads(row["final_state"]) == agent.content["final_state"]
    assert next(r for r in table if r["model"] == "plain")["messages"] is None

    out = io.BytesIO()
    rows, _ = formats.write("step-supervision", out, project=project, run=run)
    [line] = [json.loads(x) for x in out.getvalue().splitlines()]
    assert rows == 1
    assert line["labels"] == [True, False]
    assert line["steps"] == [1, 3]
    assert line["criterion"] == "Checks the order before refunding"
    assert line["prompt"].startswith("[user]\nWhat should I do?")  # the task's prompt
    assert "Refund order A0, it arrived broken." in line["prompt"]  # the episode's opening
    assert "calls lookup_order (c1)" in line["completions"][0]
    assert line["completions"][1].startswith('#3 tool lookup_order (c1): {"status"')
    assert line["completions"][1].endswith("#4 assistant: Done: your refund is on its way.")
    # It loads where process reward models are trained from: a datasets Dataset.
    from datasets import Dataset

    loaded = Dataset.from_list([line])
    assert loaded.features["labels"].feature.dtype == "bool"


def test_the_responses_page_takes_an_inspect_log_and_refuses_a_bad_trace_by_line(
    client, personas, project, inspect_logs
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(personas.engineer)
    url = f"/p/{project.slug}/responses/"
    log = open(inspect_logs["eval"], "rb").read()  # noqa: SIM115
    page = client.post(url, {"file": SimpleUploadedFile("run.eval", log)})
    assert page.status_code == 200
    assert b"Imported 4 responses from run.eval" in page.content
    spans = json.loads(span_list_json(record_agent_traces()))
    for span in spans:
        span["attributes"].pop("gen_ai.request.model", None)
    page = client.post(url, {"file": SimpleUploadedFile("trace.json", json.dumps(spans).encode())})
    assert page.status_code == 200
    assert b"line 1, field &#x27;gen_ai.request.model&#x27;" in page.content
    assert Response.objects.count() == 4
