"""A delivery's JSON, read lazily: Python objects only for the fields routing and handlers read.

Most deliveries concern wasmbot in nothing (a comment without a command, a pull request
labelled): building the whole payload (14 KB and about 600 values for a comment, more for
a pull request or a push) was the largest cost of acknowledging one.  simdjson validates
and indexes the body in one pass, as strictly as a full parse; a read (``[]``, ``get``,
``in``, iteration) makes the value it returns.  The top level is a dict (its handful of keys
are read by every delivery, and a view's miss costs a C++ exception, 2.5 us); below it,
objects read as ``Mapping`` and arrays as ``Sequence``, so handlers read a view as they read
a dict.  What is kept beyond the delivery (comment work, bot/github/answering.py) is made
``plain`` first.

What is accepted, and as what, is json.loads's: what simdjson refuses (integers beyond 64
bits, NaN, lone surrogates, numbers beyond a double) goes to orjson, then json.loads, and
nesting deeper than 1,024 levels is refused as a ``RecursionError``.  One difference: a key
given twice in one object (GitHub never does; a signed body cannot carry one in without the
webhook's secret) reads as its first value, where json.loads keeps the last.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import simdjson

# simdjson's views implement the Mapping and Sequence reads; say so, so that checks for them hold.
Mapping.register(simdjson.Object)
Sequence.register(simdjson.Array)


_parsers = threading.local()


def _view(body: bytes) -> Any:
    """simdjson's view of ``body``, by this thread's parser.  A parser keeps its buffers from one
    body to the next (a new one per body cost allocating and faulting in ten times the body's
    size); while views of its last body are still held (a handler's background work), that
    body keeps the parser and the thread takes a new one."""
    parser = getattr(_parsers, "parser", None) or simdjson.Parser()
    try:
        view = parser.parse(body)
    except RuntimeError as exc:
        if "re-use a parser" not in str(exc):
            raise
        parser = simdjson.Parser()
        view = parser.parse(body)
    _parsers.parser = parser
    return view


def parse(body: bytes) -> Any:
    """The JSON body, views below its top level (or, beyond simdjson, json.loads's values)."""
    try:
        view = _view(body)
        return {key: view[key] for key in view} if isinstance(view, simdjson.Object) else view
    except (ValueError, RuntimeError) as exc:
        if "DEPTH_ERROR" in str(exc):
            raise RecursionError("the JSON nests deeper than 1,024 levels") from None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def plain(value: Any) -> Any:
    """``value`` as plain dicts and lists (for storing), whether a view or plain already."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value
