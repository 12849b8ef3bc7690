"""The signed channel manifest: one small JSON file per channel, the only file in a store that ever changes.

    {"payload": "<JSON text>", "signatures": [{"keyid": "<16 hex>", "sig": "<base64 Ed25519>"}]}

The signature covers the payload's exact bytes (no canonical re-encoding to get wrong); the payload says
which release is current, its number (monotonic per channel), when the manifest expires, the rollout, and
for each target (CPU, Python, glibc) the files of the release by sha256 and size. `fab publish` writes it
with `encode`; the device reads it with `verify`. One format module, used by both sides.
"""
from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from device.errors import UserError

FORMAT = 1
RELEASE_FILES = "release"       # a target's files that make up releases/<version>/
WHEELHOUSE = "wheelhouse"       # a target's dependency wheels (only fetched when the device lacks their venv)


class ManifestError(UserError):
    """A channel manifest the device must not act on: unsigned, tampered, expired, replayed, malformed."""


def key_id(public_key: bytes) -> str:
    """A short name for a raw 32-byte Ed25519 public key: the first 16 hex digits of its sha256."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def load_public_key(text: str) -> bytes:
    """A trusted key as `fab keygen` exports it: one line `ed25519 <base64 of the 32 raw bytes> [comment]`."""
    parts = text.split()
    if len(parts) < 2 or parts[0] != "ed25519":
        raise ManifestError("not a bloomkit public key: expected a line 'ed25519 BASE64' as `fab keygen` writes")
    try:
        raw = base64.b64decode(parts[1], validate=True)
    except ValueError:
        raise ManifestError("the public key's base64 is damaged") from None
    if len(raw) != 32:
        raise ManifestError(f"an Ed25519 public key is 32 bytes, this one {len(raw)}")
    return raw


def encode(payload: dict, sign: Any) -> bytes:
    """The manifest file for `payload`, signed by `sign(bytes) -> (keyid, signature bytes)`."""
    text = json.dumps(payload, sort_keys=True, indent=1)
    keyid, signature = sign(text.encode())
    envelope = {"payload": text, "signatures": [{"keyid": keyid, "sig": base64.b64encode(signature).decode()}]}
    return (json.dumps(envelope, indent=1) + "\n").encode()


@dataclass(frozen=True)
class Channel:
    """A verified channel manifest's payload, with accessors for what the agent decides on."""

    payload: dict

    @property
    def release(self) -> int:
        return self.payload["release"]

    @property
    def version(self) -> str:
        return self.payload["version"]

    @property
    def name(self) -> str:
        return self.payload["channel"]

    @property
    def expires(self) -> float:
        return self.payload["expires"]

    @property
    def rollout(self) -> dict:
        """{"percent": 0-100, "halted": bool}."""
        return self.payload["rollout"]

    @property
    def model_sha256(self) -> str:
        return self.payload["model"]["sha256"]

    def target(self, machine: str, python: tuple[int, int], glibc: tuple[int, int]) -> dict | None:
        """The release built for this device's CPU and Python whose glibc the device has, newest glibc first."""
        fitting = [t for t in self.payload["targets"]
                   if t["machine"] == machine and tuple(t["python"]) == tuple(python)
                   and tuple(t["glibc"]) <= tuple(glibc)]
        return max(fitting, key=lambda t: tuple(t["glibc"]), default=None)


def verify(data: bytes, trusted: dict[str, bytes], *, now: float | None = None) -> Channel:
    """Check the manifest's signature against the trusted keys ({keyid: raw key}) and its expiry; return
    the payload. Raises ManifestError saying why it is refused."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        envelope = json.loads(data)
        text = envelope["payload"]
        signatures = envelope["signatures"]
        if not isinstance(text, str) or not isinstance(signatures, list):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise ManifestError("the channel manifest is not a signed bloomkit manifest (damaged or truncated?)") from None
    known = [s for s in signatures if isinstance(s, dict) and s.get("keyid") in trusted]
    if not known:
        ids = ", ".join(str(s.get("keyid")) for s in signatures if isinstance(s, dict)) or "none"
        raise ManifestError(f"signed by an unknown key ({ids}); this device trusts {', '.join(trusted)}")
    for signature in known:
        try:
            Ed25519PublicKey.from_public_bytes(trusted[signature["keyid"]]).verify(
                base64.b64decode(signature["sig"]), text.encode())
            break
        except (InvalidSignature, ValueError, TypeError):
            continue
    else:
        raise ManifestError(f"bad signature for key {known[0]['keyid']}: the manifest was altered or forged")
    payload = json.loads(text)
    if payload.get("format") != FORMAT:
        raise ManifestError(f"manifest format {payload.get('format')} is not {FORMAT}: update the agent first")
    channel = Channel(payload)
    now = time.time() if now is None else now
    if channel.expires <= now:
        expired = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(channel.expires))
        raise ManifestError(f"the channel manifest expired at {expired}: the publisher must re-sign it "
                            "(`fab publish` again); an old manifest may be a replay")
    return channel
