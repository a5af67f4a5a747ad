"""The side-by-side part of `manage.py bench` (tools/bench_st.py): requests in turns, and a table
that says which SillyTavern figures were measured in the run and which are its reference."""

from __future__ import annotations

import asyncio
import json

import pytest
from django.core.management import CommandError, call_command

from tools import bench_st


def test_steps_run_in_turns_and_warm_ups_are_not_timed():
    calls = []

    def step(name, ms):
        async def run():
            calls.append(name)
            return ms, 10

        return run

    timings = asyncio.run(
        bench_st.interleaved(
            {"st": step("st", 4.0), "html": step("html", 2.0)}, requests=3, warmup=2, primed=False
        )
    )
    assert calls == ["st", "html"] * 5
    assert timings["st"].requests == timings["html"].requests == 3
    assert (timings["st"].median_ms, timings["html"].median_ms) == (4.0, 2.0)


def test_each_timed_request_comes_right_after_the_same_request_untimed():
    """A server left idle through the other's long request would be timed waking up."""
    calls = []

    def step(name):
        async def run():
            calls.append(name)
            # The untimed twin is slow (a server waking up): it must not be what is timed.
            return (50.0 if len(calls) % 2 else 2.0), 10

        return run

    timings = asyncio.run(
        bench_st.interleaved({"st": step("st"), "html": step("html")}, requests=2, warmup=1)
    )
    assert calls == ["st", "html"] + ["st", "st", "html", "html"] * 2
    assert timings["st"].requests == timings["html"].requests == 2
    assert timings["st"].median_ms == timings["html"].median_ms == 2.0

    # A write is primed with what it is given instead (a send with an edit: no extra messages).
    calls.clear()
    asyncio.run(
        bench_st.interleaved(
            {"edit": step("edit"), "send": step("send")}, requests=1, warmup=0, primers={"send": step("edit")}
        )
    )
    assert calls == ["edit", "edit", "edit", "send"]


def _row(op, size, st, source, **rpchat):
    return bench_st.SideRow(
        op,
        size,
        "st-data-1 (1 card)",
        bench_st.Timing(st, st, 0, 0) if st else None,
        source,
        "",
        {k: bench_st.Timing(v, v, 0, 3) for k, v in rpchat.items()},
    )


def test_the_table_marks_reference_figures_and_compares_the_slower_rpchat_column():
    rows = bench_st.rows_as_dicts(
        [
            _row("open_chat", 100, 3.2, "reference", html=9.6, json=6.4),
            _row("list_characters", 1, 2.0, "live", html=1.0, json=0.5),
            _row("write", 100000, 3000.0, "live", edit=30.0, send=15.0),
            # In Chromium: the empty page is shown beside the page, and left out of the verdict.
            _row("open_chat_browser", 100, 290.0, "live", html=110.0, empty_page=60.0),
            # The gallery as a page and redrawn in place: the faster one ahead, and named.
            _row("list_characters_browser", 1, 40.0, "live", html=80.0, in_place=30.0, empty_page=70.0),
        ]
    )
    table = bench_st.table(rows)
    assert table[1][1:] == ["open a chat, 100 messages", "3.2 (ref.)", "9.6", "6.4", "3.0x SLOWER"]
    assert table[2][1:] == ["list characters, 1 card", "2.0", "1.0", "0.5", "2.0x faster"]
    assert table[3][3:] == ["30.0 (edit)", "15.0 (send)", "100.0x faster"]
    assert table[4][1:] == [
        "open a chat in Chromium, 100 messages",
        "290.0",
        "110.0 (an empty page: 60.0)",
        "–",
        "2.6x faster",
    ]
    assert table[5][1:] == [
        "list characters in Chromium, 1 card",
        "40.0",
        "80.0 (an empty page: 70.0)",
        "30.0 (in place)",
        "2.0x SLOWER (the faster rpchat column is ahead)",
    ]


def test_a_folder_without_gen_st_datas_manifest_is_refused_with_a_clear_message(tmp_path):
    with pytest.raises(CommandError, match=r"gen_st_data\.py"):
        bench_st.manifest(tmp_path / "st-data")
    (tmp_path / "st-data.manifest.json").write_text(json.dumps({"characters_count": 1}))
    assert bench_st.manifest(tmp_path / "st-data")["characters_count"] == 1


def test_browser_rows_without_a_sillytavern_data_set_are_refused_before_the_run(tmp_path):
    with pytest.raises(CommandError, match="--browser times the --sillytavern-data sets"):
        call_command(
            "bench", "--browser", "--output", str(tmp_path / "out"), "--var-dir", str(tmp_path / "var")
        )
    assert not (tmp_path / "var").exists()  # nothing was built or served
