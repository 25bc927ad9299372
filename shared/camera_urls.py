"""Which camera URLs may be recorded, and the same URL with its credentials hidden for showing and logs."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit, urlunsplit

from shared.errors import BadInput

SCHEMES = ("rtsp", "rtsps", "http", "https")
MASK = "***"


def check(url: str, *, allow_private: bool) -> str:
    """The URL, stripped, if it may be recorded; BadInput with the sentence to show otherwise.

    Only rtsp, rtsps, http and https; every address the host resolves to must be public unless
    allow_private (LIVE_ALLOW_PRIVATE): a camera URL must not reach the product's own services.
    """
    url = (url or "").strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise BadInput("the camera URL is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        shown = f"{scheme}://" if scheme else "a URL without a scheme"
        raise BadInput(f"{shown} cannot be recorded: use an rtsp://, rtsps://, http:// or https:// "
                       "camera URL")
    host = parts.hostname
    if not host:
        raise BadInput("the camera URL names no host")
    if allow_private:
        return url
    try:
        infos = socket.getaddrinfo(host, port or 554, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise BadInput(f"the camera host {host} cannot be resolved") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global or address.is_multicast:
            raise BadInput(f"the camera host {host} is a loopback, link-local or private address "
                           f"({address}); only public addresses can be recorded here")
    return url


def masked(url: str) -> str:
    """The URL with any user name and password replaced by *** (what pages, logs and the API show)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{MASK}@{host}"))


def hide_in(text: str, url: str) -> str:
    """text with the URL's credentials (and the whole URL) replaced by the masked URL (error messages)."""
    text = text.replace(url, masked(url))
    parts = urlsplit(url)
    for secret in (parts.password, parts.username):
        if secret:
            text = text.replace(secret, MASK)
    return text
