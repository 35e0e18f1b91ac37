// Liveboard demo page: sign-in, the socket, joining a board and keeping it in sync.
//
// The page talks to nothing but its own origin's Socket.IO endpoint (namespace /workspace):
// organizations come from `connection_established`, their boards from `list_boards`, the board from
// the `join_board` answer, every change from the persisted broadcasts applied in `seq` order. A
// reconnect (socket.io-client does it by itself) is followed by `join_board {since_seq}`, so the
// board converges without a reload.

import { BoardState, Sequencer } from './board.js';
import { CardDialog } from './dialog.js';
import { $, announce, avatar, h, randomId, toast } from './ui.js';
import { BoardView } from './view.js';

const TOKEN_KEY = 'liveboard.token';
const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const ACK_TIMEOUT_MS = 10000;
const TYPING_SHOW_MS = 6000;
const BOARD_EVENTS = [
  'board_created', 'board_updated', 'board_deleted', 'column_created', 'column_updated', 'column_reordered',
  'column_rebalanced', 'task_created', 'task_moved', 'task_updated', 'task_deleted', 'task_assigned',
  'task_commented',
];
const CONFLICT_TEXT = {
  position_clamped: 'the column had fewer cards by then',
  stale_from_column: 'someone had moved it first',
  stale_version: 'the card had changed meanwhile',
};

class App {
  constructor() {
    this.state = new BoardState();
    this.sequencer = new Sequencer({
      apply: (envelope) => this.applyEvent(envelope),
      onGap: () => this.join({ catchUp: true }),
    });
    this.io = null;
    this.socket = null;
    this.token = null;
    this.me = null; // the `connection_established` payload: user_id, email, organizations
    this.boardId = null;
    this.preferredOrg = null;
    this.canWrite = false;
    this.joined = false;
    this.everJoined = false;
    this.joinAttempt = 0;
    this.retryTimer = null;
    this.presence = new Map(); // user_id -> {user_id, email, status}
    this.people = new Map(); // user_id -> {user_id, email}: everyone seen, for avatars and assignees
    this.typing = new Map(); // user_id -> {task_id, person, timer}
    this.conflictsShown = new Set();
    this.renderQueued = false;
    this.pickerGeneration = 0; // a newer picker drawing makes older board-list answers stale

    const hooks = {
      person: (id) => this.people.get(id) || null,
      editorsOf: (taskId) => [...this.typing.values()].filter((t) => t.task_id === taskId).map((t) => t.person),
      selfId: () => this.me?.user_id,
      onMove: (taskId, columnId, position) => this.move(taskId, columnId, position),
    };
    this.view = new BoardView($('#board'), {
      ...hooks,
      onOpen: (taskId) => this.dialog.open(taskId, this.state, this.writable),
      onCreate: (columnId, title) => this.createCard(columnId, title),
    });
    this.dialog = new CardDialog($('[data-testid="card-dialog"]'), {
      ...hooks,
      call: (event, payload) => this.call(event, payload),
      typing: (taskId, isTyping) => this.sendTyping(taskId, isTyping),
      people: () => [...this.people.values()],
      card: (taskId) => this.state.cards.get(taskId),
    });
    this.wireChrome();
    // For tests and the curious: the live socket and state (nothing secret beyond the user's own token).
    window.liveboard = this;
  }

  get writable() {
    return this.joined && this.canWrite && !this.state.deleted;
  }

  // ------------------------------------------------------------------ start and sign-in

  async start() {
    const clientUrl = document.querySelector('meta[name="liveboard:socket-io-client"]')?.content;
    try {
      if (!clientUrl) throw new Error('missing');
      this.io = (await import(clientUrl)).io;
    } catch {
      this.showScreen('signin');
      this.signinError('The Socket.IO client is not installed on this server (run `npm ci` in services/realtime/web).');
      return;
    }
    window.addEventListener('hashchange', () => {
      // Only a link's parameters (`#board=…`, `#token=…`) are navigation; an in-page anchor is not.
      if (window.location.hash.includes('=')) this.readLocation();
    });
    document.addEventListener('visibilitychange', () => this.sendPresence());
    this.readLocation();
  }

  /** `#token=JWT&board=ID[&org=ORG]`: take the token out of the address bar, keep the board. */
  readLocation() {
    const params = new URLSearchParams(window.location.hash.slice(1));
    const token = params.get('token');
    const board = ID_RE.test(params.get('board') || '') ? params.get('board') : null;
    const org = ID_RE.test(params.get('org') || '') ? params.get('org') : null;
    if (token) {
      sessionStorage.setItem(TOKEN_KEY, token);
      this.replaceLocation(board, org);
    }
    const stored = sessionStorage.getItem(TOKEN_KEY);
    if (!stored || stored !== this.token || !this.socket || !this.me) {
      this.boardId = board;
      this.preferredOrg = org;
      if (!stored) this.showSignIn();
      else if (stored !== this.token || !this.socket) this.connect(stored);
      return; // the welcome joins this.boardId
    }
    if (board) this.openBoard(board, org); // same user, another board (a pasted link)
    else {
      this.leaveBoard();
      this.showPicker();
    }
  }

  replaceLocation(board, org) {
    const params = new URLSearchParams();
    if (board) params.set('board', board);
    if (org) params.set('org', org);
    const hash = params.toString();
    history.replaceState(null, '', hash ? `#${hash}` : window.location.pathname);
  }

  showSignIn(message) {
    this.showScreen('signin');
    $('[data-testid="signin-board"]').value = this.boardId || '';
    this.signinError(message);
    $('[data-testid="signin-token"]').focus();
  }

  signinError(message) {
    const node = $('[data-testid="signin-error"]');
    node.hidden = !message;
    node.textContent = message || '';
  }

  signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    this.disconnect();
    this.token = null;
    this.me = null;
    document.body.classList.remove('signed-in');
    this.showSignIn(message);
  }

  // ------------------------------------------------------------------ the socket

  connect(token) {
    this.disconnect();
    this.token = token;
    this.setStatus('connecting', 'Connecting…');
    this.showScreen('loading');
    const socket = this.io('/workspace', {
      auth: { token },
      reconnectionDelay: 500,
      reconnectionDelayMax: 3000,
    });
    this.socket = socket;
    socket.on('connect', () => this.setStatus('connecting', 'Syncing…'));
    socket.on('connection_established', (welcome) => this.onWelcome(welcome));
    socket.on('disconnect', (reason) => this.onDisconnect(reason));
    socket.on('connect_error', (error) => this.onConnectError(error));
    for (const event of BOARD_EVENTS) socket.on(event, (envelope) => this.onBoardEvent(envelope));
    socket.on('resync_required', (message) => {
      if (message?.board_id === this.boardId) this.join({ catchUp: true });
    });
    socket.on('task_conflict', (message) => this.showConflict(message.conflict, message.client_op_id, message.task));
    socket.on('user_presence', (envelope) => this.onPresence(envelope));
    socket.on('user_typing', (envelope) => this.onTyping(envelope));
    socket.on('token_expiring', (message) => {
      const when = new Date(message.expires_at * 1000).toLocaleTimeString();
      toast(`Your session ends at ${when}. Sign in again with a fresh token to keep working.`,
        { kind: 'warn', timeoutMs: 15000 });
    });
    socket.on('session_expired', () => this.signOut('Your session has expired. Sign in again.'));
    socket.on('board_access_revoked', (message) => {
      if (message.board_id !== this.boardId) return;
      this.leaveBoard();
      this.showPicker('You no longer have access to that board.');
    });
    socket.on('server_shutdown', () => this.showBanner('The server is restarting. Reconnecting…'));
  }

  disconnect() {
    clearTimeout(this.retryTimer);
    if (!this.socket) return;
    this.socket.removeAllListeners();
    this.socket.disconnect();
    this.socket = null;
    this.joined = false;
  }

  onWelcome(welcome) {
    this.me = welcome;
    this.people.set(welcome.user_id, { user_id: welcome.user_id, email: welcome.email });
    $('[data-testid="user-email"]').textContent = welcome.email || welcome.user_id;
    document.body.classList.add('signed-in');
    if (this.boardId) this.join({ catchUp: this.state.board?.id === this.boardId });
    else this.showPicker();
  }

  onDisconnect(reason) {
    this.joined = false;
    this.view.setWritable(false);
    this.setStatus('offline', 'Offline');
    if (this.everJoined && this.boardId) {
      this.showBanner('You are offline. Reconnecting… the board will catch up by itself.');
    }
    // The server closed this socket on purpose (shutdown, idle): socket.io-client does not
    // retry those by itself, so we do, after a pause.
    if (reason === 'io server disconnect' && this.socket) this.retryLater(1000 + Math.random() * 1000);
  }

  onConnectError(error) {
    const code = error?.data?.code;
    if (code === 'unauthorized') {
      this.signOut(`Sign-in refused: ${error.data.message || error.message}`);
      return;
    }
    this.setStatus('offline', code === 'rate_limited' ? 'Rate limited' : 'Offline');
    if (this.everJoined) this.showBanner('You are offline. Reconnecting… the board will catch up by itself.');
    if (code === 'forbidden') {
      this.signOut(`Connection refused: ${error.data.message}`);
      return;
    }
    // Refusals (server_full, rate_limited, unavailable) are final for socket.io-client; retry.
    if (this.socket && !this.socket.active) this.retryLater(code === 'rate_limited' ? 15000 : 2000);
  }

  retryLater(delayMs) {
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      if (this.socket && !this.socket.connected) this.socket.connect();
    }, delayMs);
  }

  /** Emit with an ack; never throws: a failure is `{ok: false, error: {code, message}}`. */
  call(event, payload, { mutation = true } = {}) {
    if (!this.socket?.connected || (mutation && !this.joined)) {
      return Promise.resolve({ ok: false, error: { code: 'offline', message: 'you are offline' } });
    }
    const body = { board_id: this.boardId, ...payload };
    if (mutation && !body.client_op_id) body.client_op_id = randomId();
    return new Promise((resolve) => {
      this.socket.timeout(ACK_TIMEOUT_MS).emit(event, body, (error, ack) => {
        if (error) resolve({ ok: false, error: { code: 'timeout', message: 'the server did not answer' } });
        else resolve(ack && typeof ack === 'object' ? ack : { ok: false, error: { code: 'internal', message: 'bad answer' } });
      });
    });
  }

  // ------------------------------------------------------------------ joining

  openBoard(boardId, organizationId = null) {
    if (!ID_RE.test(boardId || '')) {
      this.showPicker();
      return;
    }
    if (this.boardId && this.boardId !== boardId) this.leaveBoard();
    this.boardId = boardId;
    this.preferredOrg = organizationId || this.preferredOrg;
    this.replaceLocation(boardId, null);
    this.join({ catchUp: false });
  }

  leaveBoard() {
    if (this.boardId && this.socket?.connected) this.socket.emit('leave_board', { board_id: this.boardId });
    this.joined = false;
    this.everJoined = false;
    this.dialog.close();
    this.state.clear();
    this.presence.clear();
    this.typing.clear();
    this.boardId = null;
    this.replaceLocation(null, null);
  }

  /** Organizations to try for this board: the remembered or requested one first. */
  candidateOrgs() {
    const mine = (this.me?.organizations || []).map((o) => o.id);
    const recent = this.recentBoards().find((b) => b.id === this.boardId)?.organization_id;
    return [...new Set([this.preferredOrg, recent, ...mine].filter((id) => id && mine.includes(id)))];
  }

  /**
   * `join_board`, trying the user's organizations until the board's own is found (the server
   * checks the claim against boards, so a wrong guess is just `forbidden`). With `catchUp`, the
   * answer carries only the events since our `seq` when the server still has them.
   */
  async join({ catchUp }) {
    if (!this.socket?.connected || !this.boardId || !this.me) return;
    const attempt = ++this.joinAttempt;
    const boardId = this.boardId;
    this.joined = false;
    this.sequencer.hold();
    if (!this.everJoined) this.showScreen('loading');
    this.setStatus('connecting', 'Syncing…');
    const sinceSeq = catchUp && this.state.board?.id === boardId ? this.state.seq : undefined;
    const orgs = this.candidateOrgs();
    let answer = { ok: false, error: { code: 'forbidden', message: 'you are not a member of any organization' } };
    for (const organizationId of orgs) {
      const payload = { board_id: boardId, organization_id: organizationId };
      if (sinceSeq !== undefined) payload.since_seq = sinceSeq;
      answer = await this.call('join_board', payload, { mutation: false });
      if (attempt !== this.joinAttempt) return; // superseded by a newer join
      if (answer.ok || answer.error.code !== 'forbidden') break;
    }
    if (!answer.ok) {
      const { code, message } = answer.error;
      if (['unavailable', 'timeout', 'internal', 'rate_limited', 'offline'].includes(code)) {
        this.setStatus('offline', 'Retrying…');
        setTimeout(() => { if (attempt === this.joinAttempt) this.join({ catchUp }); }, 1500);
        return;
      }
      // The server answers another organization's board exactly like a missing one (no existence
      // oracle), so the page cannot tell the two apart either.
      const text = code === 'not_found' ? `Board “${boardId}” does not exist, or you do not have access to it.`
        : code === 'forbidden' ? `You do not have access to board “${boardId}”.` : message;
      this.leaveBoard();
      this.showPicker(text);
      return;
    }
    this.onJoined(answer.data, Boolean(sinceSeq !== undefined));
  }

  onJoined(data, caughtUp) {
    if (data.snapshot) {
      this.state.load(data.snapshot);
    } else {
      for (const envelope of data.events || []) {
        if (envelope.seq > this.state.seq) {
          this.rememberActors(envelope);
          this.state.apply(envelope);
        }
      }
    }
    // Broadcasts that crossed the answer were held; those after what we loaded apply now.
    this.sequencer.start(this.state.seq);
    this.canWrite = Boolean(data.can_write);
    this.joined = true;
    this.presence.clear();
    for (const entry of data.presence || []) this.setPresence(entry);
    this.rememberBoard(data.organization_id);
    const wasOffline = this.everJoined;
    this.everJoined = true;
    this.showScreen('board');
    this.hideBanner();
    this.setStatus('online', 'Live');
    this.renderAll();
    if (this.state.deleted) this.showDeleted();
    if (wasOffline && caughtUp) toast('Back online — the board is up to date.', { kind: 'success', testid: 'toast-online' });
    else if (!wasOffline) announce(`Board ${this.state.board?.name || ''} loaded`);
    this.sendPresence();
  }

  // ------------------------------------------------------------------ live events

  onBoardEvent(envelope) {
    if (!envelope || envelope.board_id !== this.boardId) return;
    this.rememberActors(envelope);
    this.sequencer.push(envelope);
  }

  applyEvent(envelope) {
    this.state.apply(envelope);
    if (envelope.event_type === 'board_deleted') this.showDeleted();
    this.scheduleRender();
  }

  rememberActors(envelope) {
    for (const actor of BoardState.actorsOf(envelope)) {
      if (!this.people.has(actor.id) || !this.people.get(actor.id).email) {
        this.people.set(actor.id, { user_id: actor.id, email: actor.email });
      }
    }
  }

  onPresence(envelope) {
    if (envelope.board_id !== this.boardId) return;
    const entry = envelope.data || envelope;
    this.setPresence(entry);
    this.renderPresence();
  }

  setPresence(entry) {
    if (!entry?.user_id) return;
    if (entry.status === 'offline' && entry.user_id !== this.me?.user_id) this.presence.delete(entry.user_id);
    else this.presence.set(entry.user_id, entry);
    if (entry.email) this.people.set(entry.user_id, { user_id: entry.user_id, email: entry.email });
  }

  onTyping(envelope) {
    if (envelope.board_id !== this.boardId) return;
    const data = envelope.data || {};
    const current = this.typing.get(data.user_id);
    if (current) clearTimeout(current.timer);
    if (data.is_typing && data.task_id) {
      const person = this.people.get(data.user_id) || { user_id: data.user_id, email: data.email };
      // The server sends "stopped" after 5 s without renewal; this is the fallback if that is lost.
      const timer = setTimeout(() => { this.typing.delete(data.user_id); this.scheduleRender(); }, TYPING_SHOW_MS);
      this.typing.set(data.user_id, { task_id: data.task_id, person, timer });
    } else {
      this.typing.delete(data.user_id);
    }
    this.scheduleRender();
  }

  sendTyping(taskId, isTyping) {
    if (this.joined) this.call('user_typing', { task_id: taskId, is_typing: isTyping }, { mutation: false });
  }

  sendPresence() {
    if (!this.joined) return;
    this.call('user_presence', { status: document.hidden ? 'away' : 'online' }, { mutation: false });
  }

  // ------------------------------------------------------------------ changes from this page

  async move(taskId, toColumnId, position) {
    if (!this.writable) {
      toast('This board is read-only for you.', { kind: 'warn' });
      return;
    }
    const where = this.state.whereIs(taskId);
    if (!where || (where.column_id === toColumnId && where.index === position)) return;
    const opId = randomId('move');
    this.state.beginMove(taskId, toColumnId, position, opId);
    this.renderAll();
    const ack = await this.call('task_moved', {
      task_id: taskId, from_column_id: where.column_id, to_column_id: toColumnId, position, client_op_id: opId,
    });
    if (ack.ok) {
      this.state.settleMove(taskId, opId, ack.data.seq);
      if (ack.data.conflict) this.showConflict(ack.data.conflict, opId, ack.data.task);
    } else {
      this.state.settleMove(taskId, opId);
      toast(`Could not move the card: ${ack.error.message}`, { kind: 'error' });
    }
    this.renderAll();
  }

  async createCard(columnId, title) {
    const ack = await this.call('task_created', { column_id: columnId, title });
    if (!ack.ok) toast(`Could not add the card: ${ack.error.message}`, { kind: 'error' });
    return ack.ok;
  }

  /** Tell the mover when the server put the card somewhere else than where it was dropped. */
  showConflict(conflict, opId, task) {
    if (!conflict || (opId && this.conflictsShown.has(opId))) return;
    if (opId) this.conflictsShown.add(opId);
    const { requested = {}, resolved = {} } = conflict;
    const sameColumn = (requested.to_column_id ?? resolved.to_column_id) === resolved.to_column_id;
    if (sameColumn && requested.position === resolved.position) return; // the drop held after all
    const name = this.state.columns.get(resolved.to_column_id)?.name;
    const column = name ? `“${name}”` : 'its column';
    const why = CONFLICT_TEXT[conflict.reason] || 'the board changed meanwhile';
    const title = task?.title ? `“${task.title}”` : 'The card';
    toast(`${title} went to position ${resolved.position + 1} of ${column}: ${why}.`,
      { kind: 'warn', testid: 'toast-conflict', timeoutMs: 8000 });
  }

  // ------------------------------------------------------------------ rendering

  scheduleRender() {
    if (this.renderQueued) return;
    this.renderQueued = true;
    Promise.resolve().then(() => {
      this.renderQueued = false;
      this.renderAll();
    });
  }

  renderAll() {
    if (!this.joined && !this.everJoined) return;
    const name = this.state.board?.name || this.boardId || '';
    $('[data-testid="board-name"]').textContent = name;
    document.title = name ? `${name} · Liveboard` : 'Liveboard';
    $('[data-testid="readonly-badge"]').hidden = this.canWrite;
    document.body.classList.toggle('can-write', this.writable);
    this.view.setWritable(this.writable);
    this.view.render(this.state);
    this.renderPresence();
    if (this.dialog.isOpen) this.dialog.refresh(this.state);
  }

  renderPresence() {
    const self = this.me?.user_id;
    const people = [...this.presence.values()].sort((a, b) => (a.user_id === self ? -1 : b.user_id === self ? 1
      : (a.email || '').localeCompare(b.email || '')));
    const shown = people.slice(0, 6).map((p) => {
      const node = avatar(p, { testid: 'presence-avatar', self: p.user_id === self });
      node.classList.toggle('away', p.status === 'away');
      return node;
    });
    if (people.length > 6) shown.push(h('span', { class: 'avatar avatar-more' }, `+${people.length - 6}`));
    const region = $('[data-testid="presence"]');
    region.replaceChildren(...shown);
    region.setAttribute('aria-label', `${people.length} ${people.length === 1 ? 'person' : 'people'} on this board`);
  }

  setStatus(state, text) {
    const node = $('[data-testid="connection-status"]');
    node.dataset.state = state;
    $('.status-text', node).textContent = text;
  }

  showBanner(text) {
    const banner = $('[data-testid="offline-banner"]');
    $('.banner-text', banner).textContent = text;
    banner.hidden = false;
    document.body.classList.add('is-offline');
  }

  hideBanner() {
    $('[data-testid="offline-banner"]').hidden = true;
    document.body.classList.remove('is-offline');
  }

  showDeleted() {
    toast('This board was deleted.', { kind: 'warn', timeoutMs: 0 });
  }

  /** One of: signin, picker, loading, board. */
  showScreen(name) {
    for (const screen of ['signin', 'picker', 'loading', 'board']) {
      $(`[data-screen="${screen}"]`).hidden = screen !== name;
    }
    document.body.dataset.view = name;
  }

  // ------------------------------------------------------------------ board picker

  recentKey() {
    return `liveboard.recent.${this.me?.user_id || 'anonymous'}`;
  }

  recentBoards() {
    try {
      const list = JSON.parse(localStorage.getItem(this.recentKey()) || '[]');
      return Array.isArray(list) ? list.filter((b) => b && ID_RE.test(b.id || '')) : [];
    } catch {
      return [];
    }
  }

  rememberBoard(organizationId) {
    const entry = { id: this.boardId, name: this.state.board?.name || this.boardId, organization_id: organizationId };
    const list = [entry, ...this.recentBoards().filter((b) => b.id !== entry.id)].slice(0, 8);
    localStorage.setItem(this.recentKey(), JSON.stringify(list));
  }

  showPicker(message) {
    this.showScreen('picker');
    this.setStatus(this.socket?.connected ? 'online' : 'offline', this.socket?.connected ? 'Connected' : 'Offline');
    $('[data-testid="picker-email"]').textContent = this.me?.email || this.me?.user_id || '';
    const error = $('[data-testid="picker-error"]');
    error.hidden = !message;
    error.textContent = message || '';
    const orgs = this.me?.organizations || [];
    const select = $('[data-testid="picker-org"]');
    select.replaceChildren(h('option', { value: '' }, 'Any of my organizations'),
      ...orgs.map((o) => h('option', { value: o.id }, `${o.id} (${o.role})`)));
    $('[data-testid="org-list"]').replaceChildren(...(orgs.length ? orgs.map((o) => h('li', { class: 'org-item' },
      h('div', { class: 'org' },
        h('span', { class: 'org-name' }, o.id), h('span', { class: `role role-${o.role}` }, o.role)),
      h('ul', { class: 'board-list org-boards', dataset: { testid: 'org-boards', orgId: o.id } },
        h('li', { class: 'empty' }, 'Loading boards…'))))
      : [h('li', { class: 'empty' }, 'You are not a member of any organization yet.')]));
    this.loadBoardLists(orgs);
    const recent = this.recentBoards();
    $('[data-testid="recent-boards"]').replaceChildren(...(recent.length
      ? recent.map((b) => this.boardLink(b, 'recent-board', `${b.organization_id} · ${b.id}`))
      : [h('li', { class: 'empty' }, 'Boards you open appear here.')]));
    $('[data-testid="picker-board"]').focus();
  }

  boardLink(board, testid, meta) {
    return h('li', {}, h('button', { class: 'board-link', type: 'button', dataset: { testid, boardId: board.id },
      onclick: () => this.openBoard(board.id, board.organization_id) },
    h('span', { class: 'board-link-name' }, board.name || board.id), h('span', { class: 'board-link-meta' }, meta)));
  }

  /** Each organization's boards, as the server lists them for this user (`list_boards`, newest first). */
  async loadBoardLists(orgs) {
    const generation = ++this.pickerGeneration;
    await Promise.all(orgs.map(async (org) => {
      const answer = await this.call('list_boards', { organization_id: org.id }, { mutation: false });
      const list = $(`[data-testid="org-boards"][data-org-id="${org.id}"]`);
      if (generation !== this.pickerGeneration || !list) return; // the picker was redrawn meanwhile
      if (!answer.ok) {
        list.replaceChildren(h('li', { class: 'empty' }, `Could not list the boards: ${answer.error.message}`));
        return;
      }
      const boards = answer.data?.boards || [];
      list.replaceChildren(...(boards.length
        ? boards.map((b) => this.boardLink(b, 'org-board', b.division_id ? `${b.division_id} · ${b.id}` : b.id))
        : [h('li', { class: 'empty' }, 'No boards yet.')]));
    }));
  }

  // ------------------------------------------------------------------ page chrome

  wireChrome() {
    $('.skip-link').addEventListener('click', (event) => {
      event.preventDefault();
      const first = $('[data-testid="card"]') || $('#board');
      first.focus();
    });
    $('[data-testid="signin-form"]').addEventListener('submit', (event) => {
      event.preventDefault();
      const token = $('[data-testid="signin-token"]').value.trim().replace(/^Bearer\s+/i, '');
      const board = $('[data-testid="signin-board"]').value.trim();
      if (!token) return;
      if (board && !ID_RE.test(board)) {
        this.signinError('A board id is 1–64 letters, digits, “-” or “_”.');
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, token);
      $('[data-testid="signin-token"]').value = '';
      this.boardId = board || null;
      this.replaceLocation(this.boardId, null);
      this.connect(token);
    });
    $('[data-testid="picker-form"]').addEventListener('submit', (event) => {
      event.preventDefault();
      const board = $('[data-testid="picker-board"]').value.trim();
      if (!ID_RE.test(board)) {
        this.showPicker('A board id is 1–64 letters, digits, “-” or “_”.');
        return;
      }
      this.openBoard(board, $('[data-testid="picker-org"]').value || null);
    });
    $('[data-testid="switch-board"]').addEventListener('click', () => {
      this.leaveBoard();
      this.showPicker();
    });
    $('[data-testid="sign-out"]').addEventListener('click', () => {
      this.leaveBoard();
      this.signOut();
    });
  }
}

new App().start();
