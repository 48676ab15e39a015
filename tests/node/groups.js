// KafkaJS consumer groups against Weir: two members split an 8-partition topic, one leaves
// and the other takes everything over; admin describe/list/fetchOffsets/deleteGroups.
// Usage: node groups.js <bootstrap> <topic> <group>
// Prints one line `RESULT {json}` on stdout with what it saw (tests/integration/
// test_kafkajs_groups.py asserts on it); KafkaJS logs go to stderr. Exits non-zero when a
// step fails or times out.
const { Kafka, AssignerProtocol, logLevel } = require('kafkajs');

const PARTITIONS = 8;
const PER_ROUND = 50; // messages per partition per produce round

const logCreator = () => ({ namespace, level, log }) => {
  process.stderr.write(`[${namespace}] ${level} ${log.message} ${JSON.stringify(log)}\n`);
};

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitFor(what, check, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

// What the group consumed and committed, across members (one event loop: no locking).
const ledger = { committed: {}, consumed: [], violations: [], commitErrors: [] };

function member(bootstrap, topic, group, name) {
  const kafka = new Kafka({ clientId: name, brokers: [bootstrap], logLevel: logLevel.WARN, logCreator });
  const consumer = kafka.consumer({
    groupId: group, sessionTimeout: 10000, heartbeatInterval: 300, maxWaitTimeInMs: 300, rebalanceTimeout: 20000,
  });
  const m = { name, consumer, joins: [], crashed: null };
  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    m.joins.push({
      at: Date.now(), memberId: payload.memberId, isLeader: payload.isLeader,
      protocol: payload.groupProtocol,
      partitions: [...(payload.memberAssignment[topic] || [])].sort((x, y) => x - y),
    });
  });
  consumer.on(consumer.events.CRASH, ({ payload }) => { m.crashed = String(payload.error); });
  m.assignment = () => (m.joins.length ? m.joins[m.joins.length - 1].partitions : []);
  m.start = async () => {
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        const offset = Number(message.offset);
        const committed = ledger.committed[partition] || 0;
        if (offset < committed) {
          ledger.violations.push(`${name} consumed ${partition}@${offset} after ${committed} was committed`);
        }
        ledger.consumed.push([name, partition, offset]);
        try {
          await consumer.commitOffsets([{ topic, partition, offset: String(offset + 1) }]);
          ledger.committed[partition] = Math.max(ledger.committed[partition] || 0, offset + 1);
        } catch (e) { // REBALANCE_IN_PROGRESS etc.: the message stays uncommitted
          ledger.commitErrors.push(`${name}: ${e.type || e.message}`);
        }
      },
    });
  };
  return m;
}

function disjointCover(assignments, sizes) {
  const all = assignments.flat();
  if (new Set(all).size !== all.length || all.length !== PARTITIONS) return false;
  return JSON.stringify(assignments.map((a) => a.length).sort()) === JSON.stringify([...sizes].sort());
}

function uniqueConsumed() {
  return new Set(ledger.consumed.map(([, p, o]) => `${p}:${o}`)).size;
}

async function produceRound(kafka, topic, round) {
  const producer = kafka.producer();
  await producer.connect();
  const messages = [];
  for (let i = 0; i < PER_ROUND; i += 1) {
    for (let p = 0; p < PARTITIONS; p += 1) messages.push({ partition: p, key: `k${i}`, value: `r${round}-${p}-${i}` });
  }
  await producer.send({ topic, acks: -1, messages });
  await producer.disconnect();
}

function describeMembers(group, topic) {
  return group.members.map((mem) => {
    const assignment = AssignerProtocol.MemberAssignment.decode(mem.memberAssignment);
    const metadata = AssignerProtocol.MemberMetadata.decode(mem.memberMetadata);
    return {
      clientId: mem.clientId, memberId: mem.memberId, clientHost: mem.clientHost,
      subscribed: metadata.topics,
      partitions: [...((assignment && assignment.assignment[topic]) || [])].sort((x, y) => x - y),
    };
  });
}

async function main() {
  const [bootstrap, topic, group] = process.argv.slice(2);
  const kafka = new Kafka({ clientId: 'js-admin', brokers: [bootstrap], logLevel: logLevel.WARN, logCreator });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS }] });

  const a = member(bootstrap, topic, group, 'js-a');
  const b = member(bootstrap, topic, group, 'js-b');
  await a.start();
  await waitFor('js-a to own all partitions', () => a.assignment().length === PARTITIONS);
  const aJoinsAlone = a.joins.length;
  await b.start();
  await waitFor('js-a and js-b to split 4/4', () => disjointCover([a.assignment(), b.assignment()], [4, 4]));
  const split = { a: a.assignment(), b: b.assignment(), aJoins: a.joins.length, aJoinsAlone };

  const [stable] = (await admin.describeGroups([group])).groups;
  const described = {
    state: stable.state, protocolType: stable.protocolType, protocol: stable.protocol,
    errorCode: stable.errorCode, members: describeMembers(stable, topic),
  };
  let deleteActive = null;
  try {
    await admin.deleteGroups([group]);
    deleteActive = { deleted: true };
  } catch (e) {
    deleteActive = { name: e.name, groups: (e.groups || []).map((g) => ({ groupId: g.groupId, errorCode: g.errorCode })) };
  }
  const listedStable = (await admin.listGroups()).groups.filter((g) => g.groupId === group);

  // Round 0 arrives after the split: each member reads only its own partitions.
  await produceRound(kafka, topic, 0);
  await waitFor('the first 400 messages consumed', () => uniqueConsumed() === PARTITIONS * PER_ROUND);
  await waitFor('round 0 committed', () => [...Array(PARTITIONS).keys()].every((p) => ledger.committed[p] === PER_ROUND));

  // js-b leaves (disconnect sends LeaveGroup): js-a gets everything, long before js-b's
  // 10 s session timeout could have run out.
  const aJoinsBefore = a.joins.length;
  const leftAt = Date.now();
  await b.consumer.disconnect();
  await waitFor('js-a to own all 8 partitions again', () => a.joins.length > aJoinsBefore && a.assignment().length === PARTITIONS);
  const leaveRebalanceMs = Date.now() - leftAt;

  await produceRound(kafka, topic, 1);
  await waitFor('all 800 messages consumed', () => uniqueConsumed() === 2 * PARTITIONS * PER_ROUND);
  await waitFor('every partition committed to its end', () => {
    const c = ledger.committed;
    return [...Array(PARTITIONS).keys()].every((p) => c[p] === 2 * PER_ROUND);
  });
  const fetched = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  const highs = await admin.fetchTopicOffsets(topic);

  await a.consumer.disconnect();
  const [after] = (await admin.describeGroups([group])).groups;
  const deleted = await admin.deleteGroups([group]);
  const listedAfter = (await admin.listGroups()).groups.filter((g) => g.groupId === group);
  const offsetsAfterDelete = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  await admin.disconnect();

  const result = {
    split,
    joins: { a: a.joins, b: b.joins },
    described,
    deleteActive,
    listedStable,
    leaveRebalanceMs,
    consumed: ledger.consumed,
    violations: ledger.violations,
    commitErrors: ledger.commitErrors,
    committed: fetched[0].partitions.map((p) => [p.partition, Number(p.offset)]),
    highs: highs.map((o) => [o.partition, Number(o.high)]),
    afterLeave: { state: after.state, members: after.members.length },
    deleted: deleted.map((d) => ({ groupId: d.groupId, errorCode: d.errorCode })),
    listedAfter,
    offsetsAfterDelete: offsetsAfterDelete[0].partitions.map((p) => [p.partition, Number(p.offset)]),
    crashed: [a.crashed, b.crashed],
  };
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
}

const overall = setTimeout(() => { console.error('groups.js: overall timeout'); process.exit(3); }, 100000);
main().then(() => { clearTimeout(overall); process.exit(0); })
  .catch((e) => { console.error(e); process.exit(1); });
