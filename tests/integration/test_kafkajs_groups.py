"""KafkaJS consumer groups (tests/node/groups.js): two members split an 8-partition topic,
one leaves and the other takes over; nothing committed is read again; the admin API
describes, lists, fetches offsets and deletes (refused while the group is active)."""

import json
import pathlib
import subprocess

import pytest

from helpers import GROUP_FLAGS, unique_topic

NODE_DIR = pathlib.Path(__file__).resolve().parents[1] / "node"


def run_groups_js(bootstrap, topic, group):
    result = subprocess.run(["node", "groups.js", bootstrap, topic, group], cwd=NODE_DIR,
                            capture_output=True, text=True, timeout=110)
    assert result.returncode == 0, f"groups.js exited {result.returncode}:\n{result.stderr[-5000:]}"
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, result.stdout[-2000:]
    return json.loads(lines[0][len("RESULT "):])


@pytest.mark.timeout(120)
def test_kafkajs_members_split_rebalance_on_leave_and_admin_sees_the_group(broker_factory):
    broker = broker_factory(*GROUP_FLAGS)
    topic, group = unique_topic("js-grp"), unique_topic("js-g")
    seen = run_groups_js(broker.bootstrap, topic, group)
    assert seen["crashed"] == [None, None]

    # Alone, js-a owned all 8; js-b's join rebalanced it down to a disjoint half.
    split = seen["split"]
    assert seen["joins"]["a"][0]["partitions"] == list(range(8))
    assert split["aJoins"] > split["aJoinsAlone"], "js-b's join made js-a rejoin"
    assert sorted(split["a"] + split["b"]) == list(range(8)) and len(split["a"]) == len(split["b"]) == 4
    assert seen["joins"]["b"][-1]["partitions"] == split["b"]

    described = seen["described"]
    assert (described["state"], described["protocolType"], described["errorCode"]) == ("Stable", "consumer", 0)
    assert described["protocol"] == seen["joins"]["a"][-1]["protocol"] == "RoundRobinAssigner"
    by_client = {m["clientId"]: m for m in described["members"]}
    assert sorted(by_client) == ["js-a", "js-b"]
    assert by_client["js-a"]["partitions"] == split["a"] and by_client["js-b"]["partitions"] == split["b"]
    assert all(m["subscribed"] == [topic] for m in described["members"])
    member_ids = {j["memberId"] for j in seen["joins"]["a"]} | {j["memberId"] for j in seen["joins"]["b"]}
    assert {m["memberId"] for m in described["members"]} <= member_ids
    assert [g["protocolType"] for g in seen["listedStable"]] == ["consumer"]

    # An active group cannot be deleted: GROUP_NOT_EMPTY (68).
    assert seen["deleteActive"] == {"name": "KafkaJSDeleteGroupsError", "groups": [{"groupId": group, "errorCode": 68}]}

    # js-b's LeaveGroup rebalanced at once (its session timeout is 10 s).
    assert seen["joins"]["a"][-1]["partitions"] == list(range(8))
    assert seen["leaveRebalanceMs"] < 6000, seen["leaveRebalanceMs"]

    # Every message consumed; none consumed again after its commit; the group's commits are
    # the partitions' ends.
    consumed = {(p, o) for _, p, o in seen["consumed"]}
    assert consumed == {(p, o) for p in range(8) for o in range(100)}
    assert seen["violations"] == []
    # Round 0 (offsets 0-49) was produced after the split, round 1 (50-99) after js-b left:
    # js-a took js-b's partitions over exactly at js-b's commits.
    by_member = {name: sorted((p, o) for n, p, o in seen["consumed"] if n == name) for name in ("js-a", "js-b")}
    assert by_member["js-b"] == [(p, o) for p in split["b"] for o in range(50)]
    assert by_member["js-a"] == sorted([(p, o) for p in split["a"] for o in range(50)] +
                                       [(p, o) for p in range(8) for o in range(50, 100)])
    assert sorted(map(tuple, seen["committed"])) == [(p, 100) for p in range(8)]
    assert sorted(map(tuple, seen["highs"])) == [(p, 100) for p in range(8)]

    # Once js-a left too: Empty, deletable, gone, and its offsets with it.
    assert seen["afterLeave"] == {"state": "Empty", "members": 0}
    assert seen["deleted"] == [{"groupId": group, "errorCode": 0}]
    assert seen["listedAfter"] == []
    assert sorted(map(tuple, seen["offsetsAfterDelete"])) == [(p, -1) for p in range(8)]
