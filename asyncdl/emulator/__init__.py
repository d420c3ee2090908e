"""A local Adobe Experience Platform emulator: IMS tokens, the API gateway's checks, Catalog
batches and datasets, Data Access listings and downloads, over generated Customer AI parquet,
the Data Landing Zone's credentials call, with seeded faults and switchable response shapes
(``Variants``). It imports ``asyncdl.models``, ``asyncdl.errors`` and itself, never any client
code.

Use ``running_emulator(config)`` in tests, ``serve(...)`` for a long-running process. The world
can change while it serves: ``Emulator.add_batch`` adds a generated batch (a new scoring run),
``Emulator.set_status`` lets a batch created earlier succeed later.
"""

from __future__ import annotations

from asyncdl.emulator.config import (
    VARIANT_NAMES,
    AwsLandingZone,
    AzureLandingZone,
    DatasetSpec,
    EmulatorConfig,
    Faults,
    Variants,
    default_cache_dir,
)
from asyncdl.emulator.data import TruthBatch, TruthDataset, TruthFile, TruthPart
from asyncdl.emulator.parquet import SCHEMA
from asyncdl.emulator.recording import RecordedRequest
from asyncdl.emulator.server import Emulator, running_emulator, serve
from asyncdl.emulator.variants import HOSTILE_NAMES

__all__ = [
    "HOSTILE_NAMES",
    "SCHEMA",
    "VARIANT_NAMES",
    "AwsLandingZone",
    "AzureLandingZone",
    "DatasetSpec",
    "Emulator",
    "EmulatorConfig",
    "Faults",
    "RecordedRequest",
    "TruthBatch",
    "TruthDataset",
    "TruthFile",
    "TruthPart",
    "Variants",
    "default_cache_dir",
    "running_emulator",
    "serve",
]
