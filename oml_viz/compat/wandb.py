"""wandb internals: the SDK's netrc reader (an internal module that has moved between releases).

Example:
    >>> isinstance(netrc_has_key("https://api.wandb.ai.invalid"), bool)
    True
"""
from __future__ import annotations

import netrc
from urllib.parse import urlparse

NETRC_MODULE = "wandb.sdk.lib.wbauth.wbnetrc"


def netrc_reader() -> object:
    """``read_netrc_auth(host=...)`` from the W&B SDK (raises ImportError when it moved)."""
    from wandb.sdk.lib.wbauth.wbnetrc import read_netrc_auth

    return read_netrc_auth


def netrc_has_key(host: str) -> bool:
    """A netrc entry for ``host``: the SDK's reader, else the standard ``netrc`` file."""
    try:
        return bool(netrc_reader()(host=host))  # type: ignore[operator]
    except Exception:  # noqa: BLE001 -- another SDK layout or an unreadable file: use the standard netrc
        try:
            return netrc.netrc().authenticators(urlparse(host).hostname or host) is not None
        except (OSError, netrc.NetrcParseError):
            return False
