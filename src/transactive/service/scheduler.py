"""The gate-closure scheduler: a background component of the service (``config.scheduler``).

Every ``TICK_S`` wall seconds (the market clock may run faster: every tick reads it) one
tick opens the sessions ahead of the clock (:func:`~transactive.service.sessions.
ensure_sessions`), closes those past gate closure and queues their clearing jobs
(:func:`~transactive.service.sessions.close_due`), then runs the due jobs one by one in a
worker thread (``asyncio.to_thread``), so the event loop keeps answering requests, and
last reads ahead the bids of the sessions about to close (:func:`prefetch`), so that a
clearing reads only the bids of its last tick.

Jobs are rows of ``jobs``: a job is marked ``running`` (attempts + 1) in its own commit
before it runs, and ``done`` in the clearing's own transaction. After a crash the next start
finds it ``running`` and runs it again from scratch (the clearing's transaction never
committed, so nothing of it is stored). A job that raises is stored with its error; the
session is marked ``failed`` after ``MAX_ATTEMPTS`` tries (no crash loop, other sessions go
on clearing).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select, update

from transactive.service.clearing import clear_session
from transactive.service.deps import Services
from transactive.service.models import Job, MarketSession
from transactive.service.sessions import close_due, ensure_sessions

log = logging.getLogger(__name__)

#: Wall seconds between ticks.
TICK_S = 0.2
#: Tries of a failing clearing job before its session is marked failed.
MAX_ATTEMPTS = 3
#: Jobs run per tick at most (the rest wait for the next tick).
JOBS_PER_TICK = 32
#: Wall seconds before gate closure from which a session's bids are read ahead.
PREFETCH_S = 30.0


def tick(svc: Services) -> list[str]:
    """One scheduler step (blocking): open and close sessions, run due clearing jobs;
    returns the ids of the sessions cleared or failed in this step."""
    with svc.db.sessions() as s:
        now = svc.now()
        ensure_sessions(s, svc.market, svc.config, now)
        close_due(s, now)
        s.commit()
    done: list[str] = []
    for job_id in due_jobs(svc):
        key = run_job(svc, job_id)
        if key is not None:
            done.append(key)
    prefetch(svc)
    return done


def prefetch(svc: Services) -> int:
    """Read ahead the bids of the open sessions whose gate closes within ``PREFETCH_S``
    wall seconds (:class:`transactive.service.book.BookCache`); returns bids held."""
    horizon = svc.now() + timedelta(seconds=PREFETCH_S * svc.clock.speed)
    with svc.db.sessions() as s:
        due = s.scalars(
            select(MarketSession).where(
                MarketSession.status == "open", MarketSession.gate_closure <= horizon
            )
        ).all()
        svc.books.keep_only({m.id for m in due})
        held = sum(svc.books.prefetch(s, m) for m in due)
        s.rollback()  # read only
    return held


def due_jobs(svc: Services) -> list[int]:
    """Ids of the pending and running (interrupted) clearing jobs, oldest first."""
    with svc.db.sessions() as s:
        return list(
            s.scalars(
                select(Job.id)
                .where(Job.kind == "clear", Job.status.in_(("pending", "running")))
                .order_by(Job.due_at, Job.id)
                .limit(JOBS_PER_TICK)
            )
        )


def run_job(svc: Services, job_id: int) -> str | None:
    """Run clearing job ``job_id``: mark it running (commit), clear; on an error store it
    and, after MAX_ATTEMPTS, fail the job and its session. Returns the session id when
    the job ended (done or failed), else None."""
    with svc.db.sessions() as s:
        job = s.get(Job, job_id)
        if job is None or job.status not in ("pending", "running"):
            return None
        key = job.key
        job.status = "running"
        job.attempts += 1
        job.started_at = svc.now()
        attempts = job.attempts
        s.commit()
    try:
        with svc.db.sessions() as s:
            clear_session(s, svc, key)
        return key
    except Exception as exc:
        log.warning("clearing %s failed (attempt %d): %s", key, attempts, exc)
        failed = attempts >= MAX_ATTEMPTS
        with svc.db.sessions() as s:
            s.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(
                    error=f"{type(exc).__name__}: {exc}"[:4000],
                    status="failed" if failed else "pending",
                    finished_at=svc.now() if failed else None,
                )
            )
            if failed:
                s.execute(
                    update(MarketSession)
                    .where(MarketSession.id == key, MarketSession.status != "cleared")
                    .values(status="failed")
                )
            s.commit()
        return key if failed else None


@dataclass
class Handle:
    """The running scheduler: its task and the flag that stops it."""

    task: asyncio.Task[None]
    stop: asyncio.Event = field(default_factory=asyncio.Event)


async def _loop(svc: Services, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await asyncio.to_thread(tick, svc)
        except Exception as exc:
            log.warning("scheduler tick failed: %s", exc)
        try:
            await asyncio.wait_for(stop.wait(), TICK_S)
        except TimeoutError:
            pass


async def start(svc: Services) -> Handle:
    """Start the scheduler (interrupted ``running`` jobs are resumed by the first tick)."""
    stop = asyncio.Event()
    task = asyncio.create_task(_loop(svc, stop), name="gate-closure-scheduler")
    handle = Handle(task, stop)
    svc.extras["scheduler"] = handle
    return handle


async def stop(handle: Handle) -> None:
    """Stop after the current tick."""
    handle.stop.set()
    await handle.task
