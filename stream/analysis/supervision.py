"""Calls into a component that may hang or fail, and its restart.

The inference engine and the face detector are both run this way. A
:class:`Supervisor` makes every call to its component on its own daemon threads,
bounded by ``call_timeout_s``. A call that runs past it (the component hung), or
``restart_after_errors`` calls in a row that raise, make it restart the component in the
background: its threads are abandoned (a hung Python thread cannot be killed; it is a
daemon, so it never keeps the process from exiting, and it is leaked with the component
it holds until its call returns), a fresh component is opened with ``reopen`` on fresh
threads and warmed up, and that is tried again after a growing delay until it answers.
``on_health`` hears ``(False, why)`` when the component fails and ``(True, detail)``
once the fresh one has answered. While it restarts, calls fail at once.

Every call that gives no result raises :class:`ComponentFailed`; the caller drops the
work it was for and counts it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, Generic, ParamSpec, TypeVar

from fakewatch.stream.backoff import backoff_delay
from fakewatch.stream.logs import describe_error, log

P = ParamSpec("P")
T = TypeVar("T")
C = TypeVar("C")

HealthObserver = Callable[[bool, str], None]
"""Called with ``False`` and why when a component failed and is being restarted, and with
``True`` and a detail once a fresh one has answered its warm-up call."""

RESTART_BACKOFF_S = (0.5, 30.0)
"""First and longest delay between attempts to open a fresh component."""


class AbandonedError(RuntimeError):
    """Work that was still queued on a :class:`DaemonExecutor` when it was shut down, or a
    call whose component was restarted while it ran."""


class ComponentFailed(RuntimeError):
    """A supervised call gave no result: it hung, raised or was abandoned, or the
    component is being restarted."""


_WorkItem = tuple[Future[Any], Callable[[], Any]]


class DaemonExecutor(Executor):
    """A fixed set of daemon worker threads, for calls that may hang (engines, detectors).

    Unlike :class:`~concurrent.futures.ThreadPoolExecutor`, whose threads the interpreter
    joins at exit, a thread stuck here in a hung native call never keeps the process
    from exiting. ``shutdown(wait=False)`` abandons the threads: a busy one finishes its
    call (whenever that returns) and ends. Work not yet started fails with
    :class:`AbandonedError` instead of being cancelled, so a coroutine awaiting it sees
    an error rather than a ``CancelledError`` it would take for its own cancellation.
    """

    def __init__(self, workers: int = 1, name: str = "worker") -> None:
        self._work: queue.SimpleQueue[_WorkItem | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}-{index}", daemon=True)
            for index in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the executor is shut down")
            self._work.put((future, functools.partial(fn, *args, **kwargs)))
        return future

    def _serve(self) -> None:
        while (item := self._work.get()) is not None:
            future, work = item
            del item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = work()
            except BaseException as error:
                future.set_exception(error)
            else:
                future.set_result(result)
            del future, work  # keep neither the inputs nor the result alive while idle

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking work; queued work fails with :class:`AbandonedError` (whatever
        ``cancel_futures`` says). ``wait`` joins the threads, which a hung call blocks."""
        with self._lock:
            if not self._closed:
                self._closed = True
                while True:
                    try:
                        item = self._work.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None and item[0].set_running_or_notify_cancel():
                        item[0].set_exception(AbandonedError("its worker thread was abandoned"))
                for _ in self._threads:
                    self._work.put(None)
        if wait:
            for thread in self._threads:
                thread.join()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds in all for the threads to end (after
        :meth:`shutdown`); whether they all did."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    async def drain(self, timeout: float) -> bool:
        """Shut down, then wait up to ``timeout`` seconds (off the event loop) for a call
        under way to end: a native call still running when the interpreter exits can
        abort the process. Whether the threads ended."""
        self.shutdown(wait=False)
        return await asyncio.get_running_loop().run_in_executor(None, self.join, timeout)


class Supervisor(Generic[C]):
    """A component (``C``: an engine, a face detector) called on its own threads and
    restarted when it hangs or keeps failing; see the module docstring.

    ``name`` names its log events (``<name>.error``, ``.failed``, ``.restart_failed``,
    ``.restarted``) and its threads; ``calls`` says what its calls are ("engine calls")
    and ``timeout_key`` which setting ``call_timeout_s`` comes from, in the reasons given.
    ``warm_up`` makes one call on a blank input, at start and to check a fresh component;
    ``reopen`` opens a fresh component (without it the same one is tried on fresh threads).
    """

    def __init__(
        self,
        component: C,
        *,
        name: str,
        calls: str,
        timeout_key: str,
        logger: logging.Logger,
        warm_up: Callable[[C], object],
        reopen: Callable[[], C] | None = None,
        workers: int = 1,
        call_timeout_s: float = 10.0,
        restart_after_errors: int = 3,
        restart_timeout_s: float = 60.0,
        on_health: HealthObserver | None = None,
    ) -> None:
        self.component = component
        self.name, self.calls, self.timeout_key = name, calls, timeout_key
        self.call_timeout_s = call_timeout_s
        self.restart_after_errors = max(1, restart_after_errors)
        self.restart_timeout_s = restart_timeout_s
        self.generation = 0
        """Bumped at every restart: a call begun before it may check it has not changed."""
        self._logger = logger
        self._warm_up = warm_up
        self._reopen = reopen
        self._workers = workers
        self._on_health = on_health
        self._errors = 0  # calls in a row that raised
        self._executor = DaemonExecutor(workers, name)
        self._restart: asyncio.Task[None] | None = None

    @property
    def restarting(self) -> bool:
        """Whether the component is being restarted (calls fail at once meanwhile)."""
        return self._restart is not None

    async def warm_up(self) -> None:
        """One warm-up call of the component (the first is often the slowest), bounded by
        ``restart_timeout_s``; raises what it raised, or :class:`TimeoutError`."""
        await self._run(functools.partial(self._warm_up, self.component), self.restart_timeout_s)

    async def call(self, fn: Callable[[C], T], *, what: str, **fields: Any) -> T:
        """``fn(component)`` on the component's threads, bounded by ``call_timeout_s``;
        :class:`ComponentFailed` when it gives no result. ``what`` describes the call in
        the reason for a restart ("face detection"); ``fields`` go into its error log."""
        if self.restarting:
            raise ComponentFailed(f"the {self.name} is restarting")
        try:
            result = await self._run(functools.partial(fn, self.component), self.call_timeout_s)
        except TimeoutError:  # hung: its thread is abandoned
            self.restart(f"{what} took longer than {self.timeout_key} ({self.call_timeout_s:g} s)")
            raise ComponentFailed(f"{what} hung") from None
        except AbandonedError as error:  # queued behind a hung call, or begun before a restart
            raise ComponentFailed(str(error)) from None
        except Exception as error:
            self._errors += 1
            detail = describe_error(error)
            log(
                self._logger,
                logging.ERROR,
                f"{self.name}.error",
                **fields,
                error=detail,
                errors_in_a_row=self._errors,
                restart_after=self.restart_after_errors,
            )
            if self._errors >= self.restart_after_errors:
                self.restart(f"{self._errors} {self.calls} in a row failed: {detail}")
            raise ComponentFailed(detail) from error
        self._errors = 0
        return result

    def restart(self, reason: str) -> None:
        """Abandon the component's threads and reopen it in the background (nothing if a
        restart is under way already)."""
        if self._restart is not None:
            return
        self.generation += 1
        self._abandon()
        log(
            self._logger,
            logging.ERROR,
            f"{self.name}.failed",
            reason=reason,
            action="restarting it",
        )
        if self._on_health is not None:
            self._on_health(False, reason)
        self._restart = asyncio.get_running_loop().create_task(
            self._reopen_until_it_answers(), name=f"{self.name} restart"
        )

    async def close(self, drain_s: float = 0.0) -> None:
        """Stop a restart under way and the threads; a call under way gets up to
        ``drain_s`` seconds to end."""
        restart, self._restart = self._restart, None
        if restart is not None:
            restart.cancel()
            await asyncio.gather(restart, return_exceptions=True)
        if drain_s > 0:
            await self._executor.drain(drain_s)
        else:
            self._executor.shutdown(wait=False)

    async def _run(self, call: Callable[[], T], timeout: float) -> T:
        """``call()`` on the current threads, given up after ``timeout`` seconds (the
        thread is left running it)."""
        async with asyncio.timeout(timeout):
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _abandon(self) -> None:
        old, self._executor = self._executor, DaemonExecutor(self._workers, self.name)
        old.shutdown(wait=False)  # a hung call keeps its thread; it is not waited for

    def _open_fresh(self) -> C:
        """A fresh component (or the same one) after one warm-up call; runs on the new
        threads."""
        component = self._reopen() if self._reopen is not None else self.component
        self._warm_up(component)
        return component

    async def _reopen_until_it_answers(self) -> None:
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                component = await self._run(self._open_fresh, self.restart_timeout_s)
            except Exception as error:
                delay = backoff_delay(attempt, *RESTART_BACKOFF_S)
                log(
                    self._logger,
                    logging.ERROR,
                    f"{self.name}.restart_failed",
                    error=describe_error(error),
                    retry_in_s=round(delay, 3),
                )
                self._abandon()
                await asyncio.sleep(delay)
                attempt += 1
                continue
            break
        self.component = component
        self._errors = 0
        self._restart = None
        seconds = time.monotonic() - started
        log(self._logger, logging.INFO, f"{self.name}.restarted", seconds=round(seconds, 3))
        if self._on_health is not None:
            self._on_health(True, f"{self.name} restarted in {seconds:.2f} s")
