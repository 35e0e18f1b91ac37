// Shared by the SDK's Node tests: the stack's addresses (set by tests/sdk/ in the Python suite),
// the control server, boards REST, a TCP proxy whose connections a test can really cut, waiting.
import net from 'node:net';
import { createClient, MemoryStorage } from '../dist/index.js';

export const REALTIME = process.env.LIVEBOARD_REALTIME_URL;
export const BOARDS = process.env.LIVEBOARD_BOARDS_URL;
export const CONTROL = process.env.LIVEBOARD_CONTROL_URL;
if (!REALTIME || !BOARDS || !CONTROL) {
  throw new Error('run through the Python suite (tests/sdk/), which starts the stack and sets LIVEBOARD_*_URL');
}

export async function control(path, body = {}) {
  const response = await fetch(`${CONTROL}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`control ${path}: ${response.status} ${await response.text()}`);
  return response.json();
}

/** An organization with `users` ({name: role}) and a board (3 columns, `cards` cards in the first). */
export const setup = (users, options = {}) => control('/setup', { users, ...options });

export async function rest(method, path, token, body) {
  const response = await fetch(`${BOARDS}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/** Every event of the board from REST (pages of 1,000). */
export async function eventLog(boardId, token) {
  const events = [];
  for (let since = 0; ; ) {
    const { status, body } = await rest('GET', `/v1/boards/${boardId}/events?since_seq=${since}&limit=1000`, token);
    if (status !== 200) throw new Error(`events: ${status} ${JSON.stringify(body)}`);
    events.push(...body.events);
    if (!body.events.length || !body.has_more) return events;
    since = body.events.at(-1).seq;
  }
}

export async function snapshot(boardId, token) {
  const { status, body } = await rest('GET', `/v1/boards/${boardId}`, token);
  if (status !== 200) throw new Error(`snapshot: ${status} ${JSON.stringify(body)}`);
  return body;
}

/** What two views of a board must agree on: column order, and each card's place and content. */
export function summary(state) {
  const columns = [...state.columns].sort((a, b) => a.position - b.position).map((c) => `${c.id}:${c.name}`);
  const cards = state.cards
    .map((c) => `${c.column_id}/${c.position}/${c.id}/${c.title}/v${c.version}/[${c.assignee_ids.join(',')}]`)
    .sort();
  return { seq: state.seq, columns, cards };
}

export async function waitFor(predicate, { timeout = 10_000, interval = 25, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A client for `user` ({id, email, token}); `getToken` may be overridden. Fast reconnects for tests. */
export function client(user, options = {}) {
  return createClient({
    url: options.url ?? REALTIME,
    getToken: options.getToken ?? (() => user.token),
    storage: options.storage ?? new MemoryStorage(),
    transports: ['websocket'],
    reconnectionDelay: 100,
    reconnectionDelayMax: 400,
    ...options.extra,
  });
}

export const open = (c, world) =>
  c.openBoard({ boardId: world.board_id, organizationId: world.organization_id, divisionId: world.division_id });

/**
 * A TCP proxy to realtime, so a test can cut the transport for real (not a clean close):
 * `cut()` destroys every connection and refuses new ones until `restore()`; `holdReplies()` stops
 * forwarding server → client (the server still gets what the client sends); `swallowRequests()`
 * drops client → server bytes.
 */
export class Proxy {
  constructor(target = REALTIME) {
    const url = new URL(target);
    this.host = url.hostname;
    this.port = Number(url.port);
    this.pairs = new Set();
    this.refusing = false;
    this.holding = false;
    this.swallowing = false;
    this.server = net.createServer((downstream) => this.accept(downstream));
  }

  async start() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${this.server.address().port}`;
    return this;
  }

  accept(downstream) {
    if (this.refusing) {
      downstream.destroy();
      return;
    }
    const upstream = net.connect(this.port, this.host);
    const pair = { downstream, upstream };
    this.pairs.add(pair);
    downstream.on('data', (chunk) => {
      if (!this.swallowing) upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (!this.holding) downstream.write(chunk);
    });
    const end = () => {
      this.pairs.delete(pair);
      downstream.destroy();
      upstream.destroy();
    };
    downstream.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  }

  holdReplies() {
    this.holding = true;
  }

  swallowRequests() {
    this.swallowing = true;
  }

  /** Destroy every connection (both sides, no close handshake) and refuse new ones. */
  cut() {
    this.refusing = true;
    for (const { downstream, upstream } of this.pairs) {
      downstream.resetAndDestroy?.() ?? downstream.destroy();
      upstream.destroy();
    }
    this.pairs.clear();
  }

  restore() {
    this.refusing = this.holding = this.swallowing = false;
  }

  async stop() {
    this.cut();
    await new Promise((resolve) => this.server.close(resolve));
  }
}
