"""The publisher's Ed25519 signing key: made by `fab keygen`, kept on the workstation only (mode 0600,
outside the repository and every release); its public half is what devices trust."""
from __future__ import annotations

import base64
import os
from pathlib import Path

from device.agent.manifest import key_id
from deploy.errors import DeployError

DEFAULT_KEY = Path("~/.config/bloomkit/signing-key").expanduser()
PUBLIC_SUFFIX = ".pub"


class SigningKeyError(DeployError):
    stage = "keys"


def keygen(path: Path = DEFAULT_KEY, *, force: bool = False) -> tuple[Path, str]:
    """Write a new private key to `path` (0600, in a 0700 folder) and its public key beside it; return the
    public key's path and key id. An existing key is never overwritten unless `force`."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(path).expanduser()
    if path.exists() and not force:
        raise SigningKeyError(f"{path} exists: a new key would cut off every device that trusts the old one "
                        "(use --force to replace it on purpose)")
    _refuse_inside_repository(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        os.fchmod(file.fileno(), 0o600)
        file.write(pem)
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    public = path.with_name(path.name + PUBLIC_SUFFIX)
    public.write_text(f"ed25519 {base64.b64encode(raw).decode()} bloomkit-{key_id(raw)}\n")
    return public, key_id(raw)


def signer(path: Path = DEFAULT_KEY):
    """`sign(data) -> (keyid, signature)` with the private key at `path`, refused if others can read it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(path).expanduser()
    try:
        mode = path.stat().st_mode & 0o777
        data = path.read_bytes()
    except FileNotFoundError:
        raise SigningKeyError(f"no signing key at {path}: make one with `fab keygen`") from None
    except OSError as error:
        raise SigningKeyError(f"cannot read the signing key {path}: {error.strerror}") from None
    if mode & 0o077:
        raise SigningKeyError(f"the signing key {path} is readable by others (mode {mode:o}): chmod 600 it")
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise SigningKeyError(f"{path} is not an unencrypted Ed25519 private key as `fab keygen` writes") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} is not an Ed25519 key")
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    keyid = key_id(raw)
    return lambda data: (keyid, private.sign(data))


def _refuse_inside_repository(path: Path) -> None:
    """A private key inside a git checkout is one `git add .` away from being published."""
    for folder in [path.parent.resolve(), *path.parent.resolve().parents]:
        if (folder / ".git").exists():
            raise SigningKeyError(f"{path} is inside the git checkout {folder}: keep the signing key outside any "
                            f"repository (default {DEFAULT_KEY})")
