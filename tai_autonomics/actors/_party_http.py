"""The operation actors' HTTP calls to an outside party: a JSON POST, through httpx's transport.

An insured deploy makes one such call, and ``httpx.Client.post`` spent about 580 µs of CPU on it
here, more than half of it in the client's per-request machinery rather than on the wire: the
URL parsed and merged with the base URL on every call, the cookie jar read and written, the auth
and redirect loops, the event hooks (docs/performance.md, "What a deploy costs"). A party's
answer needs none of these (the calls never follow redirects, carry no auth the client adds, and
the parties set no cookies), so :meth:`PartyHttp.post` sends the request the client would send,
with the client's own default headers and timeouts, straight to the transport the client would
use for that URL (so proxies and TLS settings from the environment still apply): about 270 µs.
Errors are the client's: ``httpx.TimeoutException``, ``httpx.ConnectError``,
``httpx.TransportError``, raised while sending or while reading the answer.
"""

from __future__ import annotations

from typing import Any

import httpx


class PartyHttp:
    """JSON POSTs to paths under one party's base URL, on a pool of persistent connections."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        self._client = httpx.Client(base_url=base_url, timeout=timeout_s)
        self._urls: dict[str, httpx.URL] = {}

    def post(self, path: str, body: Any, headers: dict[str, str], timeout_s: float) -> httpx.Response:
        """The party's answer to ``POST path`` with ``body`` as JSON, read in full."""
        url = self._urls.get(path)
        if url is None:  # the few paths of a party, each parsed once
            url = self._urls[path] = self._client.build_request("POST", path).url
        merged = self._client.headers.copy()
        merged.update(headers)
        request = httpx.Request("POST", url, json=body, headers=merged,
                                extensions={"timeout": httpx.Timeout(timeout_s).as_dict()})
        # the transport the client itself picks for the URL (httpx has no public name for it)
        response = self._client._transport_for_url(url).handle_request(request)
        try:
            response.read()
        finally:
            response.close()
        return response

    def close(self) -> None:
        self._client.close()
