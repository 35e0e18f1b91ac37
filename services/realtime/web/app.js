// Liveboard demo page: sign-in, the board picker, and a board kept live by @liveboard/client.
//
// The page is the SDK's first user: the board's state (confirmed events in `seq` order, optimistic
// edits on top, the offline queue in IndexedDB, exactly-once replay) is the SDK's `Board`, and the
// page only draws `board.state` on every `change`. What the SDK leaves to an app stays here: the
// sign-in, the picker (`list_boards` on the SDK's socket), comments (not part of a board's state),
// avatars and typing indicators.

import { CardDialog } from './dialog.js';
import { $, announce, avatar, h, toast } from './ui.js';
import { BoardView } from './view.js';

const TOKEN_KEY = 'liveboard.token';
const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const ACK_TIMEOUT_MS = 10000;
const TYPING_SHOW_MS = 6000;
const ACTOR_FIELDS = ['moved_by', 'created_by', 'updated_by', 'assigned_by', 'deleted_by', 'author'];
const CONFLICT_TEXT = {
  position_clamped: 'the column had fewer cards by then',
  stale_from_column: 'someone had moved it first',
  stale_version: 'the card had changed meanwhile',
};
const OFFLINE_TEXT = 'You are offline. Your changes are kept and sent when the connection is back.';

/** The `sub` of a JWT (not a verification: the server checks the token). */
function tokenSubject(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part)).sub || null;
  } catch {
    return null;
  }
}

/**
 * What the view and the dialog draw from: the SDK's `board.state` (already in order, pending
 * edits applied) as maps, plus the comments seen since the board was opened.
 */
class ViewState {
  constructor(state = null, pending = [], comments = new Map()) {
    this.board = state?.board || null;
    this.deleted = Boolean(state?.deleted);
    this.seq = state?.seq || 0;
    this.ordered = state?.columns || [];
    this.columns = new Map(this.ordered.map((c) => [c.id, c]));
    this.cards = new Map((state?.cards || []).map((c) => [c.id, c]));
    this.comments = comments;
    // Cards with an edit not confirmed yet (drawn faded until the server has it).
    this.pendingMoves = new Set(pending.map((op) => op.payload?.task_id ?? op.payload?.id).filter(Boolean));
    this.lists = new Map(this.ordered.map((c) => [c.id, []]));
    for (const card of state?.cards || []) {
      if (!this.lists.has(card.column_id)) this.lists.set(card.column_id, []);
      this.lists.get(card.column_id).push(card);
    }
  }

  columnsInOrder() {
    return this.ordered;
  }

  layout() {
    return this.lists;
  }

  whereIs(taskId) {
    for (const [columnId, list] of this.lists) {
      const index = list.findIndex((c) => c.id === taskId);
      if (index >= 0) return { column_id: columnId, index };
    }
    return null;
  }
}

class App {
  constructor() {
    this.state = new ViewState();
    this.sdk = null; // the @liveboard/client module
    this.client = null;
    this.board = null; // the SDK's Board
    this.boardSubs = [];
    this.token = null;
    this.me = null; // the `connection_established` payload: user_id, email, organizations
    this.boardId = null;
    this.preferredOrg = null;
    this.everJoined = false;
    this.wasOffline = false;
    this.joinAttempt = 0;
    this.presence = new Map(); // user_id -> {user_id, email, status}
    this.people = new Map(); // user_id -> {user_id, email}: everyone seen, for avatars and assignees
    this.typing = new Map(); // user_id -> {task_id, person, timer}
    this.comments = new Map(); // task_id -> [comment] seen since this page opened the board
    this.conflictsShown = new Set();
    this.renderQueued = false;
    this.pickerGeneration = 0; // a newer picker drawing makes older board-list answers stale

    const hooks = {
      person: (id) => this.people.get(id) || null,
      editorsOf: (taskId) => [...this.typing.values()].filter((t) => t.task_id === taskId).map((t) => t.person),
      selfId: () => this.me?.user_id || tokenSubject(this.token || ''),
      onMove: (taskId, columnId, position) => this.move(taskId, columnId, position),
    };
    this.view = new BoardView($('#board'), {
      ...hooks,
      onOpen: (taskId) => this.dialog.open(taskId, this.state, this.writable),
      onCreate: (columnId, title) => this.createCard(columnId, title),
    });
    this.dialog = new CardDialog($('[data-testid="card-dialog"]'), {
      ...hooks,
      call: (event, payload) => this.mutate(event, payload),
      typing: (taskId, isTyping) => this.board?.setTyping(taskId, isTyping),
      people: () => [...this.people.values()],
      card: (taskId) => this.state.cards.get(taskId),
    });
    this.wireChrome();
    // For tests and the curious: the client, its socket and the board (nothing secret beyond the user's own token).
    window.liveboard = this;
  }

  get socket() {
    return this.client?.socket || null;
  }

  get canWrite() {
    return Boolean(this.board && (this.board.status === 'live' ? this.board.canWrite : this.rememberedCanWrite()));
  }

  /** Edits work offline too (the SDK queues them); only viewers and deleted boards are read-only. */
  get writable() {
    return Boolean(this.board && !this.board.closed && this.canWrite && !this.state.deleted);
  }

  // ------------------------------------------------------------------ start and sign-in

  async start() {
    const clientUrl = document.querySelector('meta[name="liveboard:socket-io-client"]')?.content;
    const sdkUrl = document.querySelector('meta[name="liveboard:client"]')?.content;
    try {
      if (!clientUrl || !sdkUrl) throw new Error('missing');
      this.sdk = await import(sdkUrl);
    } catch {
      this.showScreen('signin');
      this.signinError('The page’s scripts are not installed on this server (run `make sdk` and `npm ci` in services/realtime/web).');
      return;
    }
    // The page itself, its scripts and the SDK are cached by a service worker, so a reload works offline.
    navigator.serviceWorker?.register('/sw.js').catch(() => {});
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
    if (!stored || stored !== this.token || !this.client) {
      this.boardId = board;
      this.preferredOrg = org;
      if (!stored) this.showSignIn();
      else this.connect(stored);
      return;
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

  // ------------------------------------------------------------------ the client

  connect(token) {
    this.disconnect();
    this.token = token;
    this.setStatus('connecting', 'Connecting…');
    this.showScreen('loading');
    const client = this.sdk.createClient({
      url: window.location.origin,
      getToken: () => this.token,
      reconnectionDelay: 500,
      reconnectionDelayMax: 3000,
      ackTimeoutMs: ACK_TIMEOUT_MS,
    });
    this.client = client;
    const socket = client.socket;
    client.on('status', (status) => this.onClientStatus(status));
    socket.on('connection_established', (welcome) => this.onWelcome(welcome));
    socket.on('connect_error', (error) => this.onConnectError(error));
    socket.onAny((event, envelope) => this.onSocketEvent(event, envelope));
    socket.on('token_expiring', (message) => {
      const when = new Date(message.expires_at * 1000).toLocaleTimeString();
      toast(`Your session ends at ${when}. Sign in again with a fresh token to keep working.`,
        { kind: 'warn', timeoutMs: 15000 });
    });
    socket.on('session_expired', () => this.signOut('Your session has expired. Sign in again.'));
    socket.on('server_shutdown', () => this.showBanner('The server is restarting. Reconnecting…'));
    // A board this browser has open before opens from its stored state, also offline.
    if (this.boardId && this.rememberedOrg()) this.join();
  }

  disconnect() {
    this.closeBoard();
    if (!this.client) return;
    this.client.socket.removeAllListeners();
    this.client.close();
    this.client = null;
  }

  onClientStatus(status) {
    if (status === 'connected') {
      this.setStatus('connecting', 'Syncing…');
      return;
    }
    if (status === 'reconnecting' || status === 'offline') {
      this.setStatus('offline', 'Offline');
      if (this.board) {
        this.wasOffline = true;
        this.showBanner(OFFLINE_TEXT);
      }
    }
  }

  onWelcome(welcome) {
    this.me = welcome;
    this.people.set(welcome.user_id, { user_id: welcome.user_id, email: welcome.email });
    $('[data-testid="user-email"]').textContent = welcome.email || welcome.user_id;
    document.body.classList.add('signed-in');
    if (this.board) return; // the SDK re-joins by itself (with since_seq)
    if (this.boardId) this.join();
    else this.showPicker();
  }

  onConnectError(error) {
    const code = error?.data?.code;
    if (code === 'unauthorized') {
      this.signOut(`Sign-in refused: ${error.data.message || error.message}`);
      return;
    }
    if (code === 'forbidden') {
      this.signOut(`Connection refused: ${error.data.message}`);
      return;
    }
    this.setStatus('offline', code === 'rate_limited' ? 'Rate limited' : 'Offline');
    if (this.board) this.showBanner(OFFLINE_TEXT);
    // Refusals (server_full, rate_limited, unavailable): the SDK hands them back to socket.io-client.
  }

  /** Emit a request that is not a board edit (`list_boards`); never throws. */
  call(event, payload) {
    if (!this.socket?.connected) {
      return Promise.resolve({ ok: false, error: { code: 'offline', message: 'you are offline' } });
    }
    return new Promise((resolve) => {
      this.socket.timeout(ACK_TIMEOUT_MS).emit(event, payload, (error, ack) => {
        if (error) resolve({ ok: false, error: { code: 'timeout', message: 'the server did not answer' } });
        else resolve(ack && typeof ack === 'object' ? ack : { ok: false, error: { code: 'internal', message: 'bad answer' } });
      });
    });
  }

  /**
   * A board edit from the dialog, through the SDK. Offline (or catching up) the edit is queued and
   * already on screen, so the answer is "ok, queued" at once; live, it is the server's answer.
   */
  async mutate(event, payload) {
    const board = this.board;
    if (!board) return { ok: false, error: { code: 'offline', message: 'no board is open' } };
    const id = payload.task_id;
    const options = payload.expected_version !== undefined ? { expectedVersion: payload.expected_version } : {};
    const run = {
      task_updated: () => board.updateCard(id, payload.changes, options),
      task_deleted: () => board.deleteCard(id),
      task_commented: () => board.comment(id, payload.body),
      task_assigned: () => board.assign(id, payload.assignee_ids),
      task_created: () => board.createCard(payload.column_id, payload.title),
    }[event];
    if (!run) return { ok: false, error: { code: 'invalid', message: `unknown edit ${event}` } };
    const result = run();
    if (board.status !== 'live') return { ok: true, queued: true };
    try {
      return { ok: true, data: await result };
    } catch (error) {
      return { ok: false, error };
    }
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
    this.join();
  }

  closeBoard() {
    for (const off of this.boardSubs) off();
    this.boardSubs = [];
    this.board?.close();
    this.board = null;
  }

  leaveBoard() {
    this.joinAttempt++;
    this.closeBoard();
    this.everJoined = false;
    this.wasOffline = false;
    this.dialog.close();
    this.state = new ViewState();
    this.comments = new Map();
    this.presence.clear();
    this.typing.clear();
    this.boardId = null;
    this.replaceLocation(null, null);
  }

  userId() {
    return this.me?.user_id || tokenSubject(this.token || '') || 'anonymous';
  }

  rememberedEntry() {
    return this.recentBoards().find((b) => b.id === this.boardId) || null;
  }

  rememberedOrg() {
    return this.rememberedEntry()?.organization_id || null;
  }

  rememberedCanWrite() {
    return Boolean(this.rememberedEntry()?.can_write);
  }

  /** Organizations to try for this board: the requested or remembered one first. */
  candidateOrgs() {
    const mine = (this.me?.organizations || []).map((o) => o.id);
    const recent = this.rememberedOrg();
    if (!this.me) return recent ? [recent] : [];
    return [...new Set([this.preferredOrg, recent, ...mine].filter((id) => id && mine.includes(id)))];
  }

  /**
   * `client.openBoard`, trying the user's organizations until the board's own is found (the server
   * checks the claim against boards, so a wrong guess is just `forbidden`). A board opened here
   * before opens at once from its stored state, also offline; the SDK catches up when it can.
   */
  async join() {
    if (!this.client || !this.boardId || this.board) return;
    const attempt = ++this.joinAttempt;
    const boardId = this.boardId;
    if (!this.everJoined) this.showScreen('loading');
    this.setStatus('connecting', 'Syncing…');
    let failure = { code: 'forbidden', message: 'you are not a member of any organization' };
    for (const organizationId of this.candidateOrgs()) {
      try {
        const board = await this.client.openBoard({ boardId, organizationId });
        if (attempt !== this.joinAttempt) { board.close(); return; }
        this.onOpened(board, organizationId);
        return;
      } catch (error) {
        if (attempt !== this.joinAttempt) return;
        failure = error || failure;
        if (failure.code !== 'forbidden') break;
      }
    }
    if (!this.me) return; // offline and never opened here: the welcome tries again
    // The server answers another organization's board exactly like a missing one (no existence
    // oracle), so the page cannot tell the two apart either.
    const { code, message } = failure;
    const text = code === 'not_found' ? `Board “${boardId}” does not exist, or you do not have access to it.`
      : code === 'forbidden' ? `You do not have access to board “${boardId}”.` : message;
    this.leaveBoard();
    this.showPicker(text);
  }

  onOpened(board, organizationId) {
    this.board = board;
    const on = (event, fn) => this.boardSubs.push(board.on(event, fn));
    on('change', ({ cause }) => {
      if (cause === 'resync' || cause === 'remote') this.dropStaleComments();
      this.scheduleRender();
    });
    on('status', (status) => this.onBoardStatus(status));
    on('presence', (list) => this.onPresenceList(list));
    on('typing', (data) => this.onTyping(data));
    on('conflict', ({ op, conflict, task }) => this.showConflict(conflict, op?.clientOpId, task));
    on('rejected', ({ op, error }) => this.onRejected(op, error));
    on('closed', ({ reason }) => this.onBoardClosed(reason));
    this.onPresenceList(board.presence);
    this.onBoardStatus(board.status, organizationId);
  }

  onBoardStatus(status, organizationId = null) {
    if (!this.board) return;
    if (status === 'live') {
      this.rememberBoard(organizationId || this.board.organizationId, this.board.canWrite);
      const first = !this.everJoined;
      const caughtUp = this.wasOffline;
      this.everJoined = true;
      this.wasOffline = false;
      this.showScreen('board');
      this.hideBanner();
      this.setStatus('online', 'Live');
      this.renderAll();
      if (this.state.deleted) this.showDeleted();
      if (caughtUp) toast('Back online — the board is up to date.', { kind: 'success', testid: 'toast-online' });
      else if (first) announce(`Board ${this.state.board?.name || ''} loaded`);
      this.sendPresence();
    } else if (status === 'offline') {
      this.wasOffline = true;
      this.everJoined = true;
      document.body.classList.add('signed-in'); // opened from storage: no welcome yet
      this.showScreen('board');
      this.setStatus('offline', 'Offline');
      this.showBanner(OFFLINE_TEXT);
      this.renderAll();
    } else {
      this.setStatus('connecting', 'Syncing…');
    }
  }

  onBoardClosed(reason) {
    if (reason === 'deleted') {
      this.renderAll();
      this.showDeleted();
    } else if (reason === 'access_revoked') {
      this.leaveBoard();
      this.showPicker('You no longer have access to that board.');
    }
  }

  onRejected(op, error) {
    const what = { task_moved: 'move the card', task_created: 'add the card', task_updated: 'save',
      task_deleted: 'delete', task_commented: 'comment', task_assigned: 'change assignees' }[op?.type] || 'save';
    if (op?.type === 'task_updated' && error?.code === 'version_conflict') return; // the dialog shows it
    toast(`Could not ${what}: ${error?.message || error?.code}`, { kind: 'error' });
  }

  // ------------------------------------------------------------------ what the SDK leaves to the page

  /** Persisted broadcasts also carry who did what (for avatars) and comments (not in a board's state). */
  onSocketEvent(event, envelope) {
    if (!envelope || envelope.board_id !== this.boardId || !envelope.data) return;
    for (const field of ACTOR_FIELDS) {
      const actor = envelope.data[field];
      if (actor?.id && (!this.people.has(actor.id) || !this.people.get(actor.id).email)) {
        this.people.set(actor.id, { user_id: actor.id, email: actor.email });
      }
    }
    if (event === 'task_commented' && envelope.data.comment) {
      const list = this.comments.get(envelope.data.task_id) || [];
      if (!list.some((c) => c.id === envelope.data.comment.id)) list.push(envelope.data.comment);
      this.comments.set(envelope.data.task_id, list);
      this.scheduleRender();
    }
  }

  dropStaleComments() {
    const cards = new Set((this.board?.state.cards || []).map((c) => c.id));
    for (const taskId of this.comments.keys()) if (!cards.has(taskId)) this.comments.delete(taskId);
  }

  onPresenceList(list) {
    this.presence.clear();
    for (const entry of list || []) {
      if (!entry?.user_id) continue;
      this.presence.set(entry.user_id, entry);
      if (entry.email) this.people.set(entry.user_id, { user_id: entry.user_id, email: entry.email });
    }
    const self = this.userId();
    if (this.board?.status === 'live' && !this.presence.has(self) && this.me) {
      this.presence.set(self, { user_id: self, email: this.me.email, status: 'online' });
    }
    this.renderPresence();
  }

  onTyping(data) {
    if (!data?.user_id) return;
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

  sendPresence() {
    this.board?.setPresence(document.hidden ? 'away' : 'online');
  }

  // ------------------------------------------------------------------ changes from this page

  move(taskId, toColumnId, position) {
    if (!this.writable) {
      toast('This board is read-only for you.', { kind: 'warn' });
      return;
    }
    const where = this.state.whereIs(taskId);
    if (!where || (where.column_id === toColumnId && where.index === position)) return;
    this.board.moveCard(taskId, toColumnId, position); // on screen at once; refusals come as `rejected`
  }

  async createCard(columnId, title) {
    const answer = await this.mutate('task_created', { column_id: columnId, title });
    return answer.ok;
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
    if (!this.board) return;
    this.state = new ViewState(this.board.state, this.board.pending, this.comments);
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
    return `liveboard.recent.${this.userId()}`;
  }

  recentBoards() {
    try {
      const list = JSON.parse(localStorage.getItem(this.recentKey()) || '[]');
      return Array.isArray(list) ? list.filter((b) => b && ID_RE.test(b.id || '')) : [];
    } catch {
      return [];
    }
  }

  rememberBoard(organizationId, canWrite) {
    const entry = { id: this.boardId, name: this.board?.state.board?.name || this.boardId,
      organization_id: organizationId, can_write: Boolean(canWrite) };
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
      const answer = await this.call('list_boards', { organization_id: org.id });
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
