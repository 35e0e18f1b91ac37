// The README's quick start runs as written (against the suite's stack instead of `make dev`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { REALTIME, rest, setup, waitFor } from './helpers.mjs';

test('examples/quickstart.mjs shows the board, adds a card and follows live changes', { timeout: 20_000 }, async () => {
  const w = await setup({ alice: 'owner', bob: 'member' });
  const script = fileURLToPath(new URL('../examples/quickstart.mjs', import.meta.url));
  const env = { ...process.env, LIVEBOARD_URL: REALTIME, BOARD: w.board_id, ORG: w.organization_id, DIVISION: w.division_id };
  const child = spawn(process.execPath, [script, w.users.alice.token], { env });
  let out = '';
  child.stdout.on('data', (chunk) => (out += chunk));
  child.stderr.on('data', (chunk) => (out += chunk));
  try {
    await waitFor(() => out.includes('Hello from Node'), { what: `the new card in:\n${out}` });
    const column = w.snapshot.columns[1].id;
    assert.equal((await rest('PATCH', `/v1/columns/${column}`, w.users.bob.token, { name: 'Renamed by Bob' })).status, 200);
    await waitFor(() => out.includes('(remote)') && out.includes('Renamed by Bob:'), { what: `the live rename in:\n${out}` });
    assert.match(out, /connection: connected/);
  } finally {
    child.kill();
  }
});
