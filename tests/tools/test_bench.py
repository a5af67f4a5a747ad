"""`manage.py bench` end to end on tiny sizes: the server starts, every operation is measured and
written out. No timing is asserted (speed is what the command reports, not what a test checks)."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command


@pytest.mark.slow
def test_bench_measures_every_operation_and_writes_json_markdown_and_a_plot(tmp_path):
    out = StringIO()
    call_command(
        "bench",
        "--chat-sizes",
        "10,100",
        "--characters",
        "10",
        "--requests",
        "3",
        "--warmup",
        "1",
        "--output",
        str(tmp_path / "out"),
        "--var-dir",
        str(tmp_path / "var"),
        "--database-url",
        f"sqlite:///{tmp_path / 'bench.sqlite3'}",
        stdout=out,
    )
    report = json.loads((tmp_path / "out" / "bench.json").read_text())
    measured = {(r["op"], r["size"]) for r in report["operations"]}
    for op in (
        "floor",
        "open_chat",
        "chat_json",
        "older_newest",
        "older_middle",
        "older_start",
        "send",
        "edit",
        "floor_write",
        "prompt",
        "prompt_memory",
    ):
        assert {(op, 10), (op, 100)} <= measured, op
    assert ("gallery", 10) in measured
    for r in report["operations"]:
        assert r["median_ms"] > 0 and r["p95_ms"] >= r["median_ms"]
        if r["op"] not in ("floor", "floor_write", "prompt", "prompt_memory"):
            assert r["queries"] is not None and r["bytes"] > 0 and r["rss_mib"] > 0
    assert report["targets"][0]["target"].startswith("open a chat")
    assert any(t["target"].startswith("prompt with memory") and t["value"] for t in report["targets"])
    # the sizes in a target's detail are the ones measured, not the defaults
    gallery = next(t for t in report["targets"] if t["target"].startswith("gallery first page"))
    assert "10,000" not in gallery["target"] + gallery["detail"]
    assert report["side_by_side"] == []
    # The server's memory: after each operation, and its peak while serving, which the column misses.
    memory = next(n for n in report["notes"] if n.startswith("Server memory:"))
    peak_after = max(r["rss_mib"] for r in report["operations"] if r["rss_mib"])
    assert f"at most {peak_after} MiB RSS after an operation" in memory
    assert "(VmHWM)" in memory and "MiB private (RssAnon)" in memory
    assert "Server memory:" in out.getvalue()
    assert set(report["profile"]) == {"chat-html", "chat-json"}
    markdown = (tmp_path / "out" / "bench.md").read_text()
    for label in (
        "open a chat (HTML page)",
        "send a message",
        "gallery first page",
        "build a prompt",
        "build a prompt with memory",
        "floor",
    ):
        assert label in markdown and label in out.getvalue()
    assert (tmp_path / "out" / "bench.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "out" / "profile-chat-html.html").exists()
    assert "var/rpchat.sqlite3" not in json.dumps(report)


@pytest.mark.slow
def test_a_later_run_measures_only_the_sizes_it_is_given(tmp_path):
    """The bench database keeps every size an earlier run made; --chat-sizes still says what is timed."""
    common = ["--requests", "2", "--warmup", "0", "--no-profile", "--var-dir", str(tmp_path / "var")]
    common += ["--database-url", f"sqlite:///{tmp_path / 'bench.sqlite3'}", "--characters", "10"]
    call_command(
        "bench", "--chat-sizes", "10,30", "--output", str(tmp_path / "first"), *common, stdout=StringIO()
    )
    call_command(
        "bench", "--chat-sizes", "30", "--output", str(tmp_path / "second"), *common, stdout=StringIO()
    )
    report = json.loads((tmp_path / "second" / "bench.json").read_text())
    assert report["meta"]["chat_sizes"] == [30]
    assert {r["size"] for r in report["operations"] if r["unit"] == "messages" and r["op"] != "search"} == {
        30
    }
