"""What ``dlz download`` remembers of a dataset's exports between runs:
``OUT/.asyncdl/dlz-<dataset>.json``, kept as ``sync`` keeps its state.

Whose it is (org, sandbox, dataset: a run for another is refused), and per export folder
whether it arrived complete and reconciled, with the digest of its manifest then (a manifest
that changed since is checked again). Written after the export's manifest, atomically and
synced, so it only ever vouches for exports whose manifest came first; a missing or unreadable
state is rebuilt from the manifests below ``OUT/<dataset id>/``. It never holds a URL, let
alone a SAS.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..layout import MANIFEST_NAME, dlz_state, export_folder
from ..storage import Storage

__all__ = [
    "SOURCE_KIND",
    "DlzState",
    "KnownExport",
    "forget_changed",
    "load_state",
    "manifest_digest",
    "save_state",
]

_FORMAT = 1
#: Marks the manifests a landing zone download wrote (``source.kind``).
SOURCE_KIND = "data-landing-zone"


def manifest_digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True, kw_only=True, slots=True)
class KnownExport:
    """One export folder as the last run left it."""

    export_time: str
    folder: str
    complete: bool
    manifest_sha256: str | None = None
    check: str | None = None  # which completeness check let it through


@dataclass(kw_only=True)
class DlzState:
    """The whole state file."""

    org_id: str
    sandbox: str
    dataset_id: str
    exports: dict[str, KnownExport] = field(default_factory=dict)

    def check_owner(self, *, org_id: str, sandbox: str, dataset_id: str, where: str) -> None:
        mine, theirs = (org_id, sandbox, dataset_id), (self.org_id, self.sandbox, self.dataset_id)
        if mine != theirs:
            raise ConfigError(
                f"{where} is the landing zone state of dataset {self.dataset_id} in org "
                f"{self.org_id}, sandbox {self.sandbox}, not of dataset {dataset_id} in org "
                f"{org_id}, sandbox {sandbox}: download into another --out"
            )

    def encode(self) -> bytes:
        document = {
            "format": _FORMAT,
            "org_id": self.org_id,
            "sandbox": self.sandbox,
            "dataset_id": self.dataset_id,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "exports": [
                {
                    "export_time": e.export_time,
                    "folder": e.folder,
                    "complete": e.complete,
                    "manifest_sha256": e.manifest_sha256,
                    "check": e.check,
                }
                for e in sorted(self.exports.values(), key=lambda e: e.export_time, reverse=True)
            ],
        }
        return (json.dumps(document, indent=1) + "\n").encode()

    @classmethod
    def decode(cls, raw: bytes) -> DlzState:
        """ValueError when ``raw`` is not a state of this format."""
        try:
            document = json.loads(raw)
            if not isinstance(document, dict) or document.get("format") != _FORMAT:
                raise ValueError("not a landing zone state of this format")
            state = cls(
                org_id=str(document["org_id"]),
                sandbox=str(document["sandbox"]),
                dataset_id=str(document["dataset_id"]),
            )
            for item in document.get("exports") or []:
                known = KnownExport(
                    export_time=str(item["export_time"]),
                    folder=str(item.get("folder") or ""),
                    complete=item.get("complete") is True,
                    manifest_sha256=item.get("manifest_sha256") or None,
                    check=item.get("check") or None,
                )
                state.exports[known.export_time] = known
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed landing zone state: {exc}") from exc
        return state


def load_state(
    root: Storage, *, org_id: str, sandbox: str, dataset_id: str
) -> tuple[DlzState, str | None]:
    """The state, or one rebuilt from the export manifests on disk, and why it had to be
    (blocking: call it off the event loop)."""
    where = root.where(dlz_state(dataset_id))
    raw = root.read(dlz_state(dataset_id))
    reason = f"{where} did not exist"
    if raw is not None:
        try:
            state = DlzState.decode(raw)
        except ValueError as exc:
            reason = f"{where} was unreadable ({exc})"
        else:
            state.check_owner(org_id=org_id, sandbox=sandbox, dataset_id=dataset_id, where=where)
            return state, None
    state = DlzState(org_id=org_id, sandbox=sandbox, dataset_id=dataset_id)
    below = root.sub(dataset_id)
    for name in below.folders():
        raw_manifest = below.read(f"{name}/{MANIFEST_NAME}")
        known = _from_manifest(raw_manifest, dataset_id) if raw_manifest is not None else None
        if known is not None:
            state.exports[known.export_time] = known
    return state, f"{reason}: rebuilt from {len(state.exports)} export manifests"


def _from_manifest(raw: bytes, dataset_id: str) -> KnownExport | None:
    try:
        document = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(document, dict) or document.get("dataset_id") != dataset_id:
        return None
    source: Any = document.get("source")
    if not isinstance(source, dict) or source.get("kind") != SOURCE_KIND:
        return None
    reconciliation = document.get("reconciliation")
    complete = (
        isinstance(reconciliation, dict)
        and reconciliation.get("ok") is True
        and source.get("complete") is True  # taken whole, not a --partial folder's share
    )
    return KnownExport(
        export_time=str(source.get("export_time")),
        folder=str(source.get("folder") or ""),
        complete=complete,
        manifest_sha256=manifest_digest(raw) if complete else None,
        check=str(source.get("check") or "") or None,
    )


def forget_changed(root: Storage, state: DlzState) -> list[str]:
    """Take back the state's word for every complete export whose manifest is no longer the
    one it vouched for (deleted, or rewritten): those are checked again. Blocking."""
    below = root.sub(state.dataset_id)
    changed = []
    for known in list(state.exports.values()):
        if not known.complete:
            continue
        raw = below.read(f"{export_folder(known.export_time)}/{MANIFEST_NAME}")
        if raw is None or manifest_digest(raw) != known.manifest_sha256:
            state.exports[known.export_time] = dataclasses.replace(
                known, complete=False, manifest_sha256=None
            )
            changed.append(known.export_time)
    return changed


def save_state(root: Storage, state: DlzState) -> None:
    """Synced and atomically replaced: after a crash it is the old state or the new one."""
    root.replace(dlz_state(state.dataset_id), state.encode(), durable=True)
