"""`device run`'s options: one list for the command line and the config file (TOML or YAML).

A config file takes the same names as the flags (`top_k` or `top-k`); flags given on the command line
win over the file, and the file over the defaults. Relative paths in the file are relative to its folder.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from device.daemon import collect_config, event_config
from device.daemon.collect_config import CollectSettings
from device.daemon.event_config import EventSettings
from device.errors import UserError, one_line
from device.hostport import HostPortError, parse_host_port
from device.metadata import labels as labels_txt
from device.options import check_classifier_options, check_number

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Raspberry Pi OS Bookworm has 3.11; older systems use the tomli backport
    import tomli as tomllib


class ConfigError(UserError):
    """A config file or option value that cannot be used."""


@dataclass(frozen=True)
class Settings:
    """Everything `device run` needs to know, after the config file and the flags are merged."""

    model: Path
    labels: Path | None = None
    source: str | None = None  # None: picamera2 when installed, else opencv:0
    source_fps: float = 0.0
    loop: bool = False
    threads: int | None = None
    top_k: int = 3
    threshold: float = 0.0
    allow: tuple[str, ...] | None = None
    deny: tuple[str, ...] | None = None
    smooth: int = 0
    ema: float | None = None
    jsonl: str | None = None
    jsonl_max_mb: float = 10.0
    on_change: bool = False
    http: str = "127.0.0.1:8080"
    stream_fps: float = 10.0
    max_frame_gap: float = 30.0
    data_dir: Path | None = None  # where features keep files on the device (docs/architecture.md); None: none
    events: EventSettings = field(default_factory=EventSettings)  # MQTT, Home Assistant, webhook, regions
    collect: CollectSettings = field(default_factory=CollectSettings)  # the --collect* options

    def __post_init__(self) -> None:
        """Every value within its range (what the host's files and folders say is checked by `resolve`)."""
        if self.smooth and self.ema is not None:
            raise ConfigError("--smooth and --ema are two ways to smooth: pick one")
        check_number("--ema", self.ema, above=0, maximum=1)
        for name in ("smooth", "source_fps"):
            check_number(f"--{name.replace('_', '-')}", getattr(self, name), minimum=0)
        for name in ("stream_fps", "max_frame_gap", "jsonl_max_mb"):
            check_number(f"--{name.replace('_', '-')}", getattr(self, name), above=0)
        check_classifier_options(self.top_k, self.threshold, self.threads)
        if self.http != "off":
            http_address(self.http)

    @property
    def http_address(self) -> tuple[str, int] | None:
        return None if self.http == "off" else http_address(self.http)


def http_address(text: str) -> tuple[str, int]:
    """--http's HOST:PORT (port 0: any free port); a port must be given."""
    try:
        host, port = parse_host_port(text, -1, any_port=True)
    except HostPortError as error:
        raise ConfigError(f"--http {text}: {error} (expected HOST:PORT, as in 127.0.0.1:8080, or off)") from None
    if port < 0:
        raise ConfigError(f"--http {text}: expected HOST:PORT, as in 127.0.0.1:8080 (or off)")
    return host, port


def check_data_dir(path: Path) -> None:
    """The data directory must exist and be writable: the deploy creates it, outside the releases."""
    if not path.is_dir():
        raise ConfigError(f"--data-dir {path}: not a directory" if path.exists() else
                          f"--data-dir {path}: no such directory (create it, writable by the daemon's user)")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"--data-dir {path}: not writable by this user")


def add_options(parser: argparse.ArgumentParser) -> None:
    """The flags of `device run`; every default is None so that a flag given can be told from one not given."""
    parser.add_argument("--model", type=Path, help="the .tflite model (replacing the file reloads it live)")
    parser.add_argument("--labels", type=Path, help="a labels file, for a model without metadata")
    parser.add_argument("--source", help="picamera2[:N] (default when installed), opencv:N, a video file, "
                                         "an rtsp:// or http:// URL, or folder:DIR (images replayed in a loop)")
    parser.add_argument("--source-fps", type=float, metavar="N",
                        help="frames per second for a folder or video (0: a folder as fast as inference goes)")
    parser.add_argument("--loop", action="store_true", default=None, help="replay a video file when it ends")
    parser.add_argument("--threads", type=int, help="inference threads (default: one per CPU core)")
    parser.add_argument("--top-k", type=int, metavar="K", help="labels per result (default 3)")
    parser.add_argument("--threshold", type=float, metavar="SCORE", help="leave out labels scoring below this")
    parser.add_argument("--allow", action="append", metavar="LABELS", help="only these labels (comma-separated)")
    parser.add_argument("--deny", action="append", metavar="LABELS", help="never these labels (comma-separated)")
    parser.add_argument("--smooth", type=int, metavar="N", help="average the scores of the last N frames")
    parser.add_argument("--ema", type=float, metavar="ALPHA", help="exponential moving average of the scores")
    parser.add_argument("--jsonl", metavar="PATH", help="write results as JSON Lines to PATH (- for stdout)")
    parser.add_argument("--jsonl-max-mb", type=float, metavar="MB",
                        help="start a new --jsonl file beyond this size, keeping one old one as PATH.1 (default 10)")
    parser.add_argument("--on-change", action="store_true", default=None,
                        help="write a result only when the top label changes (to stdout unless --jsonl)")
    parser.add_argument("--http", metavar="HOST:PORT", help="live page and API address (default 127.0.0.1:8080; off)")
    parser.add_argument("--stream-fps", type=float, metavar="N", help="frame rate cap of the live view (default 10)")
    parser.add_argument("--max-frame-gap", type=float, metavar="SECONDS",
                        help="exit with an error after this long without frames (default 30)")
    parser.add_argument("--data-dir", type=Path, metavar="DIR",
                        help="a directory of the daemon's own files, kept across deploys (fab deploy: <root>/data)")
    event_config.add_options(parser)
    collect_config.add_options(parser)
    parser.add_argument("--config", type=Path, metavar="FILE", help="a TOML or YAML file with any of these options")


def resolve(args: argparse.Namespace) -> Settings:
    """Merge the flags given, the config file and the defaults into `Settings`, checked on this host."""
    settings = _settings(args)
    if settings.data_dir is not None:
        check_data_dir(settings.data_dir)
    if settings.collect.enabled:
        settings.collect.samples_folder(settings.data_dir)
    return settings


def check_options(argv: list[str], config: Path | None = None) -> None:
    """Check `device run` options given elsewhere (a deploy inventory's `args` and config file) as the daemon
    will: every value in its range, before any host is touched. The model and the data directory are the
    deploy's to give, and the host's own files (a `--config` in `argv` is one) are the daemon's to check."""
    parser = _FileParser(prog="device run", add_help=False)
    add_options(parser)
    args = parser.parse_args(argv)
    args.config = config
    _settings(args, model=Path("model.tflite"))


def _settings(args: argparse.Namespace, model: Path | None = None) -> Settings:
    merged = _from_file(args.config) if args.config else {}
    merged.update({name: value for name, value in vars(args).items() if value is not None})
    nested = ("events", "collect")  # sub-settings of their own, from the same options
    values = {field.name: merged[field.name] for field in fields(Settings)
              if field.name not in nested and merged.get(field.name) is not None}
    values.setdefault("model", model)
    if values["model"] is None:
        raise ConfigError("no model: give --model FILE (or `model` in the config file)")
    for name in ("allow", "deny"):  # as `device classify` takes them: repeated, comma-separated
        if name in values:
            values[name] = labels_txt.from_options(values[name])
    return Settings(**values, events=EventSettings.from_options(merged), collect=CollectSettings.from_options(merged))


class _FileParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would print usage and exit
        raise ConfigError(message)


def _from_file(path: Path) -> dict[str, Any]:
    """Read a config file and check its values with the same parser as the flags."""
    raw = _read(path)
    parser = _FileParser(prog=str(path), add_help=False)
    add_options(parser)
    known = {action.dest: action for action in parser._actions}
    argv: list[str] = []
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in known or name == "config":
            raise ConfigError(f"config {path}: unknown option {key!r}")
        flag = known[name].option_strings[0]
        if name == "http" and value is False:  # YAML reads a bare `off` as false
            value = "off"
        if known[name].nargs == 0:  # an on/off flag
            if not isinstance(value, bool):
                raise ConfigError(f"config {path}: {key} must be true or false")
            argv += [flag] if value is known[name].const else []  # `ha_discovery = false` means --no-ha-discovery
        elif known[name].nargs == "?" and isinstance(value, bool):  # `collect = true`: on, in its default place
            argv += [flag] if value else []
        elif isinstance(value, list):
            argv += [f"{flag}={item}" for item in value]
        else:
            argv += [f"{flag}={value}"]
    try:
        parsed = parser.parse_args(argv)
    except ConfigError as error:
        raise ConfigError(f"config {path}: {error}") from None
    options = {name: value for name, value in vars(parsed).items() if value is not None}
    return _relative_to(path.parent, options)


def _relative_to(folder: Path, options: dict[str, Any]) -> dict[str, Any]:
    """Anchor the file's relative paths at its own folder, so the file means the same from any working directory."""
    for name in ("model", "labels", "data_dir", *event_config.PATH_OPTIONS):
        if name in options:
            options[name] = folder / options[name]  # an absolute path stays as it is
    if options.get("jsonl", "-") != "-":
        options["jsonl"] = str(folder / options["jsonl"])
    if options.get("collect"):
        options["collect"] = str(folder / options["collect"])
    source = options.get("source")
    if source is not None:
        if source.startswith("folder:"):
            options["source"] = f"folder:{folder / source[len('folder:'):]}"
        elif not (source == "picamera2" or source.startswith(("picamera2:", "opencv:")) or "://" in source):
            options["source"] = str(folder / source)  # a video file
    return options


def _read(path: Path) -> dict[str, Any]:
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(f"config {path}: name it .toml, .yaml or .yml")
    if path.exists() and not path.is_file():  # reading /dev/zero or a FIFO would never end
        raise ConfigError(f"config {path}: not a regular file")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"config {path}: {error.strerror}") from None
    if suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"config {path}: not valid TOML ({one_line(error)})") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"config {path}: not valid YAML ({one_line(error)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: expected option = value pairs at the top level")
    return data
