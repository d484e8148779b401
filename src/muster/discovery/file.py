"""``file:///path``: a cluster whose members are listed in a text file.

The file holds one address pattern a line (``10.0.0.[1:3]:2375`` is three nodes);
blank lines are skipped and ``#`` starts a comment, on a line of its own or after
an address. Nodes cannot join through the file: whoever edits it decides who is in.

Swarm re-reads the file every heartbeat. muster also asks the operating system to
report changes (inotify and its kin, through watchfiles), so an edit is seen well
within a second; the heartbeat re-read stays as the fallback for file systems that
send no notifications, such as NFS.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncGenerator, Mapping
from pathlib import Path
from typing import Self

from watchfiles import Change, awatch

from muster.errors import (
    BackendError,
    BackendResponseError,
    BackendUnavailableError,
    InvalidEntryError,
    InvalidURLError,
)

from .backend import Backend, WatchEvent
from .entry import Entries, Entry, parse_patterns

logger = logging.getLogger(__name__)

#: Notifications are grouped over this long, so an editor's burst of writes (write,
#: truncate, rename) leads to one re-read rather than several half-written ones.
DEBOUNCE_MS = 50
#: How often watchfiles' thread checks for settled changes and for a request to
#: stop; closing a watch waits at most about this long for the thread.
STEP_MS = 50
#: With no directory to watch there is nothing to be notified by, so the file is
#: looked for this often (or every heartbeat, if that is shorter) until it appears.
POLL_SECONDS_WITHOUT_DIRECTORY = 1.0


def parse_file_content(text: str, *, path: str) -> Entries:
    """Read the members listed in a discovery file's text.

    Raises:
        BackendResponseError: a line is not an address pattern; the message names
            the file, the line number and the line.
    """
    entries: list[Entry] = []
    # Split on "\n" only, as Swarm does, so line numbers match what editors show.
    for number, line in enumerate(text.split("\n"), start=1):
        pattern = line.partition("#")[0].strip()
        if not pattern:
            continue
        try:
            entries.extend(parse_patterns([pattern]))
        except InvalidEntryError as exc:
            raise BackendResponseError(
                f"discovery file {path}, line {number} ({pattern!r}): {exc}"
            ) from exc
    return Entries(entries)


class FileBackend(Backend):
    """Members listed in a file, one address pattern a line, followed as it changes.

    With ``notify`` off, the file is re-read only every heartbeat, as Swarm does.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        notify: bool = True,
        scheme: str = "file",
        heartbeat_seconds: float = 60.0,
        ttl_seconds: float = 180.0,
        options: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            scheme,
            heartbeat_seconds=heartbeat_seconds,
            ttl_seconds=ttl_seconds,
            options=options,
        )
        self.path = Path(path)
        self.notify = notify
        # Fixed now, so that a later chdir cannot point a running watch elsewhere.
        self._absolute = self.path.absolute()

    @classmethod
    def from_url(
        cls,
        scheme: str,
        rest: str,
        *,
        heartbeat_seconds: float,
        ttl_seconds: float,
        options: Mapping[str, str],
    ) -> Self:
        # Like Swarm, everything after "file://" is the path: file:///etc/nodes is
        # absolute, file://nodes is relative to the working directory.
        if not rest:
            raise InvalidURLError(
                f"the discovery URL {scheme}:// names no file: "
                "write it as file:///path/to/file"
            )
        return cls(
            rest,
            scheme=scheme,
            heartbeat_seconds=heartbeat_seconds,
            ttl_seconds=ttl_seconds,
            options=options,
        )

    def read_entries(self) -> Entries:
        """Read the file once and return the members it lists.

        Raises:
            BackendUnavailableError: the file is missing or cannot be read.
            BackendResponseError: the file is not UTF-8 text or has a bad line.
        """
        try:
            data = self._absolute.read_bytes()
        except FileNotFoundError:
            raise BackendUnavailableError(
                f"discovery file {self.path} does not exist: "
                "create it with one host:port a line"
            ) from None
        except OSError as exc:
            raise BackendUnavailableError(
                f"cannot read discovery file {self.path}: {exc.strerror or exc}"
            ) from exc

        try:
            text = data.decode("utf-8-sig")  # tolerate the BOM some editors write
        except UnicodeDecodeError as exc:
            raise BackendResponseError(
                f"discovery file {self.path} is not UTF-8 text: {exc}"
            ) from exc
        return parse_file_content(text, path=str(self.path))

    async def observe(self) -> AsyncGenerator[WatchEvent, None]:
        """Yield the members now, then again after each change or heartbeat.

        A failure is yielded once; it is yielded again only after a success or when
        the failure changes, so a missing file does not repeat every heartbeat.
        """
        notifier = _DirectoryNotifier(
            self._absolute, retry_seconds=self.heartbeat_seconds
        )
        fields: dict[str, object] = {
            "path": str(self.path),
            "heartbeat_seconds": self.heartbeat_seconds,
        }
        last_failure: tuple[type[BackendError], str] | None = None
        last_entries: Entries | None = None
        logger.info("file.watch.start", extra=fields)
        try:
            while True:
                if self.notify:
                    await notifier.refresh()

                try:
                    entries = self.read_entries()
                except BackendError as exc:
                    failure = (type(exc), str(exc))
                    # Yielded, so logged quietly: the watch reader reports it.
                    logger.debug(
                        "file.read_failed", extra={**fields, "error": str(exc)}
                    )
                    if failure != last_failure:
                        last_failure = failure
                        yield exc
                else:
                    last_failure = None
                    logger.debug("file.read", extra={**fields, "nodes": len(entries)})
                    if entries != last_entries:
                        logger.info(
                            "file.membership", extra={**fields, "nodes": len(entries)}
                        )
                        last_entries = entries
                    yield entries

                if self.notify:
                    await notifier.wait(self.heartbeat_seconds)
                else:
                    await asyncio.sleep(self.heartbeat_seconds)
        finally:
            await notifier.close()
            logger.info("file.watch.stop", extra=fields)


class _DirectoryNotifier:
    """Watches the file's directory with watchfiles and flags changes to the file.

    The directory is watched rather than the file because the file may not exist
    yet, and editors often save by writing a new file and renaming it over the old
    one, which a watch on the old file would never see.
    """

    def __init__(self, path: Path, *, retry_seconds: float) -> None:
        self._path = path
        self._directory = path.parent
        self._retry_seconds = retry_seconds
        self._changed = asyncio.Event()
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._identity: tuple[int, int] | None = None
        self._retry_at = 0.0

    @property
    def active(self) -> bool:
        """Whether notifications are flowing."""
        return self._task is not None and not self._task.done()

    async def refresh(self) -> None:
        """Watch the directory if it exists, again if it was replaced."""
        identity = _directory_identity(self._directory)
        if self.active and identity == self._identity:
            return
        if self._task is not None and self._task.done():
            # The watcher gave up: retry later, not on every poll.
            self._retry_at = asyncio.get_running_loop().time() + self._retry_seconds
        await self.close()
        if identity is None or asyncio.get_running_loop().time() < self._retry_at:
            return

        self._identity = identity
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(
            self._follow(self._stop), name=f"muster-file-notify:{self._path}"
        )
        # Let the task register its watch before the caller reads the file, so an
        # edit made just after that read still wakes us.
        await asyncio.sleep(0)

    async def wait(self, heartbeat_seconds: float) -> None:
        """Wait for a change to the file, or the heartbeat, whichever is first."""
        timeout = heartbeat_seconds
        if not self.active:
            timeout = min(heartbeat_seconds, POLL_SECONDS_WITHOUT_DIRECTORY)
        try:
            async with asyncio.timeout(timeout):
                await self._changed.wait()
        except TimeoutError:
            pass
        self._changed.clear()

    async def close(self) -> None:
        """Stop watching, and wait until watchfiles' thread has let go."""
        task, stop = self._task, self._stop
        self._task = self._stop = None
        self._identity = None
        if task is None or stop is None:
            return

        # awatch waits in a worker thread that a cancellation cannot interrupt; the
        # stop event makes that thread return within one step instead.
        stop.set()
        await asyncio.wait({task})

    async def _follow(self, stop: asyncio.Event) -> None:
        fields = {"path": str(self._path), "directory": str(self._directory)}
        logger.debug("file.notify.start", extra=fields)
        try:
            async for _changes in awatch(
                self._directory,
                watch_filter=self._concerns_file,
                debounce=DEBOUNCE_MS,
                step=STEP_MS,
                stop_event=stop,
                recursive=False,
            ):
                logger.debug("file.changed", extra=fields)
                self._changed.set()
        # watchfiles reports a vanished directory or an exhausted inotify limit as
        # plain OSError or RuntimeError; the heartbeat re-read carries on meanwhile.
        except Exception as exc:
            logger.warning(
                "file.notify_failed",
                extra={
                    **fields,
                    "error": str(exc),
                    "retry_seconds": self._retry_seconds,
                },
            )
        else:
            logger.debug("file.notify.stop", extra=fields)
        finally:
            # Wake the reader so that it notices and falls back to polling.
            self._changed.set()

    def _concerns_file(self, change: Change, path: str) -> bool:
        # Events on the directory itself (deleted, moved) matter too: the watch on
        # it is then useless and refresh() must find the directory again.
        changed = Path(path)
        return changed.name == self._path.name or changed == self._directory


def _directory_identity(directory: Path) -> tuple[int, int] | None:
    """Return what tells this directory from one made later at the same path."""
    try:
        status = directory.stat()
    except OSError:
        return None
    return (status.st_dev, status.st_ino)
