// `token_expiring` → getToken() → `refresh_token`: the socket outlives its first token.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { client, control, open, setup, sleep } from './helpers.mjs';

test('a token refresh keeps the socket alive past the first token\'s exp', { timeout: 30_000 }, async () => {
  const w = await setup({ alice: 'owner' });
  const { alice } = w.users;
  const ttl = 6; // realtime warns 3 s before exp (the suite's WEBSOCKET_TOKEN_EXPIRY_WARNING)
  const short = (await control('/token', { sub: alice.id, email: alice.email, ttl })).token;
  const shortExp = Date.now() + ttl * 1000;
  let refreshed = 0;
  const getToken = async () => {
    if (Date.now() < shortExp - 4000) return short;
    refreshed++;
    return (await control('/token', { sub: alice.id, email: alice.email, ttl: 3600 })).token;
  };
  const c = client(alice, { getToken });
  try {
    const board = await open(c, w);
    const sid = c.socket.id;
    const seen = [];
    c.socket.on('session_expired', (data) => seen.push(['session_expired', data]));
    c.socket.on('disconnect', (reason) => seen.push(['disconnect', reason]));
    const sent = [];
    c.socket.onAnyOutgoing((event) => sent.push(event));
    await sleep(shortExp - Date.now() + 2500);
    assert.deepEqual(seen, [], 'no expiry, no disconnect');
    assert.ok(sent.includes('refresh_token'));
    assert.ok(refreshed >= 1);
    assert.equal(c.status, 'connected');
    assert.equal(c.socket.id, sid, 'the same socket');
    const result = await board.createCard(board.state.columns[0].id, 'after the first token expired');
    assert.ok(result.seq > 0);
  } finally {
    c.close();
  }
});
