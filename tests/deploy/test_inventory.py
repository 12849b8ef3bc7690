"""The inventory file: defaults, per-host settings, groups, paths relative to the file, clear errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from deploy.errors import InventoryError
from deploy.inventory import load_inventory

REPO = Path(__file__).resolve().parents[2]

FLEET = """
defaults:
  user: pi
  root: /opt/bloomkit
  known_hosts: keys/known_hosts
  daemon: {http: "127.0.0.1:8080", source: "picamera2", args: ["--top-k", 5]}
hosts:
  greenhouse-1:
    hostname: 192.168.1.21
    daemon: {source: "opencv:0"}
  greenhouse-2: {port: 2222, user: ops, daemon: {http: "0.0.0.0:9000", config: device.toml}}
  lab-pi:
groups:
  greenhouse: [greenhouse-1, greenhouse-2]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    (tmp_path / "device.toml").write_text("top_k = 2\n")
    return path


def test_defaults_merge_under_host_settings_and_daemon_options(tmp_path):
    inventory = load_inventory(write(tmp_path, FLEET))
    one, two, lab = inventory.select()
    assert (one.name, one.hostname, one.user, one.port) == ("greenhouse-1", "192.168.1.21", "pi", None)
    assert one.daemon.source == "opencv:0" and one.daemon.http == "127.0.0.1:8080"
    assert one.daemon.args == ("--top-k", "5")
    assert (two.user, two.port, two.daemon.port, two.daemon.source) == ("ops", 2222, 9000, "picamera2")
    assert two.daemon.config == tmp_path / "device.toml"
    assert one.known_hosts == tmp_path / "keys" / "known_hosts"
    assert lab.hostname is None and lab.root == "/opt/bloomkit"  # the name, resolved through ssh_config


def test_groups_select_their_hosts_in_order(tmp_path):
    inventory = load_inventory(write(tmp_path, FLEET))
    assert [h.name for h in inventory.select("greenhouse")] == ["greenhouse-1", "greenhouse-2"]
    with pytest.raises(InventoryError, match="no group 'kitchen'.*greenhouse"):
        inventory.select("kitchen")


@pytest.mark.parametrize("text, message", [
    ("hosts: {a: {colour: red}}", "host a: unknown setting 'colour'"),
    ("hosts: {a: {daemon: {fps: 3}}}", "host a daemon: unknown setting 'fps'"),
    ("hosts: {a: {daemon: {http: localhost}}}", "HOST:PORT"),
    ("hosts: {a: {service: upstart}}", "service must be one of"),
    ("hosts: {a: {root: opt/bloomkit}}", "root must be an absolute path"),
    ("hosts: {a: }\ngroups: {g: [a, b]}", "group 'g' names unknown hosts: b"),
    ("hosts: [a, b", "not valid YAML"),
    ("hosts: [a, b]", "hosts must be a mapping"),
    # The red team's inventories: each refused in one line naming the key, before any host is touched.
    ("hosts: {a: {port: abc}}", "host a: port must be a number from 1 to 65535, not 'abc'"),
    ("hosts: {a: {port: [1]}}", r"host a: port must be a number from 1 to 65535, not \[1\]"),
    ("hosts: {a: {port: -1}}", "host a: port must be a number from 1 to 65535, not -1"),
    ("hosts: {a: {port: 70000}}", "host a: port must be from 1 to 65535, not 70000"),
    ("hosts: {a: {port: 0}}", "host a: port must be from 1 to 65535, not 0"),
    ("hosts: {a: {daemon: hello}}", "host a: daemon must be a mapping"),
    ("hosts: {a: {hostname: [a]}}", r"host a: hostname must be a text value, not \['a'\]"),
    ("hosts: {a: {hostname: 'pi:22'}}", "host a: hostname 'pi:22' has a port"),
    ("hosts: {a: {hostname: 'a b'}}", "host a: hostname 'a b'.* is not a host name"),
    ("hosts: {a: {daemon: {args: --top-k 3}}}", "host a: daemon args must be a list of options and values"),
    ("hosts: {a: {daemon: {args: [--top-k, three]}}}", "host a: daemon: argument --top-k: invalid int value"),
    ("hosts: {a: {daemon: {args: [--colour]}}}", "host a: daemon: unrecognized arguments: --colour"),
    ("hosts: {a: {daemon: {config: missing.toml}}}", "host a: daemon config: .*missing.toml not found"),
    ("hosts: {a: {daemon: {http: '127.0.0.1:0'}}}", "host a: daemon http: .*port must be from 1 to 65535"),
    ("hosts: {a: {daemon: {http: '127.0.0.1:99999'}}}", "host a: daemon http: .*port must be from 1 to 65535"),
    ("hosts: {a: {identity: no-such-key}}", "host a: identity file .*no-such-key not found"),
    ("defaults: {daemon: [1]}\nhosts: {a: }", "defaults: daemon must be a mapping"),
])
def test_mistakes_are_one_line_errors(tmp_path, text, message):
    with pytest.raises(InventoryError, match=message) as caught:
        load_inventory(write(tmp_path, text))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("daemon, config, message", [
    ("{args: [--collect-budget-mb, -5]}", None, "host a: daemon: --collect-budget-mb -5: must be positive$"),
    ("{config: device.toml}", "collect_budget_mb = -5\n", "host a: daemon: --collect-budget-mb -5: must be positive$"),
    ("{config: device.toml, args: [--collect-budget-mb, 50]}", "collect_budget_mb = -5\n", None),  # args win
    ("{args: [--collect-uncertain, '0.9:0.2']}", None, "host a: daemon: --collect-uncertain 0.9:0.2: need 0 <= LO"),
    ("{args: [--ema, '2']}", None, "host a: daemon: --ema 2: must be positive and at most 1$"),
    ("{args: [--threads, 0]}", None, "host a: daemon: --threads 0: must be at least 1$"),
    ("{args: [--top-k, 0]}", None, "host a: daemon: --top-k 0: must be at least 1$"),
    ("{config: device.toml}", "threshold = 1.5\n", "host a: daemon: --threshold 1.5: must be at least 0 and at most 1$"),
    ("{args: [--collect]}", None, None),  # the deploy gives the daemon its data directory
    ("{args: [--config, /etc/bloomkit/device.toml]}", None, None),  # a file on the host: the daemon's to read
])
def test_daemon_option_values_are_range_checked_at_load_as_device_run_checks_them(tmp_path, daemon, config, message):
    path = write(tmp_path, f"hosts: {{a: {{daemon: {daemon}}}}}")
    if config is not None:
        (tmp_path / "device.toml").write_text(config)
    if message is None:
        load_inventory(path)
        return
    with pytest.raises(InventoryError, match=message) as caught:
        load_inventory(path)
    assert "\n" not in str(caught.value)


def test_a_daemon_config_file_is_checked_as_the_daemon_reads_it(tmp_path):
    (tmp_path / "bad.toml").write_text("top_k = 'many'\n")
    path = tmp_path / "fleet.yaml"
    path.write_text("hosts: {a: {daemon: {config: bad.toml}}}")
    with pytest.raises(InventoryError, match="host a: daemon: config .*bad.toml: argument --top-k: invalid int"):
        load_inventory(path)


def test_ipv6_hosts_and_ports_as_text(tmp_path):
    host = load_inventory(write(tmp_path, "hosts: {a: {hostname: '::1', port: '2222', "
                                          "daemon: {http: '[::1]:9000'}}}")).hosts["a"]
    assert (host.hostname, host.port, host.daemon.port) == ("::1", 2222, 9000)
    assert host.daemon.healthz_url == "http://[::1]:9000/healthz"


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(InventoryError, match="cannot read inventory"):
        load_inventory(tmp_path / "nope.yaml")


def test_a_host_given_with_fabrics_h_takes_its_entry_or_the_defaults(tmp_path):
    inventory = load_inventory(write(tmp_path, FLEET))
    assert inventory.host("greenhouse-1") == inventory.hosts["greenhouse-1"]
    assert (inventory.host("greenhouse-1", user="root", port=22).user,
            inventory.host("greenhouse-1", user="root", port=22).port) == ("root", 22)
    adhoc = inventory.host("10.0.0.5", user="ops", port=2200)
    assert (adhoc.hostname, adhoc.user, adhoc.port, adhoc.daemon.source) == ("10.0.0.5", "ops", 2200, "picamera2")
    assert adhoc.known_hosts == tmp_path / "keys" / "known_hosts"


def test_the_example_inventory_loads():
    inventory = load_inventory(REPO / "fleet.example.yaml")
    assert inventory.select() and inventory.groups


def test_an_inventory_of_defaults_only_serves_h_but_selects_nothing(tmp_path):
    inventory = load_inventory(write(tmp_path, "defaults: {user: pi}"))
    assert inventory.host("pi5").user == "pi"
    with pytest.raises(InventoryError, match="lists no hosts"):
        inventory.select()


def test_the_user_and_port_typed_on_h_win_over_the_inventory(tmp_path):
    from fabric import Connection

    from deploy.tasks import select_hosts

    path = str(write(tmp_path, "defaults: {user: pi, port: 2222}\nhosts: {listed: {user: pi, port: 2200}}"))

    def selected(host_string: str, *argv: str) -> list[tuple]:
        hosts = select_hosts(Connection(host_string), path, None, argv=["fab", *argv, "deploy"])
        return [(host.name, host.user, host.port) for host in hosts]

    # Equal to Fabric's own defaults (port 22, and the local user here), yet typed: they win.
    local_user = Connection("x").config.user
    assert selected(f"{local_user}@somepi:22", "-H", f"{local_user}@somepi:22") == [("somepi", local_user, 22)]
    assert selected("listed:2022", "--hosts=listed:2022") == [("listed", "pi", 2022)]
    assert selected("root@listed", "-Hroot@listed") == [("listed", "root", 2200)]
    assert selected("somepi", "-H", "somepi") == [("somepi", "pi", 2222)]      # nothing typed: the inventory's


def test_an_h_list_is_one_fleet_run_by_the_call_for_its_first_host(tmp_path):
    from fabric import Connection

    from deploy.tasks import select_hosts

    path = str(write(tmp_path, "defaults: {user: pi}\nhosts: {listed: {port: 2200}}"))
    argv = ["fab", "-H", "a,root@listed:22,c:2022,root@[::1]:2222", "status"]
    hosts = select_hosts(Connection("a"), path, None, argv=argv)
    assert [(h.name, h.user, h.port) for h in hosts] == [("a", "pi", None), ("listed", "root", 22), ("c", "pi", 2022),
                                                         ("::1", "root", 2222)]
    assert hosts[3].hostname == "::1"
    assert select_hosts(Connection("root@listed:22"), path, None, argv=argv) == []
    assert select_hosts(Connection("c:2022"), path, None, argv=argv) == []
    assert select_hosts(Connection("root@[::1]:2222"), path, None, argv=argv) == []


@pytest.mark.parametrize("typed, message", [
    ("root@h:abc", "-H root@h:abc: 'h:abc': port must be a number from 1 to 65535, not 'abc'"),
    ("root@h:0", "-H root@h:0: 'h:0': port must be from 1 to 65535, not 0"),
    ("root@h:70000", "-H root@h:70000: 'h:70000': port must be from 1 to 65535, not 70000"),
])
def test_a_bad_port_on_h_is_one_line_before_fabric_reads_it(typed, message):
    import subprocess
    import sys

    fab = Path(sys.executable).parent / "fab"
    done = subprocess.run([str(fab), "-H", typed, "status"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr.strip()) == (1, f"fab: error: {message}")
    assert done.stdout == ""


AGENT_FLEET = """
defaults:
  agent: {channel: "https://updates.example.com/bloomkit/channels/stable.json", trust: keys/signing-key.pub}
hosts:
  pi-1: {daemon: {http: "0.0.0.0:9000"}, agent: {interval: 60, mqtt: "mqtt://broker.lan"}}
  pi-2: {agent: {device_id: greenhouse-2, trust: [keys/signing-key.pub, keys/next.pub]}}
  pi-3: {agent: false}
"""


def keys(tmp_path: Path) -> None:
    from deploy.keys import keygen

    (tmp_path / "keys").mkdir()
    keygen(tmp_path / "keys" / "signing-key")
    keygen(tmp_path / "keys" / "next")


def test_an_agent_section_merges_defaults_and_gives_the_agents_options(tmp_path):
    keys(tmp_path)
    one, two, three = load_inventory(write(tmp_path, AGENT_FLEET)).select()
    assert one.agent.trust == (tmp_path / "keys" / "signing-key.pub",) and one.agent.interval == 60
    assert one.agent_args() == ["--channel", "https://updates.example.com/bloomkit/channels/stable.json",
                                "--device-id", "pi-1", "--daemon-http", "127.0.0.1:9000", "--interval", "60",
                                "--python", "python3", "--mqtt", "mqtt://broker.lan"]
    assert two.agent.device_id == "greenhouse-2" and len(two.agent.trust) == 2 and two.agent.interval == 300
    assert three.agent is None
    assert load_inventory(write(tmp_path, "hosts: {lab: {}}")).select()[0].agent is None


@pytest.mark.parametrize("agent, message", [
    ("{channel: 'http://store/channels/stable.json'}", "needs channel .* and trust"),
    ("{channel: 'ftp://store/channels/stable.json', trust: keys/signing-key.pub}", "expected http"),
    ("{channel: 'http://store/stable.json', trust: keys/signing-key.pub}", "expected http"),
    ("{channel: 'http://store/channels/stable.json', trust: keys/signing-key}", "not a bloomkit public key"),
    ("{channel: 'http://store/channels/stable.json', trust: keys/absent.pub}", "cannot read"),
    ("{channel: 'http://store/channels/stable.json', trust: keys/signing-key.pub, interval: 0}", "interval must be"),
    ("{channel: 'http://store/channels/stable.json', trust: keys/signing-key.pub, mqtt: 'http://x'}", "mqtt"),
    ("{channel: 'http://store/channels/stable.json', trust: keys/signing-key.pub, every: 3}", "unknown setting"),
    ("[1]", "must be a mapping"),
])
def test_a_wrong_agent_section_is_one_line_naming_the_host(tmp_path, agent, message):
    keys(tmp_path)
    with pytest.raises(InventoryError, match=f"host a: agent.*{message}"):
        load_inventory(write(tmp_path, f"hosts: {{a: {{agent: {agent}}}}}"))
