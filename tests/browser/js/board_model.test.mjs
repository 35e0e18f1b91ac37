// The page's board model (services/realtime/web/board.js) under node:test: the ordering rules a
// browser test cannot provoke on purpose (out-of-order and duplicate delivery, gaps, rebalanced
// ranks, optimistic moves racing broadcasts). Run by tests/browser/test_board_model.py.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';

const { BoardState, Sequencer } = await import(pathToFileURL(process.env.BOARD_MODULE).href);

const card = (id, column, rank, extra = {}) => ({ id, column_id: column, rank, title: id, version: 1, ...extra });
const snapshot = () => ({
  board: { id: 'b', name: 'Board' },
  columns: [{ id: 'todo', name: 'To do', rank: 'a0' }, { id: 'done', name: 'Done', rank: 'a1' }],
  cards: [card('x', 'todo', 'a0'), card('y', 'todo', 'a1'), card('z', 'done', 'a0')],
  seq: 10,
});
const ids = (state, column) => state.layout().get(column).map((c) => c.id);
const moved = (seq, task) => ({ event_type: 'task_moved', seq, board_id: 'b', data: { task_id: task.id, task } });

test('cards are ordered by rank, byte-wise, whatever order they arrive in', () => {
  const state = new BoardState();
  state.load({ ...snapshot(), cards: [card('q', 'todo', 'a1V'), card('p', 'todo', 'a1'), card('r', 'todo', 'Zz')] });
  assert.deepEqual(ids(state, 'todo'), ['r', 'p', 'q']); // "Z" < "a" as in COLLATE "C"
});

test('events apply in seq order: early ones wait, duplicates are dropped', () => {
  const state = new BoardState();
  state.load(snapshot());
  const applied = [];
  const sequencer = new Sequencer({ apply: (e) => { applied.push(e.seq); state.apply(e); }, onGap: () => {} });
  sequencer.start(10);
  sequencer.push(moved(12, card('y', 'done', 'a1')));
  assert.deepEqual(applied, []);
  sequencer.push(moved(11, card('x', 'done', 'Zz')));
  sequencer.push(moved(11, card('x', 'todo', 'a5'))); // a duplicate of 11: ignored
  sequencer.push(moved(9, card('z', 'todo', 'a9'))); // older than the snapshot: ignored
  assert.deepEqual(applied, [11, 12]);
  assert.deepEqual(ids(state, 'done'), ['x', 'z', 'y']);
  assert.equal(state.seq, 12);
  sequencer.clearGapTimer();
});

test('a gap that does not fill asks for a re-join from the last applied seq', async () => {
  const gaps = [];
  const sequencer = new Sequencer({ apply: () => {}, onGap: (seq) => gaps.push(seq), gapDelayMs: 20 });
  sequencer.start(5);
  sequencer.push(moved(8, card('x', 'todo', 'a0')));
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.deepEqual(gaps, [5]);
  sequencer.clearGapTimer();
});

test('while a join is in flight events are held, then those after the loaded seq apply', () => {
  const applied = [];
  const sequencer = new Sequencer({ apply: (e) => applied.push(e.seq), onGap: () => {} });
  sequencer.hold();
  for (const seq of [14, 12, 13]) sequencer.push(moved(seq, card('x', 'todo', 'a0')));
  sequencer.start(12); // the snapshot already contains 12
  assert.deepEqual(applied, [13, 14]);
});

test('column_rebalanced changes keys, not order; deleted cards disappear', () => {
  const state = new BoardState();
  state.load(snapshot());
  state.apply({ event_type: 'column_rebalanced', seq: 11, data: { column_id: 'todo', cards: [
    { id: 'x', rank: 'a2' }, { id: 'y', rank: 'a4' }] } });
  state.apply({ event_type: 'task_created', seq: 12, data: { task: card('n', 'todo', 'a3') } });
  assert.deepEqual(ids(state, 'todo'), ['x', 'n', 'y']);
  state.apply({ event_type: 'task_deleted', seq: 13, data: { task_id: 'n', column_id: 'todo' } });
  assert.deepEqual(ids(state, 'todo'), ['x', 'y']);
});

test('an optimistic move shows at once and stays until its broadcast is applied', () => {
  const state = new BoardState();
  state.load(snapshot());
  state.beginMove('x', 'done', 1, 'op-1');
  assert.deepEqual(ids(state, 'done'), ['z', 'x']);
  assert.deepEqual(ids(state, 'todo'), ['y']);
  state.settleMove('x', 'op-1', 11); // the ack came before the broadcast
  assert.deepEqual(ids(state, 'done'), ['z', 'x']);
  state.apply(moved(11, card('x', 'done', 'a1')));
  assert.equal(state.pendingMoves.size, 0);
  assert.deepEqual(ids(state, 'done'), ['z', 'x']);
});

test('a failed move goes back, and an old answer does not end a newer move', () => {
  const state = new BoardState();
  state.load(snapshot());
  state.beginMove('x', 'done', 0, 'op-1');
  state.beginMove('x', 'done', 1, 'op-2');
  state.settleMove('x', 'op-1'); // the first move's answer: not the current overlay
  assert.deepEqual(ids(state, 'done'), ['z', 'x']);
  state.settleMove('x', 'op-2'); // refused
  assert.deepEqual(ids(state, 'todo'), ['x', 'y']);
});

test('a snapshot that already contains a move ends its overlay', () => {
  const state = new BoardState();
  state.load(snapshot());
  state.beginMove('x', 'done', 0, 'op-1');
  state.settleMove('x', 'op-1', 11);
  state.beginMove('y', 'done', 0, 'op-2'); // not answered yet: stays across the reload
  state.load({ ...snapshot(), seq: 11, cards: [card('x', 'done', 'Zz'), card('y', 'todo', 'a1'), card('z', 'done', 'a0')] });
  assert.deepEqual([...state.pendingMoves.keys()], ['y']);
  assert.deepEqual(ids(state, 'done'), ['y', 'x', 'z']);
});
