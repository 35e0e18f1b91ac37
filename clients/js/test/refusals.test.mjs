// Refused edits roll back and fire `rejected`; a move the server resolves elsewhere fires `conflict`
// and the state follows the server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Proxy, client, open, rest, setup, snapshot, summary, waitFor } from './helpers.mjs';

function recorder(board) {
  const seen = { rejected: [], conflicts: [], causes: [] };
  board.on('rejected', (r) => seen.rejected.push(r));
  board.on('conflict', (c) => seen.conflicts.push(c));
  board.on('change', ({ cause }) => seen.causes.push(cause));
  return seen;
}

test('a viewer\'s edit is refused: rolled back, rejected, the promise rejects with {code, message}', { timeout: 20_000 }, async () => {
  const w = await setup({ alice: 'owner', vic: 'viewer' });
  const c = client(w.users.vic);
  try {
    const board = await open(c, w);
    assert.equal(board.canWrite, false);
    const before = summary(board.state);
    const seen = recorder(board);
    const card = board.state.cards[0];
    const moving = board.moveCard(card.id, board.state.columns[2].id, 0);
    assert.equal(board.state.cards.find((x) => x.id === card.id).column_id, board.state.columns[2].id, 'optimistic');
    await assert.rejects(moving, (error) => error.code === 'forbidden' && typeof error.message === 'string');
    assert.equal(seen.rejected.length, 1);
    assert.equal(seen.rejected[0].op.type, 'task_moved');
    assert.equal(seen.rejected[0].error.code, 'forbidden');
    assert.deepEqual(seen.causes, ['local', 'rollback']);
    assert.deepEqual(summary(board.state), before);
    assert.equal(board.pending.length, 0);
  } finally {
    c.close();
  }
});

test('a stale expectedVersion is refused with version_conflict and the current card', { timeout: 20_000 }, async () => {
  const w = await setup({ alice: 'owner', bob: 'member' });
  const c = client(w.users.alice);
  try {
    const board = await open(c, w);
    const seen = recorder(board);
    const card = board.state.cards[0];
    const { status } = await rest('PATCH', `/v1/cards/${card.id}`, w.users.bob.token, { title: 'bob was first' });
    assert.equal(status, 200);
    const updating = board.updateCard(card.id, { title: 'alice, too late' }, { expectedVersion: card.version });
    await assert.rejects(updating, (error) => error.code === 'version_conflict');
    assert.equal(seen.rejected[0].error.code, 'version_conflict');
    assert.equal(seen.rejected[0].error.current?.title, 'bob was first');
    await waitFor(() => board.state.cards.find((x) => x.id === card.id).title === 'bob was first', {
      what: 'the server\'s title',
    });
    assert.ok(seen.causes.includes('rollback'));
    assert.equal(board.pending.length, 0);
  } finally {
    c.close();
  }
});

test('a queued edit whose card was deleted meanwhile is refused at replay and rolled back', { timeout: 20_000 }, async () => {
  const w = await setup({ alice: 'owner', bob: 'member' });
  const proxy = await new Proxy().start();
  const c = client(w.users.alice, { url: proxy.url });
  try {
    const board = await open(c, w);
    const seen = recorder(board);
    const [gone, kept] = board.state.cards;
    proxy.cut();
    await waitFor(() => board.status === 'offline', { what: 'offline' });
    const lost = board.updateCard(gone.id, { title: 'edited offline' });
    const fine = board.updateCard(kept.id, { title: 'also edited offline' });
    assert.equal((await rest('DELETE', `/v1/cards/${gone.id}`, w.users.bob.token)).status, 200);
    proxy.restore();
    await assert.rejects(lost, (error) => error.code === 'not_found');
    assert.equal((await fine).task.title, 'also edited offline');
    assert.equal(seen.rejected.length, 1);
    assert.equal(seen.rejected[0].op.payload.task_id, gone.id);
    await waitFor(() => board.pending.length === 0, { what: 'queue drained' });
    assert.ok(!board.state.cards.some((x) => x.id === gone.id));
    assert.deepEqual(summary(board.state), summary(await snapshot(w.board_id, w.users.alice.token)));
  } finally {
    c.close();
    await proxy.stop();
  }
});

test('a move the server resolves differently fires conflict and the state follows the server', { timeout: 20_000 }, async () => {
  const w = await setup({ alice: 'owner' });
  const c = client(w.users.alice);
  try {
    const board = await open(c, w);
    const seen = recorder(board);
    const [todo, doing] = board.state.columns;
    const card = board.state.cards[0];
    await board.moveCard(card.id, doing.id, 0); // doing now holds 1 card
    const result = await board.moveCard(board.state.cards.find((x) => x.column_id === todo.id).id, doing.id, 50);
    assert.equal(result.conflict.reason, 'position_clamped');
    assert.equal(seen.conflicts.length, 1);
    assert.equal(seen.conflicts[0].conflict.resolved.position, 1);
    await waitFor(() => board.pending.length === 0, { what: 'settled' });
    assert.deepEqual(summary(board.state), summary(await snapshot(w.board_id, w.users.alice.token)));
  } finally {
    c.close();
  }
});
