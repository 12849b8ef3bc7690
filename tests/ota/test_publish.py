"""`fab keygen` and `fab publish` into a local store: the signing key's safety, content-addressed files, the
signed channel manifest, model-only releases that send only what changed, and rollout changes."""
from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from deploy.build import sha256_file
from deploy.inventory import Host
from deploy.keys import SigningKeyError, keygen, signer
from deploy.publish import RolloutRefused, change_rollout, parse_target, publish_release, read_channel
from deploy.stores import channel_key, object_key, open_store
from device.agent import fetch
from device.agent.manifest import ManifestError, verify
from tests.ota.conftest import THIS_TARGET


def test_keygen_writes_a_private_key_only_its_owner_reads_and_refuses_to_overwrite_it(tmp_path):
    public, keyid = keygen(tmp_path / "keys" / "signing-key")
    private = tmp_path / "keys" / "signing-key"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(private.parent.stat().st_mode) == 0o700
    assert public.read_text().startswith("ed25519 ") and keyid in public.read_text()
    with pytest.raises(SigningKeyError, match="exists"):
        keygen(private)
    os.chmod(private, 0o644)
    with pytest.raises(SigningKeyError, match="readable by others"):
        signer(private)


def test_keygen_refuses_a_key_inside_a_git_checkout(tmp_path):
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    with pytest.raises(SigningKeyError, match="inside the git checkout"):
        keygen(tmp_path / "repo" / "keys" / "signing-key")
    assert not (tmp_path / "repo" / "keys" / "signing-key").exists()


def publish(store_url, model, builder, key, **options):
    store = open_store(str(store_url))
    try:
        return publish_release(store, signer(key), model=model, channel="stable", builder=builder,
                               targets=[parse_target(THIS_TARGET)], daemon_host=Host("published"),
                               say=lambda _: None, **options)
    finally:
        store.close()


def channel_file(root: Path) -> bytes:
    return (root / channel_key("stable")).read_bytes()


def test_a_release_is_stored_by_sha256_under_a_signed_channel_manifest(tmp_path, models, builder, signing_key,
                                                                       trusted):
    store = tmp_path / "store"
    first = publish(store, models.first, builder, signing_key, percent=10)
    channel = verify(channel_file(store), trusted)
    assert (channel.release, channel.version, channel.rollout) == (1, first.version, {"percent": 10, "halted": False})
    assert channel.model_sha256 == sha256_file(models.first)
    (target,) = channel.payload["targets"]
    for part in ("release", "wheelhouse"):
        for name, entry in target[part].items():
            assert sha256_file(store / object_key(entry["sha256"])) == entry["sha256"], name
    assert "model.tflite" in target["release"] and "requirements.txt" in target["wheelhouse"]
    assert not list(store.rglob("*signing-key*"))               # the private key goes nowhere near a store

    # A model-only release: only the model and the release's own manifest files are new in the store.
    before = {p.name for p in (store / "objects").iterdir()}
    second = publish(store, models.second, builder, signing_key)
    added = {p.name for p in (store / "objects").iterdir()} - before
    channel = verify(channel_file(store), trusted)
    release_files = channel.payload["targets"][0]["release"]
    assert added == {release_files[n]["sha256"] for n in ("model.tflite", "manifest.json", "SHA256SUMS")}
    assert (second.release, second.uploaded_files) == (2, 3)
    assert second.uploaded_bytes < os.path.getsize(models.second) + 10_000
    assert channel.release == 2 and channel.payload["serial"] == 2 and channel.version > first.version


def test_a_rollout_change_rewrites_only_the_channel_manifest(tmp_path, models, builder, signing_key, trusted):
    store_dir = tmp_path / "store"
    publish(store_dir, models.first, builder, signing_key, percent=10)
    objects = sorted((store_dir / "objects").iterdir())
    store = open_store(str(store_dir))
    sign = signer(signing_key)
    change_rollout(store, sign, channel="stable", percent=50, halt=False, max_failures=0, reports=lambda: [],
                   say=lambda _: None)
    channel = verify(channel_file(store_dir), trusted)
    assert (channel.release, channel.payload["serial"], channel.rollout["percent"]) == (1, 2, 50)
    assert sorted((store_dir / "objects").iterdir()) == objects
    change_rollout(store, sign, channel="stable", percent=None, halt=True, max_failures=0, reports=None,
                   say=lambda _: None)
    assert verify(channel_file(store_dir), trusted).rollout == {"percent": 50, "halted": True}
    # Widening without reading reports is refused; with reports naming failed devices of the wave, too.
    with pytest.raises(RolloutRefused, match="--mqtt"):
        change_rollout(store, sign, channel="stable", percent=100, halt=False, max_failures=0, reports=None)
    from device.agent.rollout import bucket
    in_wave = [d for d in (f"pi-{i}" for i in range(100)) if bucket(d) < 50][:3]
    reports = [{"device": d, "release": None, "failed_release": 1} for d in in_wave[:1]] + \
              [{"device": d, "release": 1, "failed_release": None} for d in in_wave[1:]]
    with pytest.raises(RolloutRefused, match=f"failed on 1 of 3 .*{in_wave[0]}"):
        change_rollout(store, sign, channel="stable", percent=100, halt=False, max_failures=0, reports=lambda: reports)
    change_rollout(store, sign, channel="stable", percent=100, halt=False, max_failures=0.5, reports=lambda: reports,
                   say=lambda _: None)
    assert verify(channel_file(store_dir), trusted).rollout == {"percent": 100, "halted": False}
    assert read_channel(store, "stable")["serial"] == 4      # the refused changes wrote nothing


def test_a_manifest_signed_by_another_key_or_altered_is_refused(tmp_path, models, builder, signing_key, trusted):
    store = tmp_path / "store"
    publish(store, models.first, builder, signing_key)
    data = json.loads(channel_file(store))
    other_key = tmp_path / "other"
    keygen(other_key)
    publish(tmp_path / "other-store", models.first, builder, other_key)
    with pytest.raises(ManifestError, match="unknown key"):
        verify(channel_file(tmp_path / "other-store"), trusted)
    data["payload"] = data["payload"].replace('"percent": 100', '"percent": 99')
    with pytest.raises(ManifestError, match="bad signature"):
        verify(json.dumps(data).encode(), trusted)
    with pytest.raises(ManifestError, match="expired"):
        verify(channel_file(store), trusted, now=verify(channel_file(store), trusted).expires + 1)


def a_second_manifest_in_the_same_second_is_seen(store, channel_url: str, signing_key: Path, trusted) -> None:
    """Re-sign the channel, poll it as the agent does, re-sign it at the same size within the same second (the
    pair is tried again at the next second if a boundary splits it): the agent's next conditional GET must
    get the second manifest, not a 304 for validators that a whole-second mtime and the size left unchanged."""
    def widen(percent: int) -> None:
        change_rollout(store, signer(signing_key), channel="stable", percent=percent, halt=False, max_failures=0,
                       reports=lambda: [], say=lambda _: None)
    for percent in (10, 30, 50):               # serials 2…7: the same number of digits throughout
        time.sleep(1 - time.time() % 1)        # at the start of a second, so the pair fits in it
        began = time.time()
        widen(percent)
        seen = fetch.get_channel(channel_url, None, None)
        widen(percent + 10)
        if int(time.time()) == int(began):
            break
    else:
        pytest.fail("no two re-signs fitted in one second")
    again = fetch.get_channel(channel_url, seen.etag, seen.last_modified)
    assert again.data is not None, f"304 for a changed manifest (ETag {seen.etag}, Last-Modified {seen.last_modified})"
    assert len(again.data) == len(seen.data)
    assert verify(again.data, trusted).rollout["percent"] == percent + 10
    assert fetch.get_channel(channel_url, again.etag, again.last_modified).data is None     # unchanged: 304 again


def test_a_manifest_re_signed_within_the_same_second_at_the_same_size_is_not_missed_by_the_agent(
        tmp_path, nginx, models, builder, signing_key, trusted):
    store_dir = tmp_path / "store"
    publish(store_dir, models.first, builder, signing_key, percent=0)
    store = open_store(str(store_dir))
    try:
        a_second_manifest_in_the_same_second_is_seen(store, f"{nginx(store_dir).url}/{channel_key('stable')}",
                                                     signing_key, trusted)
    finally:
        store.close()
