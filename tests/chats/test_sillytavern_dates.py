"""Every send_date form SillyTavern and its importers write, read to the same moment."""

from __future__ import annotations

import datetime as dt

import pytest

from chats.sillytavern import format_send_date, humanized, parse_send_date

UTC = dt.UTC


@pytest.mark.parametrize(
    "value, expected",
    [
        ("October 18, 2024 8:52pm", dt.datetime(2024, 10, 18, 20, 52, tzinfo=UTC)),
        ("October 18, 2024 12:05am", dt.datetime(2024, 10, 18, 0, 5, tzinfo=UTC)),
        ("October 18, 2024 12:05pm", dt.datetime(2024, 10, 18, 12, 5, tzinfo=UTC)),
        ("Oct 18, 2024 8:52 PM", dt.datetime(2024, 10, 18, 20, 52, tzinfo=UTC)),
        ("2024-10-18@20h52m17s", dt.datetime(2024, 10, 18, 20, 52, 17, tzinfo=UTC)),
        ("2024-10-18 @20h 52m 17s 123ms", dt.datetime(2024, 10, 18, 20, 52, 17, 123000, tzinfo=UTC)),
        ("2024-10-18T20:52:17.000Z", dt.datetime(2024, 10, 18, 20, 52, 17, tzinfo=UTC)),
        ("2024-10-18T22:52:17+02:00", dt.datetime(2024, 10, 18, 20, 52, 17, tzinfo=UTC)),
        ("2024-10-18 20:52:17", dt.datetime(2024, 10, 18, 20, 52, 17, tzinfo=UTC)),
        (1729284737, dt.datetime(2024, 10, 18, 20, 52, 17, tzinfo=UTC)),
        (1729284737000, dt.datetime(2024, 10, 18, 20, 52, 17, tzinfo=UTC)),
        (1729284737123.0, dt.datetime(2024, 10, 18, 20, 52, 17, 123000, tzinfo=UTC)),
        ("1729284737000", dt.datetime(2024, 10, 18, 20, 52, 17, tzinfo=UTC)),
        (
            "Fri Oct 18 2024 22:52:17 GMT+0200 (Central European Summer Time)",
            dt.datetime(2024, 10, 18, 20, 52, 17, tzinfo=UTC),
        ),
    ],
)
def test_every_send_date_form_is_read(value, expected):
    assert parse_send_date(value) == expected


@pytest.mark.parametrize(
    "value", [None, True, "", "yesterday", "Smarch 3, 2024 1:00pm", "2024-13-40@99h99m99s", 10**30, [], {}]
)
def test_unreadable_dates_give_none(value):
    assert parse_send_date(value) is None


def test_naive_times_are_read_in_the_configured_time_zone(settings):
    settings.TIME_ZONE = "Europe/Paris"
    assert parse_send_date("October 18, 2024 8:52pm") == dt.datetime(2024, 10, 18, 18, 52, tzinfo=UTC)
    assert format_send_date(dt.datetime(2024, 10, 18, 18, 52, tzinfo=UTC)) == "October 18, 2024 8:52pm"


def test_sillytavern_formats_are_written_as_sillytavern_writes_them():
    moment = dt.datetime(2024, 1, 5, 0, 7, 9, tzinfo=UTC)
    assert format_send_date(moment) == "January 5, 2024 12:07am"
    assert humanized(moment) == "2024-01-05@00h07m09s"
    assert parse_send_date(format_send_date(moment)) == moment.replace(second=0)
