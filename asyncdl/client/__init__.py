"""The HTTP boundary: the only package that imports the aiohttp client.

``session`` is the client the rest of asyncdl calls (JSON exchanges with retries, pages, HEAD,
byte streams), ``sender`` how each request goes out (the run's ``ClientSession``, headers,
origin lock, redirects, 401 replay, IMS), ``answers`` what an answer is (a byte stream, a JSON
page, a file), ``failures`` how an error answer reads, ``transport`` aiohttp itself and the
translation of its failures,
``origins`` which URLs are the API's, ``signing`` the credentials of a store a source reads from
(added to each of its requests as it is sent, never kept in an href).
"""

from __future__ import annotations

from .answers import ByteStream, FileAnswer, ObjectHead, Page, filename_from, is_json_type
from .origins import Origin, origin_of
from .session import AEPClient, RetryListener
from .signing import RequestSigner, SignedRequest, strip_query

__all__ = [
    "AEPClient",
    "ByteStream",
    "FileAnswer",
    "ObjectHead",
    "Origin",
    "Page",
    "RequestSigner",
    "RetryListener",
    "SignedRequest",
    "filename_from",
    "is_json_type",
    "origin_of",
    "strip_query",
]
