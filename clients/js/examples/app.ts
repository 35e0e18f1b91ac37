// A sample app against the public API, type-checked by the test suite (`tsc --noEmit`):
// if a name of CONTRACT §8 or a generated payload type changes, this stops compiling.
import {
  createClient,
  MemoryStorage,
  type Board,
  type BoardState,
  type BoardsPayloads,
  type Card,
  type ClientStatus,
  type LiveboardError,
  type MutationResult,
  type PendingOperation,
} from '@liveboard/client';

declare const accessToken: string;

export async function main(): Promise<void> {
  const client = createClient({
    url: 'http://127.0.0.1:8000',
    getToken: async () => accessToken,
    storage: new MemoryStorage(),
  });
  client.on('status', (s: ClientStatus) => console.log('connection', s));
  client.on('error', (e: LiveboardError) => console.warn(e.code, e.message));

  const board: Board = await client.openBoard({ boardId: 'demo-board', organizationId: 'demo-org', divisionId: null });
  const state: BoardState = board.state;
  const confirmed: BoardState = board.confirmed;
  const pending: PendingOperation[] = board.pending;
  const status: 'live' | 'catching_up' | 'resyncing' | 'offline' = board.status;
  console.log(state.seq, confirmed.cards.length, pending.length, status);

  board.on('change', ({ state, cause }) => console.log(cause, state.cards.length));
  board.on('conflict', ({ conflict, task }) => console.log(conflict.reason, conflict.resolved, task?.position));
  board.on('rejected', ({ op, error }) => console.log(op.type, op.clientOpId, error.code));
  board.on('presence', (members) => console.log(members.map((m) => `${m.email} ${m.status}`)));
  board.on('typing', (t) => console.log(t.user_id, t.task_id, t.is_typing));
  board.on('cursor', (c) => console.log(c.x, c.y));

  const [todo, doing] = state.columns;
  const created: MutationResult = await board.createCard(todo.id, 'Write the docs', { description: 'all of it', position: 0 });
  const card = created.task as Card;
  await board.moveCard(card.id, doing.id, 0);
  const changes: BoardsPayloads.CardChanges = { title: 'Write the docs (v2)', labels: ['docs'], due_date: '2030-01-01' };
  await board.updateCard(card.id, changes, { expectedVersion: card.version });
  await board.assign(card.id, ['a-user-id']);
  await board.comment(card.id, 'On it');
  await board.updateBoard({ name: 'Roadmap' });
  await board.updateColumn(doing.id, { name: 'In progress', wip_limit: 5 });
  await board.reorderColumns(state.columns.map((c) => c.id).reverse());
  await board.deleteCard(card.id).catch((error: LiveboardError) => console.log(error.code));

  board.setTyping(card.id, true);
  board.setCursor(120, 48, card.id);
  console.log(board.presence.length);
  board.close();
  client.close();
}
