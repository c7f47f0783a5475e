"""The MCP server (``--mcp``) as an agent sees it: tools listed and called through the MCP
endpoint of a launched app, with the MCP client library (over fake backends, in-process)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from typing import Any, Iterator

import pytest
from PIL import Image

from studio.ui.agents import AGENT_TOOLS
from studio.ui.app import LAUNCH_OPTIONS, TRAINING_API_NAMES, build_app
from tests.studio_fakes import ScriptedCritic, SquaresGenerator, make_services, poor
from tests.ui_helpers import free_port

mcp = pytest.importorskip("mcp")
from mcp import ClientSession  # noqa: E402
from mcp.client.streamable_http import streamablehttp_client  # noqa: E402

A_WINS = ({"text_faithfulness": 3.5, "physical_quality": 3.0}, {"text_faithfulness": 2.0, "physical_quality": 2.0})


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[str, Any]]:
    critic = ScriptedCritic([poor(2.0)], pair_script=[A_WINS, (A_WINS[1], A_WINS[0])])
    services = make_services(tmp_path, critic, SquaresGenerator())
    demo = build_app(services)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_port=port, quiet=True, mcp_server=True, **LAUNCH_OPTIONS)
    try:
        yield f"http://127.0.0.1:{port}/gradio_api/mcp/", services
    finally:
        demo.close()


def session(url: str, calls: list[tuple[str, dict[str, Any]]]) -> tuple[list[Any], list[Any]]:
    """The tool list, and the result of each call in order, over one MCP session."""

    async def run() -> tuple[list[Any], list[Any]]:
        async with streamablehttp_client(url) as (read, write, _):
            async with ClientSession(read, write) as client:
                await client.initialize()
                tools = (await client.list_tools()).tools
                return tools, [await client.call_tool(name, arguments) for name, arguments in calls]

    return asyncio.run(run())


def text(result: Any) -> str:
    assert [c.type for c in result.content] == ["text"], result.content
    return result.content[0].text


def png_base64(colour: tuple[int, int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_tools_have_optional_inputs_optional_and_point_at_no_upload_tool(served):
    url, _ = served
    tools, _ = session(url, [])
    listed = {tool.name: tool for tool in tools}
    assert set(listed) == set(AGENT_TOOLS) | {"export_session", "export_votes"} | set(TRAINING_API_NAMES)
    required = {name: set(tool.inputSchema.get("required", [])) for name, tool in listed.items()}
    assert required["refine"] == required["generate_pair"] == {"prompt"}  # no source image for text to image
    assert required["judge"] == {"prompt", "image_a", "image_b"} and required["diagnose"] == {"prompt", "image"}
    assert required["history_search"] == set() and required["resume"] == {"session_id"}
    assert not [name for name, tool in listed.items() if "upload_file_to_gradio" in tool.description]
    assert "stored image id or base64" in listed["judge"].inputSchema["properties"]["image_a"]["description"]


def test_a_text_to_image_refine_answers_json_and_its_image_comes_as_image_content(served):
    url, services = served
    _, (refined,) = session(url, [("refine", {"prompt": "a red square", "max_rounds": 2})])
    record = json.loads(text(refined))
    assert record["status"] == "finished" and record["task"] == "t2i" and len(record["rounds"]) >= 1
    assert "data:image" not in text(refined) and "<" not in text(refined) and len(text(refined)) < 5000
    best = record["best"]["image_id"]
    _, (picture, searched, opened) = session(url, [("image", {"image_id": best}), ("history_search", {}),
                                                  ("session_json", {"session_id": record["id"]})])
    image, link = picture.content
    assert image.type == "image" and image.mimeType == "image/png"
    assert Image.open(io.BytesIO(base64.b64decode(image.data))).size == (32, 32)
    assert link.type == "text" and "/gradio_api/file=" in link.text
    found = json.loads(text(searched))
    assert found["matched"] == 1 and found["sessions"][0]["best_image_id"] == best
    assert json.loads(text(opened))["id"] == record["id"]
    assert services.store.get_session(record["id"])["status"] == "finished"


def test_judge_takes_stored_ids_or_base64_and_a_vote_follows(served):
    url, services = served
    _, (pair,) = session(url, [("generate_pair", {"prompt": "a red square", "seed_b": 5})])
    ids = json.loads(text(pair))
    _, (by_id, by_data) = session(url, [
        ("judge", {"prompt": "a red square", "image_a": str(ids["image_a"]), "image_b": str(ids["image_b"])}),
        ("judge", {"prompt": "a red square", "image_a": png_base64((220, 40, 40)),
                   "image_b": "data:image/png;base64," + png_base64((40, 40, 220)), "both_orders": False})])
    verdict = json.loads(text(by_id))
    assert (verdict["winner"], verdict["consistent"]) == ("A", True)
    assert set(verdict["dimensions"]) == {"text_faithfulness", "physical_quality"} and "raw_ab" not in verdict
    assert json.loads(text(by_data))["judgement_id"] > verdict["judgement_id"]
    _, (vote,) = session(url, [("vote", {"judgement_id": verdict["judgement_id"], "vote": "A"})])
    assert json.loads(text(vote))["vote"] == "A" and len(services.store.votes()) == 1


@pytest.mark.parametrize(("call", "message"), [
    (("judge", {"prompt": "a red square", "image_a": "not an image", "image_b": "1"}),
     "image A: neither a stored image id nor base64 image data."),
    (("diagnose", {"prompt": "a red square", "image": base64.b64encode(b"not a png").decode()}), "image"),
    (("resume", {"session_id": "nope"}), "No session with id 'nope'"),
    (("refine", {"prompt": "a red square", "max_rounds": 0}), "max_rounds"),
    (("history_search", {"since": "yesterday"}), "From date"),
])
def test_bad_input_is_an_error_result_with_its_cause(served, call, message):
    url, services = served
    _, (result,) = session(url, [call])
    assert result.isError and message in text(result) and "Something went wrong" not in text(result)
