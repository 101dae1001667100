"""A guard that fails any test trying to reach an address other than loopback."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def is_loopback(address: Any) -> bool:
    if not isinstance(address, tuple):
        return True  # AF_UNIX paths are local
    host = address[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost would need DNS: not local


def guarded_connect(self: socket.socket, address: Any) -> None:
    if not is_loopback(address):
        raise ConnectionRefusedError(f"test tried to reach non-loopback address {address!r}")
    _real_connect(self, address)


def guarded_connect_ex(self: socket.socket, address: Any) -> int:
    if not is_loopback(address):
        raise ConnectionRefusedError(f"test tried to reach non-loopback address {address!r}")
    return _real_connect_ex(self, address)
