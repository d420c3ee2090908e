"""How a part's fetch ends when it does not end well, and what is verified as parquet."""

from __future__ import annotations

from ..errors import AsyncdlError, ForeignOriginError
from ..models import Part, PartResult, PartStatus

__all__ = ["describe", "failed", "is_parquet"]


def is_parquet(name: str) -> bool:
    """Parts named ``*.parquet`` get their footer checked; anything else only its size."""
    return name.endswith(".parquet")


def failed(part: Part, fetched: int, attempts: int, why: str) -> PartResult:
    return PartResult(
        part=part,
        status=PartStatus.FAILED,
        fetched_bytes=fetched,
        attempts=attempts,
        error=why,
    )


def describe(error: AsyncdlError) -> str:
    """A part's failure as its result says it: the error's kind, unless the text says it all."""
    if isinstance(error, ForeignOriginError):
        return str(error)
    return f"{type(error).__name__}: {error}"
