// `resync_required` and a `since_seq` older than retention both end in a fresh snapshot with the
// pending edits rebased on top of it, each taking effect exactly once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Proxy, client, control, eventLog, open, rest, setup, snapshot, summary, waitFor } from './helpers.mjs';

test('resync_required: a fresh snapshot, pending edits rebased and sent once', { timeout: 20_000 }, async () => {
  const w = await setup({ alice: 'owner', bob: 'member' });
  const c = client(w.users.alice);
  try {
    const board = await open(c, w);
    const joins = [];
    c.socket.onAnyOutgoing((event, payload) => event === 'join_board' && joins.push(payload));
    const causes = [];
    let rebased = null;
    board.on('change', ({ state, cause }) => {
      causes.push(cause);
      if (cause === 'resync') rebased = state;
    });
    const ids = [];
    board.on('status', (status) => {
      if (status !== 'resyncing') return;
      // edits made while the snapshot is on its way wait for it, then apply on top
      const [todo, , done] = board.state.columns;
      board.createCard(done.id, 'made while resyncing', { position: 0 });
      board.moveCard(board.state.cards.find((x) => x.column_id === todo.id).id, done.id, 1);
      ids.push(...board.pending.map((op) => op.clientOpId));
    });
    await control('/resync', { board_id: w.board_id });
    await waitFor(() => rebased && board.status === 'live' && board.pending.length === 0, { what: 'resynced' });
    assert.equal(joins.length, 1);
    assert.equal(joins[0].since_seq, undefined, 'a fresh snapshot, not a catch-up');
    assert.equal(rebased.cards.filter((x) => x.title === 'made while resyncing').length, 1, 'rebased on the snapshot');
    const log = await eventLog(w.board_id, w.users.alice.token);
    for (const id of ids) assert.equal(log.filter((e) => e.correlation_id === id).length, 1);
    assert.deepEqual(summary(board.state), summary(await snapshot(w.board_id, w.users.alice.token)));
  } finally {
    c.close();
  }
});

test('since_seq past retention: the re-join gets a snapshot; queued and ack-lost edits apply once', { timeout: 30_000 }, async () => {
  const w = await setup({ alice: 'owner', bob: 'member' });
  const { alice, bob } = w.users;
  const proxy = await new Proxy().start();
  const c = client(alice, { url: proxy.url });
  try {
    const board = await open(c, w);
    const [todo, doing, done] = board.state.columns;
    const [first, second] = board.state.cards;
    // 1. an edit the server commits but whose answer is lost in the cut
    proxy.holdReplies();
    const acked = board.moveCard(first.id, done.id, 0);
    const ackLost = board.pending[0].clientOpId;
    await waitFor(async () => (await eventLog(w.board_id, alice.token)).some((e) => e.correlation_id === ackLost), {
      what: 'the move committed',
    });
    proxy.cut();
    await waitFor(() => board.status === 'offline', { what: 'offline' });
    // 2. edits made offline
    board.updateCard(second.id, { title: 'edited offline' });
    board.createCard(doing.id, 'created offline');
    const queued = board.pending.slice(1).map((op) => op.clientOpId);
    // 3. the board moves on, and its history up to the latest event is pruned
    for (let i = 0; i < 4; i++) {
      const { status } = await rest('POST', `/v1/boards/${w.board_id}/cards`, bob.token, {
        column_id: todo.id,
        title: `bob ${i}`,
      });
      assert.equal(status, 201);
    }
    const latest = (await snapshot(w.board_id, alice.token)).seq;
    await waitFor(async () => (await control('/prune', { board_id: w.board_id, seq: latest - 1 })).oldest === latest, {
      what: 'pruned',
    });
    assert.ok(board.state.seq < latest - 1);
    const since = await rest('GET', `/v1/boards/${w.board_id}/events?since_seq=${board.state.seq}`, alice.token);
    assert.equal(since.status, 410);

    const causes = [];
    board.on('change', ({ cause }) => causes.push(cause));
    proxy.restore();
    const result = await acked;
    await waitFor(() => board.status === 'live' && board.pending.length === 0, { what: 'replayed' });
    assert.ok(causes.includes('resync'), causes.join());
    assert.ok(result.seq < latest, 'the replay answered with the stored result of the first send');
    const log = await eventLog(w.board_id, alice.token).catch(() => null);
    const kept = log ?? (await rest('GET', `/v1/boards/${w.board_id}/events?since_seq=${latest - 1}`, alice.token)).body.events;
    for (const id of queued) assert.equal(kept.filter((e) => e.correlation_id === id).length, 1);
    const rest2 = await snapshot(w.board_id, alice.token);
    assert.equal(rest2.cards.filter((x) => x.title === 'created offline').length, 1);
    assert.equal(rest2.cards.find((x) => x.id === first.id).column_id, done.id);
    assert.deepEqual(summary(board.state), summary(rest2));
  } finally {
    c.close();
    await proxy.stop();
  }
});
