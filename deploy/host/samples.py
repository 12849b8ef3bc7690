"""The host side of `fab collect`, run with the host's Python (stdlib only, as every script in deploy/host/):

    samples.py list DIR               JSON: {NAME: {".jpg": [size, sha256], ".json": [size, sha256]}} of the whole
                                      samples (a sample is whole once its sidecar is there: the daemon renames it last)
    samples.py send DIR NAME...       those samples' files as a tar stream on stdout (a sample evicted meanwhile
                                      is left out), ended by an empty member named END, so a cut is seen
    samples.py delete DIR NAME...     remove those samples, the sidecar first, so none is ever left half there
"""
import hashlib
import json
import os
import sys
import tarfile

IMAGE, SIDECAR = ".jpg", ".json"
END = ".end"


def sha256(path):
    """device.digest's and install.py's five lines again: this script is sent inline (`python -c`) to any
    host Python, release or none, so it can import neither the device package nor a sibling script."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def whole(folder):
    try:
        entries = set(os.listdir(folder))
    except OSError:  # no samples folder yet: nothing collected
        return []
    return sorted(name[:-len(SIDECAR)] for name in entries if name.endswith(SIDECAR) and not name.startswith(".")
                  and name[:-len(SIDECAR)] + IMAGE in entries)


def listing(folder):
    found = {}
    for name in whole(folder):
        try:
            found[name] = dict((suffix, [os.path.getsize(os.path.join(folder, name + suffix)),
                                         sha256(os.path.join(folder, name + suffix))]) for suffix in (IMAGE, SIDECAR))
        except OSError:  # evicted by the daemon while listed
            pass
    return found


def send(folder, names):
    out = getattr(sys.stdout, "buffer", sys.stdout)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.USTAR_FORMAT) as tar:  # no PAX headers
        for name in names:
            for suffix in (IMAGE, SIDECAR):
                try:
                    tar.add(os.path.join(folder, name + suffix), arcname=name + suffix)
                except OSError:
                    break
        tar.addfile(tarfile.TarInfo(END))


def delete(folder, names):
    for name in names:
        for suffix in (SIDECAR, IMAGE):
            try:
                os.unlink(os.path.join(folder, name + suffix))
            except FileNotFoundError:
                pass


def main(argv):
    action, folder, names = argv[0], argv[1], argv[2:]
    if any(os.sep in name or name.startswith(".") for name in names):
        sys.exit("samples.py: a sample name has no slash and no leading dot")
    if action == "list":
        print(json.dumps(listing(folder)))
    elif action == "send":
        send(folder, names)
    elif action == "delete":
        delete(folder, names)
    else:
        sys.exit("samples.py: unknown action %r" % action)


if __name__ == "__main__":
    main(sys.argv[1:])
