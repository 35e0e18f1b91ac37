// Presence, typing and cursors between two clients, and events of other writers (REST) arriving live.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { client, open, rest, setup, waitFor } from './helpers.mjs';

test('presence, typing, cursor; a REST change arrives live; close', { timeout: 20_000 }, async () => {
  const w = await setup({ alice: 'owner', bob: 'member' });
  const { alice, bob } = w.users;
  const a = client(alice);
  const b = client(bob);
  try {
    const boardA = await open(a, w);
    const boardB = await open(b, w);
    await waitFor(() => boardA.presence.some((m) => m.user_id === bob.id), { what: 'bob present for alice' });
    assert.ok(boardB.presence.some((m) => m.user_id === alice.id));
    const typing = [];
    const cursors = [];
    boardB.on('typing', (t) => typing.push(t));
    boardB.on('cursor', (t) => cursors.push(t));
    const card = boardA.state.cards[0];
    boardA.setTyping(card.id, true);
    boardA.setCursor(10, 20, card.id);
    await waitFor(() => typing.length && cursors.length, { what: 'typing and cursor' });
    assert.deepEqual([typing[0].user_id, typing[0].task_id, typing[0].is_typing], [alice.id, card.id, true]);
    assert.deepEqual([cursors[0].x, cursors[0].y], [10, 20]);

    const { status, body } = await rest('POST', `/v1/boards/${w.board_id}/columns`, bob.token, { name: 'Review' });
    assert.equal(status, 201, JSON.stringify(body));
    await waitFor(() => boardA.state.columns.some((col) => col.name === 'Review'), { what: 'column_created' });
    assert.equal(boardA.state.columns.at(-1).name, 'Review');

    boardB.close();
    await waitFor(() => !boardA.presence.some((m) => m.user_id === bob.id), { what: 'bob gone' });
    assert.equal(boardB.status, 'offline');
  } finally {
    a.close();
    b.close();
    assert.equal(a.status, 'closed');
  }
});
