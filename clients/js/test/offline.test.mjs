// A real transport cut (a TCP proxy destroys the connection), edits made offline, reconnects:
// every edit takes effect exactly once (REST event log: one event per client_op_id).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStorage } from '../dist/index.js';
import { Proxy, client, eventLog, open, setup, snapshot, summary, waitFor } from './helpers.mjs';

const countByOp = (log) => {
  const counts = new Map();
  for (const event of log) counts.set(event.correlation_id, (counts.get(event.correlation_id) ?? 0) + 1);
  return counts;
};

async function world() {
  const w = await setup({ alice: 'owner', bob: 'member' }, { cards: 4 });
  const proxy = await new Proxy().start();
  return { w, proxy, ...w.users };
}

test('a cut transport, 20 offline edits, reconnect: each edit applied exactly once', { timeout: 60_000 }, async () => {
  const { w, proxy, alice, bob } = await world();
  const a = client(alice, { url: proxy.url });
  const b = client(bob);
  try {
    const [board, other] = await Promise.all([open(a, w), open(b, w)]);
    const statuses = [];
    const boardStatuses = [];
    a.on('status', (s) => statuses.push(s));
    board.on('status', (s) => boardStatuses.push(s));

    proxy.cut();
    await waitFor(() => board.status === 'offline', { what: 'board offline' });
    const [todo, doing, done] = board.state.columns;
    const ids = [];
    const promises = [];
    const edit = (promise) => {
      ids.push(board.pending.at(-1).clientOpId);
      promises.push(promise);
    };
    for (let i = 0; i < 20; i++) {
      const cards = board.state.cards;
      const card = cards[i % cards.length];
      if (i % 4 === 0) edit(board.createCard(doing.id, `offline ${i}`, { position: 0 }));
      else if (i % 4 === 1) edit(board.moveCard(card.id, i % 8 === 1 ? done.id : todo.id, 0));
      else if (i % 4 === 2) edit(board.updateCard(card.id, { title: `renamed offline ${i}` }));
      else edit(board.assign(card.id, [bob.id]));
    }
    assert.equal(board.pending.length, 20);
    assert.ok(board.pending.every((op) => op.status === 'queued'));
    const created = board.pending.filter((op) => op.type === 'task_created').map((op) => op.payload.id);
    assert.equal(created.length, 5);
    assert.ok(created.every((id) => board.state.cards.some((c) => c.id === id)), 'shown at once');
    // others keep editing meanwhile: catch-up has events to bring
    await other.createCard(todo.id, 'from bob while alice is away');
    await other.updateBoard({ name: 'renamed by bob' });
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(board.pending.length, 20, 'nothing sent while cut');

    proxy.restore();
    const results = await Promise.all(promises);
    await waitFor(() => board.pending.length === 0, { what: 'queue drained' });
    const log = await eventLog(w.board_id, alice.token);
    const counts = countByOp(log);
    for (const id of ids) assert.equal(counts.get(id), 1, `client_op_id ${id}`);
    results.forEach((r, i) => assert.equal(log.find((e) => e.correlation_id === ids[i]).seq, r.seq));
    const rest = await snapshot(w.board_id, alice.token);
    await waitFor(() => board.state.seq === rest.seq && other.state.seq === rest.seq, { what: 'both at seq' });
    assert.deepEqual(summary(board.state), summary(rest));
    assert.deepEqual(summary(other.state), summary(rest));
    assert.equal(board.state.board.name, 'renamed by bob');
    assert.ok(statuses.includes('reconnecting') || statuses.includes('offline'), statuses.join());
    assert.equal(statuses.at(-1), 'connected');
    assert.deepEqual(boardStatuses.slice(-2), ['catching_up', 'live']);
  } finally {
    a.close();
    b.close();
    await proxy.stop();
  }
});

test('an edit the server applied just before the cut (its ack lost) takes effect once', { timeout: 30_000 }, async () => {
  const { w, proxy, alice } = await world();
  const a = client(alice, { url: proxy.url });
  try {
    const board = await open(a, w);
    const [, doing] = board.state.columns;
    const card = board.state.cards[0];
    proxy.holdReplies(); // the server gets the move, its answer never reaches us
    const moved = board.moveCard(card.id, doing.id, 0);
    const opId = board.pending[0].clientOpId;
    await waitFor(async () => (await eventLog(w.board_id, alice.token)).some((e) => e.correlation_id === opId), {
      what: 'the move committed',
    });
    assert.equal(board.pending[0].status, 'sent');
    proxy.cut();
    await waitFor(() => board.status === 'offline', { what: 'offline' });
    assert.equal(board.pending[0].status, 'queued', 'fate unknown: queued for replay');
    proxy.restore();
    const result = await moved;
    const log = await eventLog(w.board_id, alice.token);
    assert.equal(countByOp(log).get(opId), 1);
    assert.equal(result.seq, log.find((e) => e.correlation_id === opId).seq);
    await waitFor(() => board.pending.length === 0, { what: 'settled' });
    assert.equal(board.state.cards.find((c) => c.id === card.id).column_id, doing.id);
  } finally {
    a.close();
    await proxy.stop();
  }
});

test('an edit lost on the wire before the cut is replayed and takes effect once', { timeout: 30_000 }, async () => {
  const { w, proxy, alice } = await world();
  const a = client(alice, { url: proxy.url });
  try {
    const board = await open(a, w);
    const card = board.state.cards[1];
    proxy.swallowRequests(); // what we send now never arrives
    const updated = board.updateCard(card.id, { title: 'lost then replayed' });
    const opId = board.pending[0].clientOpId;
    await new Promise((resolve) => setTimeout(resolve, 300));
    proxy.cut();
    await waitFor(() => board.status === 'offline', { what: 'offline' });
    proxy.restore();
    const result = await updated;
    assert.equal(result.task.title, 'lost then replayed');
    const log = await eventLog(w.board_id, alice.token);
    assert.equal(countByOp(log).get(opId), 1);
  } finally {
    a.close();
    await proxy.stop();
  }
});

test('the queue survives a reload: a new client on the same storage opens offline and replays once', { timeout: 30_000 }, async () => {
  const { w, proxy, alice } = await world();
  const storage = new MemoryStorage();
  const first = client(alice, { url: proxy.url, storage });
  let second;
  try {
    const board = await open(first, w);
    const [todo] = board.state.columns;
    proxy.cut();
    await waitFor(() => board.status === 'offline', { what: 'offline' });
    for (let i = 0; i < 5; i++) board.createCard(todo.id, `before reload ${i}`);
    board.moveCard(board.state.cards.at(-1).id, todo.id, 0);
    const ids = board.pending.map((op) => op.clientOpId);
    first.close(); // the page goes away with 6 edits queued
    await new Promise((resolve) => setTimeout(resolve, 50));

    second = client(alice, { url: proxy.url, storage });
    const reopened = await open(second, w); // offline: opens from storage
    assert.equal(reopened.status, 'offline');
    assert.deepEqual(reopened.pending.map((op) => op.clientOpId), ids);
    assert.equal(reopened.state.cards.filter((c) => c.title.startsWith('before reload')).length, 5);
    proxy.restore();
    await waitFor(() => reopened.status === 'live' && reopened.pending.length === 0, { what: 'replayed' });
    const counts = countByOp(await eventLog(w.board_id, alice.token));
    for (const id of ids) assert.equal(counts.get(id), 1);
    assert.deepEqual(summary(reopened.state), summary(await snapshot(w.board_id, alice.token)));
  } finally {
    first.close();
    second?.close();
    await proxy.stop();
  }
});
