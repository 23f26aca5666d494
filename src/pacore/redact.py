"""Credentials out of every URL pacore shows: `redact_url` for one URL, `redact` for a
text that may hold some (an error message, a log line).

A base URL may carry a password (`http://user:secret@host/v1`, which aiohttp sends as
Basic auth) or a key in its query (`?api_key=...`). The URL itself is used as given for
requests; only what is printed, logged, returned to a client or written to an output
goes through here. The user name stays (it says which account); the password and the
values of `SECRET_PARAMS` become `***`.
"""

from __future__ import annotations

import re

MASK = "***"
SECRET_PARAMS = frozenset(
    {"api_key", "apikey", "api-key", "key", "token", "access_token", "password", "secret"}
)
"""Query parameters whose values are credentials (compared case-insensitively)."""

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")
_AUTHORITY = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<authority>[^/?#]*)")
_PARAM = re.compile(r"(?P<lead>[&;])(?P<name>[^=&;#]+)=(?P<value>[^&;#]*)")


def redact_url(url: str) -> str:
    """`url` with the password of its user info and the values of credential query
    parameters replaced by `***`; anything else, and a text that is not a URL, as it is."""
    match = _AUTHORITY.match(url)
    if match is None:
        return url
    authority = match["authority"]
    userinfo, at, host = authority.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        authority = f"{user}{colon and ':' + MASK}@{host}"
    rest, hash_, fragment = url[match.end() :].partition("#")
    path, mark, query = rest.partition("?")
    if mark:
        query = _PARAM.sub(_mask_param, "&" + query)[1:]
    return f"{match['scheme']}{authority}{path}{mark}{query}{hash_}{fragment}"


def redact(text: str) -> str:
    """`text` with every URL in it passed through `redact_url`."""
    if "://" not in text:
        return text
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


def _mask_param(match: re.Match[str]) -> str:
    if match["name"].lower() not in SECRET_PARAMS:
        return match.group(0)
    return f"{match['lead']}{match['name']}={MASK}"
