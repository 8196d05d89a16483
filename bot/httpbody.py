"""Reading a webhook's raw body within a size and time limit: each front end's endpoint sets
its own (``web_slack_max_body``, ``web_github_max_body``, ``web_body_timeout``)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError


async def read_body(request: web.Request, limit: int, timeout: float) -> bytes:
    """The raw body, at most ``limit`` bytes and within ``timeout`` seconds: 413 or 408 otherwise.

    A declared length over the limit is refused before anything is read."""
    too_large = f"the body is over this endpoint's limit of {limit} bytes\n"
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(limit, request.content_length, text=too_large)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > limit:
                    raise web.HTTPRequestEntityTooLarge(limit, size, text=too_large)
                chunks.append(chunk)
    except TimeoutError:
        raise web.HTTPRequestTimeout(text=f"the body did not arrive within {timeout:g} s\n") from None
    except HttpProcessingError as exc:  # broken chunked encoding, bad compression, a short body
        raise web.HTTPBadRequest(text=f"the body could not be read: {exc.message}\n") from None
    return b"".join(chunks)
