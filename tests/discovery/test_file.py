"""``file://``: members read from a real file, followed with real notifications."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest

from muster.discovery import (
    BackendResponseError,
    BackendUnavailableError,
    Entries,
    Entry,
    InvalidURLError,
    UnsupportedOperationError,
    Watch,
    WatchEvent,
    create_backend,
)
from muster.discovery import file as file_module
from muster.discovery.file import FileBackend, parse_file_content
from muster.logs import event_fields

pytestmark = pytest.mark.filterwarnings("error")

#: Long enough that only a change notification can explain a prompt event.
LONG_HEARTBEAT_SECONDS = 60.0
#: How long an event may take to arrive after the write that causes it.
WITHIN_SECONDS = 1.0
#: How long to wait to be fairly sure that nothing more is coming.
QUIET_SECONDS = 0.3


def members(*addresses: str) -> Entries:
    return Entries.parse(addresses)


async def next_event(
    watch: Watch, within_seconds: float = WITHIN_SECONDS
) -> WatchEvent:
    async with asyncio.timeout(within_seconds):
        return await anext(watch)


async def assert_quiet(watch: Watch) -> None:
    """Nothing arrives on the watch for a while."""
    pending = asyncio.ensure_future(anext(watch))
    done, _ = await asyncio.wait({pending}, timeout=QUIET_SECONDS)
    pending.cancel()
    await asyncio.wait({pending})
    assert not done, f"unexpected event: {pending.result()!r}"


def test_comments_blank_lines_ranges_and_ipv6_are_read() -> None:
    text = (
        "# the build farm\n"
        "\n"
        "10.0.0.1:2375\n"
        "   10.0.0.[2:3]:2375   # two more\n"
        "[2001:db8::2]:2375#inline without a space\n"
        "\t\n"
        "#10.0.0.99:2375\n"
        "builder.example.com:2376\r\n"
    )

    entries = parse_file_content(text, path="nodes")

    assert entries == members(
        "10.0.0.1:2375",
        "10.0.0.2:2375",
        "10.0.0.3:2375",
        "[2001:db8::2]:2375",
        "builder.example.com:2376",
    )


def test_an_empty_file_lists_no_members() -> None:
    assert parse_file_content("", path="nodes") == Entries()


def test_a_bad_line_is_reported_with_file_line_number_and_value() -> None:
    text = "10.0.0.1:2375\n# fine\nno-port-here\n"

    with pytest.raises(BackendResponseError) as caught:
        parse_file_content(text, path="/etc/nodes")

    message = str(caught.value)
    assert "/etc/nodes" in message
    assert "line 3" in message
    assert "'no-port-here'" in message


def test_an_empty_file_url_is_rejected() -> None:
    with pytest.raises(InvalidURLError, match="names no file"):
        create_backend("file://")


def test_a_relative_file_url_reads_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "nodes").write_text("a:1\n")
    monkeypatch.chdir(tmp_path)

    backend = create_backend("file://nodes")

    assert isinstance(backend, FileBackend)
    assert backend.read_entries() == members("a:1")


def test_read_entries_tolerates_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "nodes"
    path.write_bytes(b"\xef\xbb\xbfa:1\n")

    assert FileBackend(path).read_entries() == members("a:1")


def test_read_entries_rejects_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "nodes"
    path.write_bytes(b"a:1\n\xff\xfe\n")

    with pytest.raises(BackendResponseError, match="not UTF-8"):
        FileBackend(path).read_entries()


def test_read_entries_reports_a_missing_file_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "absent"

    with pytest.raises(BackendUnavailableError, match="does not exist") as caught:
        FileBackend(path).read_entries()

    assert str(path) in str(caught.value)


async def test_nodes_cannot_join_or_leave_a_file(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path / "nodes")

    assert not backend.supports_register
    with pytest.raises(UnsupportedOperationError, match="file://"):
        await backend.register(Entry("a", 1))
    with pytest.raises(UnsupportedOperationError, match="file://"):
        await backend.deregister(Entry("a", 1))


async def test_the_watch_starts_with_the_members_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nodes"
    path.write_text("10.0.0.[1:2]:2375\n")

    async with FileBackend(path).watch() as watch:
        assert await next_event(watch) == members("10.0.0.1:2375", "10.0.0.2:2375")


async def test_an_edit_is_seen_within_one_second(tmp_path: Path) -> None:
    path = tmp_path / "nodes"
    path.write_text("a:1\n")
    backend = FileBackend(path, heartbeat_seconds=LONG_HEARTBEAT_SECONDS)

    async with backend.watch() as watch:
        assert await next_event(watch) == members("a:1")
        started = time.monotonic()
        path.write_text("a:1\nb:2\n")
        event = await next_event(watch)
        elapsed = time.monotonic() - started

    assert event == members("a:1", "b:2")
    assert elapsed < WITHIN_SECONDS


async def test_a_file_replaced_by_rename_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "nodes"
    path.write_text("a:1\n")
    backend = FileBackend(path, heartbeat_seconds=LONG_HEARTBEAT_SECONDS)

    async with backend.watch() as watch:
        assert await next_event(watch) == members("a:1")
        # What editors do on save: write a new file, then rename it over the old.
        replacement = tmp_path / ".nodes.swp"
        replacement.write_text("c:3\n")
        os.replace(replacement, path)

        assert await next_event(watch) == members("c:3")


async def test_a_missing_file_is_reported_then_read_once_created(
    tmp_path: Path,
) -> None:
    path = tmp_path / "nodes"
    backend = FileBackend(path, heartbeat_seconds=LONG_HEARTBEAT_SECONDS)

    async with backend.watch() as watch:
        failure = await next_event(watch)
        assert isinstance(failure, BackendUnavailableError)
        assert str(path) in str(failure)

        path.write_text("a:1\n")

        assert await next_event(watch) == members("a:1")


async def test_a_missing_file_is_reported_once_not_every_heartbeat(
    tmp_path: Path,
) -> None:
    backend = FileBackend(tmp_path / "nodes", heartbeat_seconds=0.02)

    async with backend.watch() as watch:
        assert isinstance(await next_event(watch), BackendUnavailableError)
        await assert_quiet(watch)


async def test_a_different_failure_is_reported_again(tmp_path: Path) -> None:
    path = tmp_path / "nodes"
    backend = FileBackend(path, heartbeat_seconds=LONG_HEARTBEAT_SECONDS)

    async with backend.watch() as watch:
        assert isinstance(await next_event(watch), BackendUnavailableError)
        path.mkdir()  # now it exists, but cannot be read as a file

        failure = await next_event(watch)

    assert isinstance(failure, BackendUnavailableError)
    assert "cannot read" in str(failure)


async def test_a_bad_line_comes_as_an_event_and_the_watch_goes_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "nodes"
    path.write_text("a:1\n")
    backend = FileBackend(path, heartbeat_seconds=LONG_HEARTBEAT_SECONDS)

    async with backend.watch() as watch:
        assert await next_event(watch) == members("a:1")
        path.write_text("a:1\n\nnot an address\n")
        failure = await next_event(watch)
        path.write_text("a:1\nb:2\n")
        recovered = await next_event(watch)

    assert isinstance(failure, BackendResponseError)
    assert "line 3" in str(failure)
    assert "'not an address'" in str(failure)
    assert recovered == members("a:1", "b:2")


async def test_an_unchanged_file_sends_no_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "nodes"
    path.write_text("a:1\n")
    # A short heartbeat re-reads the file many times during the quiet period.
    backend = FileBackend(path, heartbeat_seconds=0.02)

    async with backend.watch() as watch:
        assert await next_event(watch) == members("a:1")
        path.write_text("# same members, new comment\na:1\n")
        await assert_quiet(watch)


async def test_the_heartbeat_alone_finds_an_edit_without_notifications(
    tmp_path: Path,
) -> None:
    path = tmp_path / "nodes"
    path.write_text("a:1\n")
    backend = FileBackend(path, notify=False, heartbeat_seconds=0.05)

    async with backend.watch() as watch:
        assert await next_event(watch) == members("a:1")
        path.write_text("b:2\n")
        assert await next_event(watch) == members("b:2")


async def test_a_missing_directory_is_polled_until_it_appears(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(file_module, "POLL_SECONDS_WITHOUT_DIRECTORY", 0.05)
    folder = tmp_path / "later"
    backend = FileBackend(folder / "nodes", heartbeat_seconds=LONG_HEARTBEAT_SECONDS)

    async with backend.watch() as watch:
        assert isinstance(await next_event(watch), BackendUnavailableError)
        folder.mkdir()
        (folder / "nodes").write_text("a:1\n")

        assert await next_event(watch) == members("a:1")


async def test_notifications_resume_once_a_missing_directory_appears(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(file_module, "POLL_SECONDS_WITHOUT_DIRECTORY", 0.05)
    folder = tmp_path / "later"
    path = folder / "nodes"
    backend = FileBackend(path, heartbeat_seconds=LONG_HEARTBEAT_SECONDS)

    async with backend.watch() as watch:
        assert isinstance(await next_event(watch), BackendUnavailableError)
        folder.mkdir()
        path.write_text("a:1\n")
        assert await next_event(watch) == members("a:1")
        # From here on only a notification can deliver the edit: the directory
        # exists, so the poll interval no longer applies.
        monkeypatch.setattr(file_module, "POLL_SECONDS_WITHOUT_DIRECTORY", 60.0)
        path.write_text("b:2\n")

        assert await next_event(watch) == members("b:2")


async def test_stopping_the_watch_leaves_no_task_running(tmp_path: Path) -> None:
    path = tmp_path / "nodes"
    path.write_text("a:1\n")
    watch = FileBackend(path).watch()
    assert await next_event(watch) == members("a:1")
    reader = asyncio.create_task(anext(watch))
    await asyncio.sleep(0.05)

    await watch.stop()

    with pytest.raises(StopAsyncIteration):
        await reader
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_the_watch_logs_its_start_membership_and_stop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="muster.discovery.file")
    path = tmp_path / "nodes"
    path.write_text("a:1\nb:2\n")

    async with FileBackend(path).watch() as watch:
        await next_event(watch)

    events = [
        (record.getMessage(), event_fields(record))
        for record in caplog.records
        if record.name == "muster.discovery.file"
    ]
    assert [name for name, _ in events] == [
        "file.watch.start",
        "file.membership",
        "file.watch.stop",
    ]
    assert all(fields["path"] == str(path) for _, fields in events)
    assert events[1][1]["nodes"] == 2


async def test_a_dropped_watch_stops_its_notifier(tmp_path: Path) -> None:
    path = tmp_path / "nodes"
    path.write_text("a:1\n")
    watch = FileBackend(path).watch()
    async for _event in watch:
        break

    del watch
    gc.collect()
    # The loop closes a collected generator in a task of its own, which then
    # waits up to one watchfiles step for the notifier to let go.
    for _ in range(50):
        if asyncio.all_tasks() == {asyncio.current_task()}:
            break
        await asyncio.sleep(0.02)

    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_a_failing_notifier_falls_back_to_the_heartbeat(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken_awatch(
        *args: object, **kwargs: object
    ) -> AsyncGenerator[object, None]:
        raise OSError("inotify watch limit reached")
        yield  # pragma: no cover - makes this an async generator

    monkeypatch.setattr(file_module, "awatch", broken_awatch)
    path = tmp_path / "nodes"
    path.write_text("a:1\n")
    backend = FileBackend(path, heartbeat_seconds=0.05)

    async with backend.watch() as watch:
        assert await next_event(watch) == members("a:1")
        path.write_text("b:2\n")
        assert await next_event(watch) == members("b:2")

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings
    assert warnings[0].getMessage() == "file.notify_failed"
    assert event_fields(warnings[0])["error"] == "inotify watch limit reached"
