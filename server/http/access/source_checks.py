"""The API's check of a new source against the `SourcePolicy`, answered in time whatever the file
system or the name server do.

What the URI's text decides (`SourcePolicy.check_text`: a scene, a webcam, a camera given by its
address, and every refusal of a scheme, a device or an option) is decided at once, on the event loop.
The rest waits for the file system (a file's real path) or the name server (a camera's host name),
which on a hard-mounted share that stopped answering is for ever: it runs in `CHECK_THREADS` threads
of its own, each within `CHECK_TIMEOUT_S`. Of their own, so that stuck checks hold up only other
checks that need a thread, never stream changes nor the checks that need none.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from server.http.access.policy import SourcePolicy
from server.sources.uri import mask_uri

log = logging.getLogger(__name__)

#: How long a check may wait for the file system or the name server before it is given up: a local
#: disk and a working resolver answer in far less, a hung NFS or SMB share never.
CHECK_TIMEOUT_S = 10.0
#: Threads for checks. One that never returns keeps its thread; once this many are held so, further
#: checks that need one are given up at once instead of queueing behind them or taking threads without end.
CHECK_THREADS = 4


class CheckUnanswered(Exception):
    """A check was given up: the file system or the name server did not answer in time."""


class SourceChecks:
    """Checks new sources against ``policy``, each within `CHECK_TIMEOUT_S`. Use it on the event loop only.

    ``policy`` is made once, at start: making one resolves ``[server] media_dirs``, which a share that
    stopped answering would block, so a policy made per check made every check wait for it.
    Checks beyond the threads wait for one, within their own `CHECK_TIMEOUT_S`. A check given up goes
    on in its thread until what it waits for answers, and that thread is not reused until then; while
    every thread is so held, a check that needs one is given up at once. Only checks given up count:
    counting every check in a thread refused the fifth of five ordinary ones asked at once.
    """

    def __init__(self, policy: SourcePolicy, threads: int = CHECK_THREADS) -> None:
        self._policy = policy
        self._threads = threads
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="source-check")
        self._given_up = 0  # look-ups given up that still hold their thread

    async def check(self, uri: str) -> None:
        """Raise what `SourcePolicy.check` raises for ``uri``; `CheckUnanswered` if what it waits for
        has not answered within `CHECK_TIMEOUT_S`, or at once if every thread is held by one given up."""
        look_up = self._policy.check_text(uri)
        if look_up is not None:
            await self._in_thread(look_up, uri)

    async def _in_thread(self, look_up: Callable[[], None], uri: str) -> None:
        if self._given_up >= self._threads:
            # Every request meets this while the share stays hung: each check given up was warned of already.
            log.debug("not checking %s: every check thread is still waiting", mask_uri(uri))
            raise CheckUnanswered(
                f"{self._given_up} earlier checks are still waiting for the file system or the name server"
            )
        work = self._executor.submit(look_up)
        answered = asyncio.wrap_future(work)
        try:
            await asyncio.wait_for(asyncio.shield(answered), CHECK_TIMEOUT_S)
        except TimeoutError:
            if not work.cancel():  # it started, and holds its thread until what it waits for answers
                self._given_up += 1
                answered.add_done_callback(self._returned)
            log.warning("gave up checking the source %s: no answer within %g s", mask_uri(uri), CHECK_TIMEOUT_S)
            raise CheckUnanswered(
                f"the file system or the name server did not answer within {CHECK_TIMEOUT_S:g} s"
            ) from None

    def _returned(self, answered: asyncio.Future[None]) -> None:
        """A look-up given up has returned: its thread is free again."""
        self._given_up -= 1
        if not answered.cancelled():
            answered.exception()  # taken: a check given up has nobody left to tell how it ended

    def shutdown(self) -> None:
        """Stop taking checks; threads still waiting for a file system are left to end when it answers."""
        self._executor.shutdown(wait=False, cancel_futures=True)
