"""Reading a webhook's raw body within a size and time limit: each front end's endpoint sets
its own (``web_slack_max_body``, ``web_github_max_body``, ``web_body_timeout``)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError


async def read_body(request: web.Request, limit: int, timeout: float) -> bytes:
    """The raw body, at most ``limit`` bytes and within ``timeout`` seconds: 413 or 408 otherwise.

    A declared length over the limit is refused before anything is read.  A body that has
    arrived whole (most webhooks: one or two segments on a keep-alive connection) is taken
    as it is, without arming a deadline."""
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(limit, request.content_length, text=_too_large(limit))
    if request.content.is_eof():
        try:
            body = request.content.read_nowait()
        except HttpProcessingError as exc:
            raise web.HTTPBadRequest(text=f"the body could not be read: {exc.message}\n") from None
        if len(body) > limit:
            raise web.HTTPRequestEntityTooLarge(limit, len(body), text=_too_large(limit))
        return body
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > limit:
                    raise web.HTTPRequestEntityTooLarge(limit, size, text=_too_large(limit))
                chunks.append(chunk)
    except TimeoutError:
        raise web.HTTPRequestTimeout(text=f"the body did not arrive within {timeout:g} s\n") from None
    except HttpProcessingError as exc:  # broken chunked encoding, bad compression, a short body
        raise web.HTTPBadRequest(text=f"the body could not be read: {exc.message}\n") from None
    return b"".join(chunks)


def _too_large(limit: int) -> str:
    return f"the body is over this endpoint's limit of {limit} bytes\n"
