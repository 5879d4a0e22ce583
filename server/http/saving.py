"""Saving the API's changes of streams to the config file: whether a change asks for it, whether it can
be made now, and making it.

A change is saved with ``?persist=1``, or when the config file says ``save_config = true`` unless the
request says ``?persist=0``. A ``?persist=1`` whose save would write a file segcast may not write now is
refused before anything changes (409); a stream's ``persistable`` says beforehand whether one could be.
Whether a save would be refused (the file may not be written, or was edited since segcast read it) is
found out off the event loop, within a time limit (`SaveRefusal`): the config file may be on a network
share that stopped answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web

from server.config import StreamConfig
from server.config_values import ConfigError
from server.http.errors import error
from server.http.keys import config_lock_key, manager_key, settings_key, stream_change_executor_key
from server.persist import ConfigEditedError, ConfigFileState, config_file_unwritable, write_config

log = logging.getLogger(__name__)

#: How long an answer to whether the config file may be written is used before it is asked again: a
#: file made read-only while segcast runs stops being offered a save within this time.
WRITABLE_ANSWER_KEPT_S = 3.0
#: How long finding that out may take before the file counts as one segcast cannot write: a local disk
#: answers in far less, a hard-mounted share that stopped answering never.
WRITABLE_LOOK_TIMEOUT_S = 2.0
#: How often a save waiting for its turn asks whether the config file can still be looked at.
SAVE_TURN_POLL_S = 0.25

#: What ``?persist=`` may say: save this change, or not even under ``save_config = true``.
_PERSIST_VALUES = {"1": True, "true": True, "0": False, "false": False}
#: Why a change cannot be saved where segcast was started without a config file.
_NO_CONFIG_FILE = "there is no config file"


class SaveRefusal:
    """Why a save to the config file would be refused now, or None, found out off the event loop (`_save_refused`):
    segcast may not write the file (`config_file_unwritable`), or, given the API's `ConfigFileState`, it no
    longer holds what segcast read or last wrote (`ConfigFileState.edited`): a file edited since refuses
    every save, and must not be offered one.

    Finding out resolves the file's path and asks its file system (stat, statvfs, access): on a share
    that stopped answering that waits for ever, and asked on the loop for each stream listed it froze
    the whole server. So it is asked in a thread of its own, one look at a time, and an answer is used
    for `WRITABLE_ANSWER_KEPT_S`. A look that has not answered within `WRITABLE_LOOK_TIMEOUT_S` makes
    the file one segcast cannot write until it does; it keeps its thread, and no other look starts
    behind it meanwhile. Use it on the event loop only.
    """

    def __init__(self, path: Path | None, state: ConfigFileState | None = None) -> None:
        self._path = path
        self._state = state
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="config-file-look")
        self._reason: str | None = self._unanswered()  # until the first look answers
        self._answered_at = -math.inf
        self._look: asyncio.Future[str | None] | None = None
        self._looking_since = 0.0
        self._closed = False

    def known(self) -> str | None:
        """Why the file may not be written, or None, without waiting: the last answer, while a look for a
        newer one is started where it is older than `WRITABLE_ANSWER_KEPT_S`."""
        if self._path is None:
            return _NO_CONFIG_FILE
        return self.unanswered() or self._reason

    def unanswered(self) -> str | None:
        """Why the file cannot even be looked at now (a look under way for `WRITABLE_LOOK_TIMEOUT_S`), or None,
        without waiting; starts a look as `known` does.

        A save to such a file would wait for its file system as the look does, for ever on a share
        that stopped answering: the saves queued behind one are given up while this says so.
        """
        if self._path is None:
            return None
        now = time.monotonic()
        if now - self._answered_at >= WRITABLE_ANSWER_KEPT_S and not self._closed:
            self._start_look(now)
        if self._look is not None and now - self._looking_since >= WRITABLE_LOOK_TIMEOUT_S:
            return self._unanswered()
        return None

    async def now(self) -> str | None:
        """Why the file may not be written, or None, as a look started now finds it: for a change about to be
        saved, which a file made read-only a moment ago must refuse. Waits `WRITABLE_LOOK_TIMEOUT_S` at most,
        for a look under way and then its own."""
        if self._path is None or self._closed:
            return self.known()
        deadline = time.monotonic() + WRITABLE_LOOK_TIMEOUT_S
        while True:
            earlier = self._look is not None  # began before this call: its answer may be older than asked
            look = self._start_look(time.monotonic())
            try:
                await asyncio.wait_for(asyncio.shield(look), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return self._unanswered()
            if not earlier:
                return self._reason

    def shutdown(self) -> None:
        """Start no more looks (the last answer stays); one waiting for a share that does not answer is left
        to end when it does."""
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _start_look(self, now: float) -> asyncio.Future[str | None]:
        """The look under way, or a new one."""
        if self._look is None:
            assert self._path is not None
            self._look = asyncio.wrap_future(self._executor.submit(_save_refused, self._path, self._state))
            self._looking_since = now
            self._look.add_done_callback(self._answered)
        return self._look

    def _answered(self, look: asyncio.Future[str | None]) -> None:
        self._look = None
        if look.cancelled():
            return
        if (exc := look.exception()) is not None:  # a fault of ours: the file counts as unwritable, not the API
            log.error("could not tell whether %s can be saved: %s: %s", self._path, type(exc).__name__, exc)
            self._reason = f"{self._name} cannot be looked at ({type(exc).__name__}: {exc})"
        else:
            self._reason = look.result()
        self._answered_at = time.monotonic()

    def _unanswered(self) -> str:
        return (
            f"{self._name} cannot be looked at now: its file system has not answered within "
            f"{WRITABLE_LOOK_TIMEOUT_S:g} s (a network share that stopped answering?)"
        )

    @property
    def _name(self) -> str:
        return "the config file" if self._path is None else self._path.name


def _save_refused(path: Path, state: ConfigFileState | None) -> str | None:
    """Why a save to the config file at ``path`` would be refused now, or None: it may not be written, or it
    was changed since segcast read or last wrote it (where ``state`` is given)."""
    return config_file_unwritable(path) or (None if state is None else state.edited(path))


#: What the API knows of the config file it saves to: the API's own state, changed by its saves (under
#: `config_lock_key`) and by each stream the API adds (`ConfigFileState.added`, `note_added`).
config_file_key = web.AppKey("config_file", ConfigFileState)
#: Why a save to the config file would be refused now (not writable, or edited since), as last found (`SaveRefusal`).
save_refusal_key = web.AppKey("save_refusal", SaveRefusal)


def setup_saving(app: web.Application) -> None:
    app[config_file_key] = ConfigFileState.of(app[settings_key])
    app.cleanup_ctx.append(_save_refusal)


async def _save_refusal(app: web.Application) -> AsyncIterator[None]:
    refusal = SaveRefusal(app[settings_key].config_path, app[config_file_key])
    app[save_refusal_key] = refusal
    await refusal.now()  # the first streams listed are told whether they can be saved
    yield
    refusal.shutdown()


def persist_asked(request: web.Request) -> bool | None:
    """What ``?persist`` asks: True to save the change, False not to, None where it is not given (then
    ``save_config`` decides); 400 for a bad value (an empty one too: a client that meant to say something),
    for one given twice, which could only be read one way by chance, or for a save with no file to save to."""
    settings = request.app[settings_key]
    flags = request.query.getall("persist", [])
    if len(flags) > 1:
        raise error(web.HTTPBadRequest, "persist: given more than once; give each parameter once")
    if flags and flags[0] not in _PERSIST_VALUES:
        raise error(web.HTTPBadRequest, f"persist: expected 1, 0, true or false, got {flags[0]!r}")
    asked = _PERSIST_VALUES[flags[0]] if flags else None
    if (settings.save_config if asked is None else asked) and settings.config_path is None:
        raise error(web.HTTPBadRequest, "persist: there is no config file to save to; start segcast with --config FILE")
    return asked


def saves(request: web.Request, stream_id: str, asked: bool | None) -> bool:
    """Whether a change of ``stream_id`` is saved: as ``asked``, or where that is None, as ``save_config`` says.

    Some streams are never the file's (`_unsaveable`). Asked to save one, the request is refused
    before anything changes (409); under ``save_config`` its change is made and not saved, as its
    ``persistable`` says. Whether the file can be written is asked once the change is known
    (`check_writable`).
    """
    if (reason := _unsaveable(request.app, stream_id)) is not None:
        if asked:
            raise _unsaveable_conflict(request, stream_id, reason)
        return False
    return request.app[settings_key].save_config if asked is None else asked


async def check_writable(request: web.Request, asked: bool | None, stream_id: str, config: StreamConfig | None) -> None:
    """Refuse ``?persist=1`` before anything changes (409) where saving ``stream_id`` as ``config`` (None:
    removed) would write a config file segcast may not write now (`SaveRefusal.now`: another
    user's, read-only, on a share that does not answer, or one edited since segcast read it, which the
    save would refuse once the change is in effect): it asked for a save, not for a change without one.
    A save that would write nothing (a stream the file never held, removed) is not refused: `save_config`
    makes none. Under ``save_config`` the change is made and its answer says it was not
    saved, as ``persistable`` foretold.
    """
    if not asked or not request.app[config_file_key].changes(stream_id, config):
        return
    if (unwritable := await request.app[save_refusal_key].now()) is not None:
        raise error(
            web.HTTPConflict,
            f"nothing was changed: ?persist=1 asked to save the change, and {unwritable}. Make the change "
            "with ?persist=0 to leave the file as it is (the change then lasts until segcast restarts)",
        )


def persistable(request: web.Request, stream_id: str) -> bool:
    """Whether ``?persist=1`` can save the stream: there is a config file that segcast may write now, not
    edited since segcast read it (as last found, `SaveRefusal.known`: never waiting, it is asked
    for every stream listed), and the stream can be written to it."""
    return _unsaveable(request.app, stream_id) is None and request.app[save_refusal_key].known() is None


def note_added(request: web.Request, stream_id: str) -> None:
    """Remember that the API added a stream under ``stream_id``: a new stream, whatever the id had before,
    so what the file's table of that id set says nothing of it (`ConfigFileState.added`)."""
    request.app[config_file_key].added.add(stream_id)


def _unsaveable(app: web.Application, stream_id: str) -> str | None:
    """Why the stream is never written to the config file, or None.

    An id ``--source`` started is not the file's, whatever runs under it now: the command line starts
    it again as it says, and written to the file it would clash with the flag at the next start. A
    stream a browser's camera publishes exists while its publisher sends; it has no source to reopen.
    """
    if stream_id in app[config_file_key].flag_streams:
        return "comes from the command line (--source)"
    if app[manager_key].handed_in(stream_id):
        return "is published by a browser's camera (WebRTC) and lasts while its publisher sends"
    return None


def _unsaveable_conflict(request: web.Request, stream_id: str, reason: str) -> web.HTTPException:
    """409 for ``?persist=1`` on a stream that is never written to the config file: nothing is changed."""
    path = request.app[settings_key].config_path
    name = path.name if path is not None else "the config file"
    advice = (
        f", or move the stream from --source into {name} as a [[streams]] table"
        if stream_id in request.app[config_file_key].flag_streams
        else ""
    )
    return error(
        web.HTTPConflict,
        f"nothing was changed: stream {stream_id!r} {reason}, so it cannot be saved to {name}. Make the change "
        f"without saving it (it then lasts until segcast restarts){advice}",
    )


class NotSavedError(Exception):
    """A change was made but not saved: ``kind`` is the status to answer with (409: the file was changed by
    someone else since segcast read it; 500: the save failed), the message says so and why. The caller's
    answer names the stream as it now is: a client that took the error for a refusal would edit over
    stale settings."""

    def __init__(self, kind: type[web.HTTPException], message: str) -> None:
        super().__init__(message)
        self.kind = kind


async def save_config(request: web.Request, stream_id: str, config: StreamConfig | None) -> None:
    """Write stream ``stream_id`` as it now is (``config``; None: removed) to the config file, in a stream
    change thread (`stream_change_executor_key`); if that fails, the file is left as it was and
    `NotSavedError` says why.

    Only that stream: the others are written as the file has them, so a change made to one without
    saving (a camera removed for now, a zone tried out) stays unsaved when another is saved.
    A file changed since segcast read or saved it is not overwritten (409): the edits (a rotated
    token, a stream added by hand, another segcast's save) are not this segcast's to undo.
    Saves are written one at a time, in the order they were asked for; one that would wait behind a
    save its file system does not answer is not made (`_turn_to_save`).
    """
    app = request.app
    path = app[settings_key].config_path
    async with _turn_to_save(app):
        state = app[config_file_key]
        if not state.changes(stream_id, config):
            return  # the file says so already (a stream never saved, removed): its comments stay
        configs = state.with_stream(stream_id, config)
        save = functools.partial(write_config, app[settings_key], configs, state)
        try:
            await asyncio.get_running_loop().run_in_executor(app[stream_change_executor_key], save)
        except ConfigEditedError as exc:
            log.warning("did not save the streams to %s: %s", path, exc)
            raise NotSavedError(web.HTTPConflict, f"the change is in effect, but not saved: {exc}") from None
        except (ConfigError, OSError) as exc:
            reason = str(exc)
            if isinstance(exc, OSError):  # it names no file (a full disk), or segcast's partial one
                reason = f"{exc.strerror or exc}: {path}"
            log.error("could not save the streams to %s: %s", path, reason)
            message = f"the change is in effect, but not saved ({reason})"
            raise NotSavedError(web.HTTPInternalServerError, message) from None
    count = len(configs)
    log.info("saved %d %s to %s", count, "stream" if count == 1 else "streams", path)


@contextlib.asynccontextmanager
async def _turn_to_save(app: web.Application) -> AsyncIterator[None]:
    """Hold `config_lock_key`, which orders the saves, unless the config file cannot be looked at
    (`SaveRefusal.unanswered`) while this waits for it or once it has it: then `NotSavedError`.

    A save to a share that stopped answering never returns, and holds the lock while it waits: every
    save after it, of any stream, would wait for ever too. The first stays; those after it answer that
    their change is made and not saved, as a file that cannot be written makes them.

    Queued for the lock at once, in the order the saves were asked for: a stream's next change, which
    may be saved after this one, first takes a stream change thread.
    """
    lock, refusal = app[config_lock_key], app[save_refusal_key]
    turn = asyncio.ensure_future(lock.acquire())
    try:
        while not (await asyncio.wait({turn}, timeout=SAVE_TURN_POLL_S))[0]:
            _raise_if_unanswered(refusal)
    except BaseException:
        if not turn.cancel() and not turn.cancelled():  # it had the lock already
            lock.release()
        raise
    try:
        _raise_if_unanswered(refusal)
        yield
    finally:
        lock.release()


def _raise_if_unanswered(refusal: SaveRefusal) -> None:
    if (unanswered := refusal.unanswered()) is not None:
        log.error("did not save the streams: %s", unanswered)
        raise NotSavedError(web.HTTPInternalServerError, f"the change is in effect, but not saved: {unanswered}")
