"""Everything asyncdl writes beside the data, by name: the one owner of those rules.

A batch directory (``OUT/<batch id>/``, or the same prefix in an object store) holds the parts
under their relpaths, and next to them only files this module names: a part's ``.part`` while it
is written, a segmented part's progress record, the batch manifest and its temp names. A Data
Landing Zone export lands in ``OUT/<dataset id>/exportTime=<YYYYMMDDHHMM>/``, laid out like a
batch directory. The run's own state lives in ``OUT/.asyncdl/``. A part from the server that
would take one of these names is refused (``reserved``), so asyncdl never overwrites its own
records with data, or the reverse.
"""

from __future__ import annotations

__all__ = [
    "CURRENT_NAME",
    "MANIFEST_NAME",
    "STATE_DIR",
    "SYNC_LOCK",
    "WRITE_PROBE",
    "dlz_lock",
    "dlz_state",
    "export_folder",
    "fragment_name",
    "record_of",
    "record_temp_of",
    "replace_temp",
    "reserved",
    "shard_lock",
    "sync_state",
    "temp_of",
]

#: A batch's record of what arrived and how it was verified.
MANIFEST_NAME = "manifest.json"
#: The run-level state (sync's) below the output root; hidden like every metadata file.
STATE_DIR = ".asyncdl"
#: What ``sync`` keeps at the output root: the batch ids of the complete current view.
CURRENT_NAME = "CURRENT"
#: Held for a whole sync: one sync at a time per output root.
SYNC_LOCK = f"{STATE_DIR}/sync.lock"
#: The empty file asyncdl writes once to prove the output directory is writable.
WRITE_PROBE = ".asyncdl-write-test"

_PART = ".part"
_RECORD = ".segments"
_TEMP = ".tmp"
_REPLACE_TEMP = ".asyncdl-"
_FRAGMENT = "manifest.shard-"


def temp_of(relpath: str) -> str:
    """Where a part is written until it is verified: ``<relpath>.part``."""
    return relpath + _PART


def record_of(temp: str) -> str:
    """A segmented part's progress record, beside its ``.part``."""
    return temp + _RECORD


def record_temp_of(record: str) -> str:
    """Where a record is written before it atomically replaces the old one."""
    return record + _TEMP


def replace_temp(unique: str) -> str:
    """The temp name a small file (manifest, state) is written under before it replaces the
    old one; ``unique`` keeps two writers (two runs) apart."""
    return f"{_REPLACE_TEMP}{unique}{_TEMP}"


def fragment_name(index: int, count: int) -> str:
    """A shard's manifest fragment in a batch directory: the parts shard ``index`` of
    ``count`` verified (``finalize`` merges them into the batch's manifest)."""
    return f"{_FRAGMENT}{index}-of-{count}.json"


def shard_lock(index: int, count: int) -> str:
    """Held by the one live writer of a shard, below the output root."""
    return f"{STATE_DIR}/shard-{index}-of-{count}.lock"


def sync_state(dataset_id: str) -> str:
    """Where ``sync`` keeps what it knows of a dataset, below the output root."""
    return f"{STATE_DIR}/sync-{dataset_id}.json"


def export_folder(export_time: str) -> str:
    """A landing zone export's folder, in the landing zone and below ``OUT/<dataset id>/``
    alike: ``exportTime=YYYYMMDDHHMM``."""
    return f"exportTime={export_time}"


def dlz_state(dataset_id: str) -> str:
    """Where ``dlz download`` keeps which exports of a dataset are complete, below the root."""
    return f"{STATE_DIR}/dlz-{dataset_id}.json"


def dlz_lock(dataset_id: str) -> str:
    """Held by the one ``dlz download`` of a dataset into an output root at a time."""
    return f"{STATE_DIR}/dlz-{dataset_id}.lock"


def reserved(relpath: str) -> bool:
    """Whether a part at ``relpath`` would collide with a file asyncdl writes itself."""
    name = relpath.rsplit("/", 1)[-1]
    return (
        relpath == MANIFEST_NAME
        or relpath.split("/", 1)[0] == STATE_DIR
        or name.startswith(_REPLACE_TEMP)
        or relpath.startswith(_FRAGMENT)
        or name.endswith((_PART, _PART + _RECORD, _PART + _RECORD + _TEMP))
    )
