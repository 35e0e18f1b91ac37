// Two clients on one board, 200 random concurrent mutations each: both end with exactly the
// REST snapshot, and every acknowledged mutation is exactly one event in the board's log.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { client, eventLog, open, setup, sleep, snapshot, summary, waitFor } from './helpers.mjs';

const pick = (list) => list[Math.floor(Math.random() * list.length)];

function randomMutation(board, memberIds, label, i) {
  const { columns, cards } = board.state;
  const column = pick(columns);
  const card = cards.length ? pick(cards) : null;
  const roll = Math.random();
  if (!card || roll < 0.2) {
    return board.createCard(column.id, `${label} card ${i}`, { position: Math.floor(Math.random() * 4) });
  }
  if (roll < 0.55) {
    const inTarget = cards.filter((c) => c.column_id === column.id).length;
    return board.moveCard(card.id, column.id, Math.floor(Math.random() * (inTarget + 1)));
  }
  if (roll < 0.72) return board.updateCard(card.id, { title: `${label} title ${i}` });
  if (roll < 0.8) return board.assign(card.id, memberIds.filter(() => Math.random() < 0.5));
  if (roll < 0.85) return board.comment(card.id, `${label} says ${i}`);
  if (roll < 0.9) return board.deleteCard(card.id);
  if (roll < 0.95) return board.updateColumn(column.id, { name: `${label} column ${i}` });
  if (roll < 0.97) return board.updateBoard({ name: `${label} board ${i}` });
  return board.reorderColumns([...columns].map((c) => c.id).sort(() => Math.random() - 0.5));
}

test('two clients converge to the REST snapshot after 200 random concurrent mutations each', { timeout: 90_000 }, async () => {
  const world = await setup({ alice: 'owner', bob: 'member' }, { cards: 6 });
  const { alice, bob } = world.users;
  const memberIds = [alice.id, bob.id];
  const clients = [client(alice), client(bob)];
  try {
    const boards = await Promise.all(clients.map((c) => open(c, world)));
    const rejected = [];
    boards.forEach((board) => board.on('rejected', (r) => rejected.push(r)));
    const outcomes = await Promise.all(
      boards.map(async (board, n) => {
        const ops = [];
        for (let i = 0; i < 200; i++) {
          const promise = randomMutation(board, memberIds, n ? 'bob' : 'alice', i);
          const { clientOpId, type } = board.pending.at(-1);
          ops.push({ clientOpId, type, promise });
          if (Math.random() < 0.5) await sleep(Math.random() * 8);
        }
        return Promise.all(
          ops.map(async (op) => ({ ...op, result: await op.promise.then((r) => r, (e) => ({ error: e })) })),
        );
      }),
    );
    const [a, b] = boards;
    const rest = await snapshot(world.board_id, alice.token);
    const want = summary(rest);
    await waitFor(() => a.pending.length === 0 && b.pending.length === 0, { what: 'empty queues', timeout: 20_000 });
    await waitFor(() => a.state.seq >= rest.seq && b.state.seq >= rest.seq, { what: 'both at the final seq' });
    assert.deepEqual(summary(a.state), want);
    assert.deepEqual(summary(b.state), want);
    assert.deepEqual(summary(a.confirmed), want);

    // exactly once: each acknowledged operation is one event (its correlation_id is the client_op_id)
    const log = await eventLog(world.board_id, alice.token);
    const byOp = new Map();
    for (const event of log) byOp.set(event.correlation_id, (byOp.get(event.correlation_id) ?? 0) + 1);
    const all = outcomes.flat();
    const acked = all.filter((op) => !op.result.error);
    console.log(`acked ${acked.length}, refused ${all.length - acked.length}, final seq ${rest.seq}, cards ${rest.cards.length}`);
    assert.ok(acked.length >= 300, `only ${acked.length} of 400 mutations succeeded`);
    for (const op of acked) {
      assert.equal(byOp.get(op.clientOpId), 1, `${op.type} ${op.clientOpId}`);
      assert.ok(log.some((e) => e.seq === op.result.seq && e.correlation_id === op.clientOpId));
    }
    for (const op of all.filter((o) => o.result.error)) {
      assert.equal(byOp.get(op.clientOpId), undefined, `a refused ${op.type} left an event`);
      assert.ok(rejected.some((r) => r.op.clientOpId === op.clientOpId), 'a refusal fires rejected');
    }
  } finally {
    clients.forEach((c) => c.close());
  }
});
