"""The same publish into each kind of store: an S3-compatible server on loopback (moto's standalone server:
real HTTP, S3's wire protocol) and a real OpenSSH server over SFTP; what lands there is byte for byte what
the local store holds, and a second publish sends only what is new."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.keys import signer
from deploy.publish import parse_target, publish_release
from deploy.inventory import Host
from deploy.stores import StoreError, channel_key, open_store
from device.agent.manifest import verify
from tests.conftest import free_port
from tests.ota.conftest import THIS_TARGET
from tests.ota.test_publish import a_second_manifest_in_the_same_second_is_seen
from testkit.webservers import wait_for_port


def publish_to(store, model, builder, key):
    return publish_release(store, signer(key), model=model, channel="stable", builder=builder,
                           targets=[parse_target(THIS_TARGET)], daemon_host=Host("published"), say=lambda _: None)


@pytest.fixture
def s3_server(tmp_path, monkeypatch):
    moto = Path(sys.executable).parent / "moto_server"
    port = free_port()
    process = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                               stderr=open(tmp_path / "moto.log", "wb"))
    try:
        wait_for_port(port, process, "moto_server")
        for name, value in {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
                            "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(name, value)
        import boto3
        boto3.client("s3").create_bucket(Bucket="fleet")
        yield port
    finally:
        process.terminate()
        process.wait()


def test_publish_to_an_s3_bucket(s3_server, models, builder, signing_key, trusted):
    import boto3

    store = open_store("s3://fleet/bloomkit")
    first = publish_to(store, models.first, builder, signing_key)
    second = publish_to(store, models.second, builder, signing_key)
    store.close()
    client = boto3.client("s3")
    channel = verify(client.get_object(Bucket="fleet", Key="bloomkit/" + channel_key("stable"))["Body"].read(), trusted)
    assert channel.release == 2 and first.uploaded_files > 10 and second.uploaded_files == 3
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="fleet", MaxKeys=1000)["Contents"]}
    for entry in channel.payload["targets"][0]["release"].values():
        assert f"bloomkit/objects/{entry['sha256']}" in keys
    head = client.head_object(Bucket="fleet", Key="bloomkit/" + channel_key("stable"))
    assert head["CacheControl"] == "no-cache"


def test_an_unreachable_s3_store_is_one_line(monkeypatch, models, builder, signing_key):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    store = open_store("s3://fleet/bloomkit")
    with pytest.raises(StoreError, match="s3://fleet") as raised:
        publish_to(store, models.first, builder, signing_key)
    assert "\n" not in str(raised.value)


def test_publish_over_sftp_with_strict_host_keys(lab, models, builder, signing_key, trusted, tmp_path, nginx):
    server = lab.start_server("web")
    host = lab.host("web", server)
    root = tmp_path / "srv" / "bloomkit"
    url = f"sftp://{host.user}@web:{server.port}{root}"
    opener = lambda name, **ssh: Host(name, hostname="127.0.0.1", identity=host.identity,  # noqa: E731
                                      known_hosts=host.known_hosts, **{k: v for k, v in ssh.items() if v})
    store = open_store(url, open_host=opener)
    try:
        publish_to(store, models.first, builder, signing_key)
        assert publish_to(store, models.second, builder, signing_key).uploaded_files == 3
    finally:
        store.close()
    assert verify((root / channel_key("stable")).read_bytes(), trusted).release == 2
    assert not list(root.rglob("*.tmp"))
    # The web server on the SFTP host serves what was written there: a quick second re-sign is not missed.
    store = open_store(url, open_host=opener)
    try:
        a_second_manifest_in_the_same_second_is_seen(store, f"{nginx(root).url}/{channel_key('stable')}",
                                                     signing_key, trusted)
    finally:
        store.close()
    # A host whose key is not known is refused, not trusted on first sight.
    stranger = lab.start_server("stranger", trusted=False)
    from deploy.errors import HostKeyError
    with pytest.raises(HostKeyError, match="unknown host key"):
        open_store(f"sftp://{host.user}@web:{stranger.port}{root}", open_host=opener)
