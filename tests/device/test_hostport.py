"""HOST:PORT as users type it: the one parser behind `device run --http`, the inventory and `fab -H`."""
from __future__ import annotations

import pytest

from device.errors import UserError
from device.hostport import HostPortError, parse_host_port


@pytest.mark.parametrize("text, expected", [
    ("pi", ("pi", 22)),
    ("pi.local:2222", ("pi.local", 2222)),
    ("192.168.1.5:65535", ("192.168.1.5", 65535)),
    ("[::1]:2222", ("::1", 2222)),
    ("[fe80::1%eth0]:22", ("fe80::1%eth0", 22)),
    ("[::1]", ("::1", 22)),
    ("::1", ("::1", 22)),                    # a bare IPv6 address has no port
    ("pi:1", ("pi", 1)),
])
def test_addresses(text, expected):
    assert parse_host_port(text, 22) == expected


@pytest.mark.parametrize("text, message", [
    ("pi:0", "port must be from 1 to 65535, not 0"),
    ("pi:-1", "port must be a number from 1 to 65535, not '-1'"),
    ("pi:65536", "port must be from 1 to 65535, not 65536"),
    ("pi:abc", "port must be a number from 1 to 65535, not 'abc'"),
    ("pi:", "port must be a number"),
    (":22", "no host before the port"),
    ("[pi]:22", "brackets are for IPv6 addresses"),
    ("[::1]2222", r"expected \[IPv6\]:PORT"),
    ("pi pi:22", "is not a host name or address"),
    ("", "expected HOST or HOST:PORT"),
    ("fe80::zz", "is not an IPv6 address"),
])
def test_mistakes_are_one_line_user_errors(text, message):
    with pytest.raises(HostPortError, match=message) as caught:
        parse_host_port(text, 22)
    assert isinstance(caught.value, UserError) and "\n" not in str(caught.value)


def test_port_zero_only_where_it_means_any_free_port():
    assert parse_host_port("127.0.0.1:0", 8080, any_port=True) == ("127.0.0.1", 0)
    with pytest.raises(HostPortError):
        parse_host_port("127.0.0.1:0", 8080)
