"""`device agent`: pull signed releases from a web server, S3 bucket or CDN and install them (pull OTA)."""
from __future__ import annotations

import argparse
import socket
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "agent", help="poll a release channel and install new signed releases (pull updates)",
        description="Poll a channel manifest written by `fab publish`, verify its signature against the trusted "
                    "key, and install a new release with the same host-side steps as `fab deploy` (atomic switch, "
                    "health check, automatic rollback). Reports to <root>/agent-state/status.json and, with --mqtt, "
                    "as the retained message bloomkit/<device-id>/release.")
    parser.add_argument("--channel", required=True, metavar="URL",
                        help="the channel manifest, e.g. https://updates.example.com/bloomkit/channels/stable.json")
    parser.add_argument("--trust", required=True, action="append", type=Path, metavar="KEY.pub",
                        help="a public key file from `fab keygen` (repeat to trust several during a key change)")
    parser.add_argument("--root", type=Path, default=Path("/opt/bloomkit"), help="the deploy root (default /opt/bloomkit)")
    parser.add_argument("--device-id", default=socket.gethostname(), help="this device's id (default: the host name)")
    parser.add_argument("--daemon-http", default="127.0.0.1:8080", metavar="HOST:PORT",
                        help="where the daemon answers /healthz (default 127.0.0.1:8080)")
    parser.add_argument("--interval", type=float, default=300.0, help="seconds between polls (default 300)")
    parser.add_argument("--jitter", type=float, default=0.1, help="± share of the interval, random (default 0.1)")
    parser.add_argument("--health-timeout", type=float, default=60.0, help="seconds for a new release to get healthy")
    parser.add_argument("--python", default="python3", help="the host's Python for installing (default python3)")
    parser.add_argument("--mqtt", metavar="URL", help="also report as a retained MQTT message (mqtt://host:port)")
    parser.add_argument("--once", action="store_true", help="check once, print the status as JSON, exit")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import logging
    import os
    import signal
    import sys
    import threading

    from device.agent.agent import Agent, AgentConfig
    from device.agent.manifest import key_id, load_public_key
    from device.agent.mqtt import parse_url
    from device.daemon.config import ConfigError, http_address

    for name in ("interval", "health_timeout"):
        value = getattr(args, name)
        if not value > 0 or value == float("inf"):
            raise ConfigError(f"--{name.replace('_', '-')} {value}: must be a positive number of seconds")
    if not 0 <= args.jitter < 1:
        raise ConfigError(f"--jitter {args.jitter}: must be at least 0 and below 1")
    http_address(args.daemon_http)
    if args.mqtt:
        parse_url(args.mqtt)
    trusted = {}
    for path in args.trust:
        try:
            raw = load_public_key(path.read_text())
        except OSError as error:
            raise ConfigError(f"cannot read the trusted key {path}: {error.strerror}") from None
        trusted[key_id(raw)] = raw
    logging.basicConfig(format="device agent: %(message)s", level=logging.INFO, stream=sys.stderr)
    config = AgentConfig(channel_url=args.channel, trusted=trusted, root=args.root.resolve(),
                         device_id=args.device_id, daemon_http=args.daemon_http, interval=args.interval,
                         jitter=args.jitter, mqtt=args.mqtt, health_timeout=args.health_timeout, python=args.python)
    agent = Agent(config)
    if args.once:
        state = agent.check()
        print(json.dumps(agent.status.as_report()))
        return 1 if state in ("refused", "store-down", "failed", "rolled-back") else 0
    stopping = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stopping.set())
    agent.run(stopping)
    if agent.restart_wanted:      # the same process (pid, supervisor) goes on with the new release's code
        sys.stderr.flush()
        os.execv(agent.launcher, [str(agent.launcher)])
    return 0
