"""The data tools, for what is already on disk: ``parts`` (which files are parts, their footers,
manifests and first rows), ``columns`` (where the Customer AI columns are), ``histogram`` (one
column's distribution on round edges), ``scores`` (the ``inspect`` report), ``merge`` (one file
from many parts) and ``plot`` (the report as a chart, with the optional matplotlib extra).

These and the emulator are the only modules that import pyarrow: the download path never loads
them (tests/tools/test_imports.py holds it to that), so this package imports nothing itself.
"""
