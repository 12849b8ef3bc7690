"""Release names sort in deploy order, which rollback ("the previous release") and pruning rely on."""
from __future__ import annotations

from deploy.host.layout import previous_release
from deploy.releases import new_version

SHA_A, SHA_B = "a" * 64, "0" * 64


def test_names_made_in_quick_succession_sort_in_the_order_they_were_made():
    names: list[str] = []
    for sha in (SHA_A, SHA_B, SHA_A, SHA_B, SHA_A):   # "0…" sorts before "a…": the hash must not decide
        names.append(new_version(sha, names))
    assert sorted(names) == names and len(set(names)) == len(names)
    assert previous_release(names, names[-1], failed=[]) == names[-2]


def test_a_host_whose_newest_release_is_from_a_clock_ahead_still_gets_a_later_name():
    ahead = "29991231T235959999Z-ffffffff"
    name = new_version(SHA_B, [ahead])
    assert name > ahead and name.endswith(SHA_B[:8])
