"""Tests of asyncdl.tools: the data tools, one module each."""
