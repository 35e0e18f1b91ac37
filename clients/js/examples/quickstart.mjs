// node quickstart.mjs ALICE_TOKEN   — a live board in the terminal, against `make dev`
import { createClient } from '@liveboard/client';

const env = process.env;
const client = createClient({ url: env.LIVEBOARD_URL ?? 'http://127.0.0.1:8000', getToken: () => process.argv[2] });
client.on('status', (status) => console.log('connection:', status));
const board = await client.openBoard({
  boardId: env.BOARD ?? 'demo-board', organizationId: env.ORG ?? 'demo', divisionId: env.DIVISION ?? 'demo-div',
});
const show = ({ columns, cards, seq }) => {
  console.log(`--- seq ${seq}`);
  for (const c of columns) console.log(`${c.name}: ${cards.filter((k) => k.column_id === c.id).map((k) => k.title).join(' | ')}`);
};
board.on('change', ({ state, cause }) => { console.log(`(${cause})`); show(state); });
show(board.state);
await board.createCard(board.state.columns[0].id, 'Hello from Node');  // try moving it in the browser
