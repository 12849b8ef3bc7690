"""A real Mosquitto broker on a free loopback port (anonymous, with a password file, or TLS), a recording
paho subscriber, and a throwaway CA made with `cryptography` for the TLS broker: for the events tests and
benchmarks.
"""
from __future__ import annotations

import datetime
import getpass
import json
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho

from testkit.processes import free_port

BINARY = shutil.which("mosquitto") or "/usr/sbin/mosquitto"  # /usr/sbin is not on every user's PATH


class Mosquitto:
    """`mosquitto -c CONF` in a subprocess; `restart()` keeps the port, `kill()` and `start()` work any time."""

    def __init__(self, folder: Path, *, password: tuple[str, str] | None = None, tls: "TestCa | None" = None,
                 require_certificate: bool = False, persistent: bool = False, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        persistence = ["persistence true", f"persistence_location {folder}/"] if persistent else ["persistence false"]
        lines = [f"listener {self.port} 127.0.0.1", *persistence, "log_dest stderr",
                 "log_type error", "log_type warning"]
        if getpass.getuser() == "root":  # else it drops to the `mosquitto` user, who cannot read our tmp files
            lines.append("user root")
        if password:
            passwords = folder / "passwords"
            passwords.write_text("")
            subprocess.run(["mosquitto_passwd", "-b", str(passwords), *password], check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        if tls:
            lines += [f"cafile {tls.ca_pem}", f"certfile {tls.server_pem}", f"keyfile {tls.server_key}",
                      f"require_certificate {'true' if require_certificate else 'false'}"]
        self.config = folder / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen([BINARY, "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"mosquitto exited: {self.process.stderr.read()}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(5)

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


@dataclass
class Recorder:
    """A real paho subscriber that keeps every message it receives, in order, with its arrival time."""

    port: int
    topics: tuple[str, ...] = ("#",)
    tls: "TestCa | None" = None
    credentials: tuple[str, str] | None = None
    session: str | None = None  # a client id for a persistent session (the broker queues while it is away)
    messages: list[tuple[str, bytes, bool, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=self.session or "",
                                  clean_session=self.session is None)
        self.client.reconnect_delay_set(1, 2)
        if self.tls:
            self.client.tls_set(ca_certs=str(self.tls.ca_pem))
        if self.credentials:
            self.client.username_pw_set(*self.credentials)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in self.topics])
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "the recorder did not subscribe"

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload, bool(message.retain), time.time()))

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [payload for t, payload, _, _ in self.messages if t == topic]

    def json_on(self, topic: str) -> list[dict]:
        return [json.loads(payload) for payload in self.on(topic) if payload]

    def distinct_json_on(self, topic: str) -> list[dict]:
        """Each message once, in order of first arrival. QoS 1 is at least once: a message whose acknowledgement
        a stopping broker had not yet read comes again, the same bytes, after its restart."""
        return [json.loads(payload) for payload in dict.fromkeys(self.on(topic)) if payload]

    def last(self, topic: str) -> bytes | None:
        found = self.on(topic)
        return found[-1] if found else None

    def wait(self, condition, timeout: float = 30.0, what: str = "a message"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.05)
        with self._lock:
            topics = sorted({t for t, *_ in self.messages})
        raise AssertionError(f"timed out waiting for {what}; topics seen: {topics}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def retained(port: int, topic_filter: str, wait_s: float = 1.0, tls: "TestCa | None" = None,
             credentials: tuple[str, str] | None = None) -> dict[str, bytes]:
    """What the broker holds retained under a filter, as a new subscriber sees it (empty payloads left out)."""
    recorder = Recorder(port, (topic_filter,), tls=tls, credentials=credentials)
    time.sleep(wait_s)
    recorder.close()
    return {topic: payload for topic, payload, was_retained, _ in recorder.messages if was_retained and payload}


class TestCa:
    """A CA made for one test session, and a server certificate for 127.0.0.1 / localhost it signed."""

    __test__ = False

    def __init__(self, folder: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
        import ipaddress

        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bloomkit test CA")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
              .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
              .not_valid_after(now + datetime.timedelta(days=2))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                           content_commitment=False, key_encipherment=False, data_encipherment=False,
                                           key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
              .sign(ca_key, hashes.SHA256()))

        def issue(common_name: str, names: list, server: bool) -> tuple[bytes, bytes]:
            key = ec.generate_private_key(ec.SECP256R1())
            builder = (x509.CertificateBuilder()
                       .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
                       .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                       .not_valid_before(now - datetime.timedelta(hours=1))
                       .not_valid_after(now + datetime.timedelta(days=2))
                       .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH if server
                                                             else x509.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
            if names:
                builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
            certificate = builder.sign(ca_key, hashes.SHA256())
            return (certificate.public_bytes(serialization.Encoding.PEM),
                    key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))

        self.ca_pem = folder / "ca.pem"
        self.ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        server_pem, server_key = issue("127.0.0.1", [x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))], True)
        client_pem, client_key = issue("bloomkit-test-client", [], False)
        self.server_pem, self.server_key = folder / "server.pem", folder / "server.key"
        self.client_pem, self.client_key = folder / "client.pem", folder / "client.key"
        for path, data in ((self.server_pem, server_pem), (self.server_key, server_key),
                           (self.client_pem, client_pem), (self.client_key, client_key)):
            path.write_bytes(data)
            path.chmod(0o600)
