"""The object store's side of the storage seam, one contract on three stores: obstore's
MemoryStore (what GCS gets: no emulator obstore can talk to), moto's S3 and Azurite.

A part is invisible until it is verified and sealed, whole once it is; an unsealed upload is
aborted; small files, listings and the lease behave as the local directory's do.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from asyncdl.config import DownloadSettings
from asyncdl.errors import BusyError, StorageError, VerificationError
from asyncdl.fetch.plan import SegmentPlan
from asyncdl.layout import STATE_DIR, SYNC_LOCK
from asyncdl.storage import LocalStorage, open_storage
from asyncdl.storage.bucket import PART_BYTES, Bucket
from asyncdl.storage.lease import LEASE_S, Lease
from asyncdl.storage.objects import ObjectStorage
from asyncdl.storage.uploads import TAIL_BYTES
from tests.storage.conftest import AzureContainer, S3Bucket

MiB = 1 << 20


def parquet(rows: int, *, payload: int = 0, seed: int = 1) -> bytes:
    """A real parquet file of ``rows`` rows, padded to about ``payload`` bytes of random data
    (incompressible, so the file really is that big)."""
    rng = random.Random(seed)
    per_row = payload // rows if payload else 8
    table = pa.table(
        {"id": list(range(rows)), "blob": [rng.randbytes(per_row) for _ in range(rows)]}
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="none")
    return sink.getvalue()


SMALL = parquet(50)
BIG = parquet(40, payload=7 * MiB)  # beyond one PUT: a multipart upload


def chunks(data: bytes, size: int = MiB) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@dataclass(frozen=True)
class Store:
    """One store under test: the storage, and what only the test can see of it."""

    storage: ObjectStorage
    open_uploads: Callable[[], list[str]]  # S3's multipart uploads left open ([] elsewhere)
    kind: str


@pytest.fixture(params=["memory", "s3", "azure"])
def store(request: pytest.FixtureRequest, staging: Path) -> Store:
    if request.param == "memory":
        from obstore.store import MemoryStore

        storage = ObjectStorage(Bucket(MemoryStore(), url="memory://test"), "out")
        return Store(storage, list, "memory")
    if request.param == "s3":
        bucket: S3Bucket = request.getfixturevalue("s3")
        root = open_storage(f"{bucket.url}/out")
        assert isinstance(root, ObjectStorage)
        return Store(root, bucket.open_uploads, "s3")
    container: AzureContainer = request.getfixturevalue("az")
    root = open_storage(f"{container.url}/out")
    assert isinstance(root, ObjectStorage)
    return Store(root, list, "azure")


def test_a_small_part_is_invisible_until_sealed_then_one_put(store: Store) -> None:
    storage = store.storage.sub("batch")
    storage.prepare()
    file = storage.part("scoreDate=1/a.parquet")
    writer = file.open("fresh")
    hasher = hashlib.sha256()
    writer.write(chunks(SMALL, 1000), offset=None, hasher=hasher)
    writer.close(sync=True)
    assert hasher.hexdigest() == hashlib.sha256(SMALL).hexdigest()
    assert file.rows("a.parquet") == 50
    assert storage.size("scoreDate=1/a.parquet") is None
    assert storage.files() == frozenset()  # nothing at all: no temp object, no probe left
    file.seal(sync=True)
    file.release()
    assert storage.read("scoreDate=1/a.parquet") == SMALL
    assert storage.files() == {"scoreDate=1/a.parquet"}
    assert store.storage.files() == {"batch/scoreDate=1/a.parquet"}
    assert file.name == storage.where("scoreDate=1/a.parquet")
    assert file.name.endswith("/out/batch/scoreDate=1/a.parquet")


def test_a_big_part_streams_into_an_upload_that_only_the_seal_commits(store: Store) -> None:
    assert len(BIG) > PART_BYTES  # beyond one PUT's buffer
    storage = store.storage
    file = storage.part("big.parquet")
    pieces = chunks(BIG)
    half = len(pieces) // 2
    hasher = hashlib.sha256()
    file.open("fresh").write(pieces[:half], offset=None, hasher=hasher)  # a stream, cut
    file.open("append").write(pieces[half:], offset=None, hasher=hasher)  # the same run resumes
    assert hasher.hexdigest() == hashlib.sha256(BIG).hexdigest()
    assert storage.size("big.parquet") is None
    if store.kind == "s3":
        assert store.open_uploads() == ["out/big.parquet"]
    assert file.rows("big.parquet") == 40  # from the kept head and tail: nothing read back
    file.seal(sync=True)
    file.release()
    assert storage.size("big.parquet") == len(BIG)
    assert storage.read("big.parquet") == BIG
    assert store.open_uploads() == []
    digest = hashlib.sha256()
    storage.digest("big.parquet", digest)
    assert digest.hexdigest() == hashlib.sha256(BIG).hexdigest()
    assert storage.rows("big.parquet", "big.parquet") == 40


def test_an_unsealed_upload_is_aborted_on_release(store: Store) -> None:
    file = store.storage.part("big.parquet")
    file.open("fresh").write(chunks(BIG), offset=None, hasher=None)
    file.release()
    file.release()  # idempotent: fetch releases in a finally whatever happened
    assert store.storage.files() == frozenset()
    assert store.open_uploads() == []


def test_a_fresh_open_throws_the_earlier_attempt_away(store: Store) -> None:
    file = store.storage.part("big.parquet")
    file.open("fresh").write(chunks(random.Random(2).randbytes(len(BIG))), offset=None, hasher=None)
    with pytest.raises(VerificationError, match="footer unreadable"):
        file.rows("big.parquet")
    file.open("fresh").write(chunks(BIG), offset=None, hasher=None)  # the rewind, then again
    file.seal(sync=False)
    assert store.storage.read("big.parquet") == BIG
    assert store.open_uploads() == []


def test_a_footer_longer_than_the_kept_tail_is_refused_not_guessed(store: Store) -> None:
    footer = 2 * TAIL_BYTES
    body = b"PAR1" + bytes(3 * MiB) + footer.to_bytes(4, "little") + b"PAR1"
    file = store.storage.part("odd.parquet")
    file.open("fresh").write(chunks(body), offset=None, hasher=None)
    with pytest.raises(VerificationError, match="longer than the 1,048,576 bytes kept"):
        file.rows("odd.parquet")
    file.release()
    assert store.storage.files() == frozenset()


def test_a_second_writer_of_the_same_part_loses_harmlessly(store: Store) -> None:
    storage = store.storage
    for _ in range(2):
        file = storage.part("a.parquet")
        file.open("fresh").write([SMALL], offset=None, hasher=None)
        file.seal(sync=False)
    assert storage.read("a.parquet") == SMALL
    storage.replace("b.parquet", b"stale bytes of another part version")
    file = storage.part("b.parquet")
    file.open("fresh").write([SMALL], offset=None, hasher=None)
    file.seal(sync=False)  # the fetch chose to replace it: it is replaced
    assert storage.read("b.parquet") == SMALL


def test_an_empty_part_is_an_empty_object(store: Store) -> None:
    file = store.storage.part("empty.csv")
    file.open("fresh").close()
    file.seal(sync=False)
    assert store.storage.size("empty.csv") == 0


def test_what_a_part_keeps_in_memory_is_bounded_whatever_its_size(tmp_path: Path) -> None:
    from obstore.store import MemoryStore

    storage = ObjectStorage(Bucket(MemoryStore(), url="memory://test"), "out")
    held = storage.memory_held
    assert held(MiB, segmented=False) == 2 * MiB  # chunks, and their join for the one PUT
    big = held(16 * MiB, segmented=False)
    assert big == held(1 << 30, segmented=False) == PART_BYTES + TAIL_BYTES
    assert held(1 << 30, segmented=True) == held(64 * MiB, segmented=True) < 64 * MiB
    assert held(MiB, segmented=True) == MiB  # staged; read back whole for its one PUT
    defaults = DownloadSettings()
    assert defaults.store_memory_bytes // big == defaults.concurrency  # the default -j's worth
    local = LocalStorage(tmp_path)
    assert local.memory_held(1 << 30, segmented=False) == 0


def test_small_files_listings_and_removal(store: Store) -> None:
    storage = store.storage
    assert storage.read("manifest.json") is None
    assert storage.size("manifest.json") is None
    assert storage.folders() == []
    storage.replace("b1/manifest.json", b"{}", durable=True)
    storage.replace("b1/x/part.parquet", SMALL)
    storage.replace("b2/manifest.json", b"[]")
    storage.replace("CURRENT", b"b2\n")
    storage.replace("b1/manifest.json", b'{"v": 2}')  # replaced whole
    assert storage.read("b1/manifest.json") == b'{"v": 2}'
    assert storage.folders() == ["b1", "b2"]
    assert storage.sub("b1").files() == {"manifest.json", "x/part.parquet"}
    assert storage.sub("b1").rows("x/part.parquet", "part.parquet") == 50
    with pytest.raises(VerificationError, match="footer unreadable"):
        storage.rows("CURRENT", "CURRENT")
    storage.remove_tree("b1")
    storage.remove_tree("nothing-here")
    assert storage.folders() == ["b2"]
    assert storage.files() == {"b2/manifest.json", "CURRENT"}


def test_a_segmented_part_is_staged_locally_resumed_and_uploaded_whole(
    store: Store, staging: Path
) -> None:
    storage = store.storage.sub("batch")
    size = len(BIG)
    plan = SegmentPlan.fresh(size=size, segment_bytes=2 * MiB)
    file = storage.segmented("big.parquet")
    file.save_record(plan.record(), sync=True)
    file.resize(size, keep=0)
    writer = file.open("in_place")
    first = plan.segments[0]
    writer.write([BIG[first.start : first.end]], offset=first.start, hasher=None)
    writer.close()
    first.done = first.end - first.start
    file.save_record(plan.record(), sync=True)
    file.release()  # a run that stops here keeps the staged file and its record
    staged = list(staging.rglob("*.part"))
    assert len(staged) == 1
    assert staged[0].stat().st_size == size
    assert storage.files() == frozenset()  # nothing in the store yet
    again = storage.segmented("big.parquet")  # the next run finds it by the URL's digest
    resumed = SegmentPlan.from_record(again.load_record(), size=size)
    assert resumed is not None
    assert resumed.segments[0].complete
    writer = again.open("in_place")
    for segment in resumed.segments[1:]:
        writer.write([BIG[segment.start : segment.end]], offset=segment.start, hasher=None)
    writer.close()
    hasher = hashlib.sha256()
    again.hash_into(hasher, 0, size)
    assert hasher.hexdigest() == hashlib.sha256(BIG).hexdigest()
    assert again.rows("big.parquet") == 40
    again.seal(sync=True)
    again.release()
    assert storage.read("big.parquet") == BIG
    assert list(staging.rglob("*.part*")) == []
    assert store.open_uploads() == []
    assert again.name == storage.where("big.parquet")


def test_the_lease_refuses_a_second_holder_and_is_gone_once_released(store: Store) -> None:
    storage = store.storage
    with storage.lock(SYNC_LOCK):
        assert storage.files() == {SYNC_LOCK}
        held = json.loads(storage.read(SYNC_LOCK) or b"")
        assert {"owner", "host", "pid", "since", "expires"} <= set(held)
        with pytest.raises(BusyError, match=r"is being synced by another run \(pid \d+ on"):
            storage.lock(SYNC_LOCK).__enter__()
    assert storage.files() == frozenset()
    with storage.lock(SYNC_LOCK):  # free again
        pass


def test_an_expired_lease_is_taken_over(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    storage = store.storage
    dead = {"owner": "gone", "host": "elsewhere", "pid": 1, "since": "then", "expires": 1.0}
    storage.replace(SYNC_LOCK, json.dumps(dead).encode())
    with caplog.at_level(logging.WARNING), storage.lock(SYNC_LOCK):
        assert json.loads(storage.read(SYNC_LOCK) or b"")["owner"] != "gone"
    assert "took over an expired lease (pid 1 on elsewhere" in caplog.text
    assert storage.files() == frozenset()


def test_a_holder_whose_lease_was_taken_over_says_so_and_leaves_it(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    fast = ObjectStorage(store.storage.bucket, store.storage.prefix, lease_s=0.3)
    lease = fast.lock(SYNC_LOCK)
    with caplog.at_level(logging.ERROR):
        held = lease.__enter__()
        held.check()  # held: writes may go on
        other = {
            "owner": "other",
            "host": "h",
            "pid": 2,
            "since": "now",
            "expires": time.time() + 60,
        }
        fast.replace(SYNC_LOCK, json.dumps(other).encode())  # as a taker would
        deadline = time.monotonic() + 20
        while "the lease was taken over" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(BusyError, match="another run took over this run's lease"):
            held.check()  # the next write under the lease stops the run
        lease.__exit__(None, None, None)
    assert "this run no longer holds it" in caplog.text
    assert json.loads(fast.read(SYNC_LOCK) or b"")["owner"] == "other"  # not deleted


def test_a_lease_not_renewed_for_its_whole_length_stops_the_writes(store: Store) -> None:
    """Renewals that kept failing (the store unreachable): past the lease's length another run
    may have taken it, so the holder must not write on."""
    now = [1_000.0]
    storage = store.storage
    lease = Lease(storage.bucket, storage.key(SYNC_LOCK), subject="x", clock=lambda: now[0])
    with lease as held:
        now[0] += LEASE_S * 2 / 3 - 1  # one renewal missed: still held
        held.check()
        now[0] += 2  # a second one missed: the renewer waits LEASE_S / 3 of real time first
        with pytest.raises(BusyError, match="not renewed for 201 s of its 300"):
            held.check()


def test_prepare_leaves_nothing_behind(store: Store) -> None:
    store.storage.prepare()
    store.storage.sub("batch").prepare()
    assert store.storage.files() == frozenset()
    assert store.storage.folders() == []  # not even an empty .asyncdl "folder"
    assert STATE_DIR not in store.storage.files()


def test_prepare_fails_clearly_on_a_bucket_that_does_not_exist(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    if store.kind == "memory":
        pytest.skip("a MemoryStore has no buckets")
    scheme = "s3" if store.kind == "s3" else "az"
    missing = open_storage(f"{scheme}://no-such-bucket-here/out")
    with pytest.raises(StorageError, match="does not exist") as caught:
        missing.prepare()
    assert type(caught.value) is StorageError  # not the credentials' refusal
    assert "\n" not in str(caught.value)
