"""The sync lock on an object store: a lease object, taken by a conditional create, renewed while
held, taken over only once it has expired.

A store has no ``flock`` that dies with its holder, so the lock is an object that says who holds
it and until when (JSON: owner token, host, pid, since, expiry). It is taken with a PUT that
succeeds only where no object is (``If-None-Match: *``), renewed every third of its length with
a PUT conditional on the version this holder last wrote (``If-Match``), and deleted on release.
A renewal that finds another version knows the lease was taken over and logs an error; the
run's next commit under the lease (``check``: the sync state, CURRENT, a pruning, a shard's
fragment, a landing-zone export's state) then stops with BusyError, as it does once two
renewals in a row have failed (another run may take the lease soon). Parts already streaming
are not stopped mid-way: what they write is only made current by those commits. A lease
past its expiry is taken over with a PUT conditional on the version read, so of two takers only
one wins. A holder killed outright leaves its lease to expire: the next run waits at most
``LEASE_S`` for it.

Expiry is the holder's clock plus ``LEASE_S``, read against the taker's: it assumes clocks kept
within a minute of each other (NTP). Release checks that the lease is still this holder's before
deleting it; a store offers no conditional delete, so a takeover in between (possible only once
the lease has expired, which renewals prevent) would lose its lease.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from ..errors import BusyError, StorageError

if TYPE_CHECKING:
    from obstore import ObjectMeta, PutResult

    from .bucket import Bucket  # (obstore is imported only where a store is used)

__all__ = ["LEASE_S", "Lease"]

log = logging.getLogger(__name__)

#: How long a lease holds without renewal; renewed every third of that.
LEASE_S = 300.0
_TAKE_TRIES = 3  # a lease released or taken over while this run looks is looked at again


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, kw_only=True)
class _Held:
    """What a lease object says."""

    owner: str
    holder: str  # "pid N on HOST since T", for the refusal's message
    expires: float

    @classmethod
    def parse(cls, raw: bytes, meta: ObjectMeta, lease_s: float) -> _Held:
        """The lease's claim; an unreadable one expires ``lease_s`` after it was written."""
        try:
            document = json.loads(raw)
            return cls(
                owner=str(document["owner"]),
                holder=f"pid {document['pid']} on {document['host']} since {document['since']}",
                expires=float(document["expires"]),
            )
        except (ValueError, KeyError, TypeError):
            written = meta["last_modified"].timestamp()
            return cls(owner="", holder="an unreadable lease", expires=written + lease_s)


class Lease:
    """The exclusive lease at ``key``, held for a ``with`` block (BusyError when another run
    holds it). Enter and exit may run in different worker threads."""

    def __init__(
        self,
        bucket: Bucket,
        key: str,
        *,
        subject: str,
        lease_s: float = LEASE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._bucket = bucket
        self._key = key
        self._subject = subject  # what the lease locks, for the refusal's message
        self._lease_s = lease_s
        self._clock = clock
        self._token = uuid.uuid4().hex
        self._since = _iso(clock())
        self._version: PutResult | None = None
        self._renewed = 0.0  # when the lease was last taken or renewed (``clock``)
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _document(self) -> bytes:
        expires = self._clock() + self._lease_s
        return json.dumps(
            {
                "owner": self._token,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "since": self._since,
                "expires": expires,
                "until": _iso(expires),
            }
        ).encode()

    def __enter__(self) -> Lease:
        self._version = self._take()
        self._renewed = self._clock()
        self._renewer = threading.Thread(
            target=self._keep, name=f"asyncdl-lease {self._key}", daemon=True
        )
        self._renewer.start()
        return self

    def check(self) -> None:
        """BusyError once this run cannot be sure it still holds the lease."""
        where = self._bucket.where(self._key)
        if self._version is None:
            raise BusyError(f"{where}: another run took over this run's lease; it stops here")
        # Two renewals missed, not the whole length: another host reads the expiry by its own
        # clock (up to a minute ahead), and a write that passes this check takes time too.
        unrenewed_s = self._clock() - self._renewed
        if unrenewed_s > self._lease_s * 2 / 3:
            raise BusyError(
                f"{where}: this run's lease was not renewed for {unrenewed_s:.0f} s of its "
                f"{self._lease_s:.0f} (another run may take it); it stops here"
            )

    def _take(self) -> PutResult:
        where = self._bucket.where(self._key)
        for _ in range(_TAKE_TRIES):
            created = self._bucket.create(self._key, self._document())
            if created is not None:
                return created
            found = self._bucket.get(self._key)
            if found is None:
                continue  # released while this run looked: try again
            held = _Held.parse(found[0], found[1], self._lease_s)
            if held.expires > self._clock():
                raise BusyError(
                    f"{self._subject} is being synced by another run ({held.holder}; its lease "
                    f"{where} runs until {_iso(held.expires)})"
                )
            taken = self._bucket.update(self._key, self._document(), found[1])
            if taken is not None:
                log.warning(
                    "%s: took over an expired lease (%s, expired %s)",
                    where,
                    held.holder,
                    _iso(held.expires),
                )
                return taken
        raise BusyError(f"{where}: another run is taking this lease at the same time")

    def _keep(self) -> None:
        """Renew every third of the lease until released; stop once it was taken over."""
        while not self._stop.wait(self._lease_s / 3):
            version = self._version
            if version is None:
                return
            stamped = self._clock()  # no later than the expiry the renewal writes
            try:
                renewed = self._bucket.update(self._key, self._document(), version)
            except StorageError as error:
                log.warning("%s: lease not renewed (trying again): %s", self._key, error)
                continue
            if renewed is None:
                log.error(
                    "%s: the lease was taken over by another run; this run no longer holds it",
                    self._bucket.where(self._key),
                )
                self._version = None
                return
            self._version = renewed
            self._renewed = stamped

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        if self._version is None:
            return  # taken over: the lease is another run's now
        try:
            found = self._bucket.get(self._key)
            if found is not None and _Held.parse(found[0], found[1], 0).owner == self._token:
                self._bucket.delete([self._key])
        except StorageError as error:
            # What the run did stands; the next run waits for the lease to expire.
            log.warning("lease not released (it expires within %.0f s): %s", self._lease_s, error)
