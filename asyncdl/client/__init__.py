"""The HTTP boundary: the only package that imports the aiohttp client.

``session`` owns the run's ``ClientSession`` (headers, origin lock, redirects, 401 replay, JSON
retries, IMS), ``answers`` what an answer is (a byte stream, a JSON page, a file), ``failures``
how an error answer reads, ``transport`` aiohttp itself and the translation of its failures,
``origins`` which URLs are the API's.
"""

from __future__ import annotations

from .answers import ByteStream, FileAnswer, Page, filename_from, is_json_type
from .origins import Origin, origin_of
from .session import AEPClient, RetryListener

__all__ = [
    "AEPClient",
    "ByteStream",
    "FileAnswer",
    "Origin",
    "Page",
    "RetryListener",
    "filename_from",
    "is_json_type",
    "origin_of",
]
