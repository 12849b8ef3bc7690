"""Wait until the daemon's /healthz says ok and serves the release's model; print one JSON line.

Run on the host (the daemon listens on localhost). Exit 0 when healthy with the expected model sha256,
1 when the timeout passes (or the daemon's process is gone) first. Stdlib only.
"""
import argparse
import json
import sys
import time
import urllib.error
import urllib.request

from service import running_pid  # shipped beside this script

POLL_S = 0.1   # a start or reload is seen within 0.1 s of happening; a probe is one local HTTP request


def probe(url):
    """(healthz body or None, reason it is not healthy or None)."""
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            body = json.loads(response.read().decode())
    except urllib.error.HTTPError as error:
        try:
            body = json.loads(error.read().decode())
        except ValueError:
            return None, "HTTP %d" % error.code
    except (OSError, ValueError) as error:
        return None, "no answer on %s (%s)" % (url, getattr(error, "reason", error))
    if body.get("status") != "ok":
        return body, "unhealthy: %s" % (body.get("reason") or body.get("status"))
    return body, None


def expected_sha256(manifest):
    with open(manifest) as file:
        return json.load(file)["model"]["sha256"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--manifest", help="the release's manifest.json: the model sha256 to expect")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (0: ask once)")
    parser.add_argument("--root", help="the deploy root of a pidfile-managed daemon: give up early when it exits")
    args = parser.parse_args(argv)
    expected = expected_sha256(args.manifest) if args.manifest else None
    deadline = time.monotonic() + args.timeout
    while True:
        body, reason = probe(args.url)
        rejected = (body or {}).get("rejected_model") or {}
        if expected is not None and rejected.get("sha256") == expected:  # no use waiting: it said so at once
            reason = "the daemon cannot load the new model (%s)" % rejected.get("reason")
            break
        if reason is None and expected is not None:
            serving = (body.get("model") or {}).get("sha256")
            if serving != expected:
                reason = "serves model %s, expected %s" % (str(serving)[:12], expected[:12])
        if reason is None or time.monotonic() >= deadline:
            break
        if args.root and running_pid(args.root) is None:
            reason = "daemon exited (%s)" % reason
            break
        time.sleep(POLL_S)
    print(json.dumps({"healthy": reason is None, "reason": reason, "healthz": body}))
    return 0 if reason is None else 1


if __name__ == "__main__":
    sys.exit(main())
