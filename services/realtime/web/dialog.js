// The card dialog: edit title, description, labels and due date; assignees; comments; move;
// delete. Live changes from others flow in without overwriting what the user is typing, and a
// save that raced someone else's edit is refused by the server (`version_conflict`), not lost.

import { $, avatar, formatTime, h, shortName, toast } from './ui.js';

const TYPING_RENEW_MS = 3000; // the server forgets a typing flag after 5 s without renewal
const TYPING_IDLE_MS = 4000;

/**
 * True (and remembered) when `key` differs from what `node` was last drawn from: lists in the
 * dialog are rebuilt only then, so a live update elsewhere on the board does not take the focus
 * from a checkbox or close an open dropdown.
 */
function changed(node, key) {
  const signature = JSON.stringify(key);
  if (node.dataset.signature === signature) return false;
  node.dataset.signature = signature;
  return true;
}

const FIELDS = {
  title: { selector: '[data-testid="card-title-input"]', read: (card) => card.title },
  description: { selector: '[data-testid="card-description-input"]', read: (card) => card.description || '' },
  labels: { selector: '[data-testid="card-labels-input"]', read: (card) => (card.labels || []).join(', ') },
  due_date: { selector: '[data-testid="card-due-input"]', read: (card) => card.due_date || '' },
};

export class CardDialog {
  /**
   * @param {HTMLDialogElement} dialog
   * @param {object} hooks  call(event, payload) -> Promise<ack>, typing(taskId, isTyping),
   *   people() -> [person], selfId() -> string, editorsOf(taskId) -> [person],
   *   card(taskId) -> card, onMove(taskId, columnId, position)
   */
  constructor(dialog, hooks) {
    this.dialog = dialog;
    this.hooks = hooks;
    this.taskId = null;
    // What the fields held when editing started (what "dirty" is measured against), and the
    // card version those values belong to (sent as `expected_version`).
    this.baseValues = null;
    this.baseVersion = null;
    this.writable = false;
    this.typingSentAt = 0;
    this.idleTimer = null;
    this.form = $('form.card-form', dialog);
    this.form.addEventListener('submit', (event) => { event.preventDefault(); this.save(); });
    for (const name of ['title', 'description']) {
      $(FIELDS[name].selector, dialog).addEventListener('input', () => this.onTyping());
    }
    dialog.addEventListener('close', () => this.onClosed());
    dialog.addEventListener('click', (event) => { if (event.target === dialog) dialog.close(); }); // backdrop
    $('[data-testid="card-cancel"]', dialog).addEventListener('click', () => dialog.close());
    $('[data-testid="dialog-close"]', dialog).addEventListener('click', () => dialog.close());
    $('[data-testid="card-delete"]', dialog).addEventListener('click', () => this.askDelete(true));
    $('[data-testid="card-delete-keep"]', dialog).addEventListener('click', () => this.askDelete(false));
    $('[data-testid="card-delete-confirm"]', dialog).addEventListener('click', () => this.remove());
    $('[data-testid="comment-form"]', dialog).addEventListener('submit', (event) => {
      event.preventDefault();
      this.comment();
    });
    $('[data-testid="comment-input"]', dialog).addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) { event.preventDefault(); this.comment(); }
    });
    $('[data-testid="move-form"]', dialog).addEventListener('submit', (event) => {
      event.preventDefault();
      this.move();
    });
  }

  get isOpen() {
    return this.dialog.open && this.taskId !== null;
  }

  open(taskId, state, writable) {
    const card = state.cards.get(taskId);
    if (!card) return;
    this.taskId = taskId;
    this.setBase(card);
    this.writable = writable;
    this.askDelete(false);
    $('[data-testid="dialog-conflict"]', this.dialog).hidden = true;
    for (const field of Object.values(FIELDS)) {
      const input = $(field.selector, this.dialog);
      input.value = field.read(card);
      input.readOnly = !writable;
      // "Add more detail…" invites an edit a viewer cannot make.
      input.dataset.placeholder ??= input.placeholder;
      input.placeholder = writable ? input.dataset.placeholder : '';
    }
    $('[data-testid="comment-input"]', this.dialog).value = '';
    this.dialog.classList.toggle('read-only', !writable);
    for (const node of this.dialog.querySelectorAll('[data-write]')) node.hidden = !writable;
    this.refresh(state);
    if (!this.dialog.open) this.dialog.showModal();
    $(writable ? FIELDS.title.selector : '[data-testid="dialog-close"]', this.dialog).focus();
  }

  close() {
    if (this.dialog.open) this.dialog.close();
  }

  onClosed() {
    this.stopTyping();
    const taskId = this.taskId;
    this.taskId = null;
    this.baseValues = null;
    // Back to the card that was opened, so keyboard users continue where they were.
    if (taskId) document.querySelector(`.card[data-card-id="${CSS.escape(taskId)}"]`)?.focus();
  }

  /** Bring the open dialog up to date with the board (called after every applied change). */
  refresh(state) {
    if (!this.taskId) return;
    const card = state.cards.get(this.taskId);
    if (!card) {
      toast('This card was deleted.', { kind: 'warn' });
      this.close();
      return;
    }
    // Someone else's change shows up in every field the user is not changing. The base version
    // moves on only if none of the fields the user changed was changed by them as well; otherwise
    // the save is refused (version_conflict) instead of silently overwriting their edit.
    let conflicting = false;
    for (const [name, field] of Object.entries(FIELDS)) {
      const input = $(field.selector, this.dialog);
      const remote = field.read(card);
      if (input.value === this.baseValues[name]) {
        input.value = remote;
        this.baseValues[name] = remote;
      } else if (remote !== this.baseValues[name]) conflicting = true;
    }
    if (!conflicting) this.baseVersion = card.version;
    $('[data-testid="dialog-heading"]', this.dialog).textContent = card.title;
    this.renderColumnChoice(state, card);
    this.renderAssignees(card);
    this.renderComments(state.comments.get(card.id) || []);
    const editors = this.hooks.editorsOf(card.id);
    const typing = $('[data-testid="dialog-typing"]', this.dialog);
    typing.hidden = editors.length === 0;
    typing.textContent = editors.length
      ? `${editors.map(shortName).join(', ')} ${editors.length === 1 ? 'is' : 'are'} editing this card`
      : '';
  }

  setBase(card) {
    this.baseValues = Object.fromEntries(Object.entries(FIELDS).map(([name, field]) => [name, field.read(card)]));
    this.baseVersion = card.version;
  }

  renderColumnChoice(state, card) {
    const select = $('[data-testid="move-column"]', this.dialog);
    const columns = state.columnsInOrder();
    const current = select.value || card.column_id;
    if (changed(select, columns.map((c) => [c.id, c.name]))) {
      select.replaceChildren(...columns.map((column) => h('option', { value: column.id }, column.name)));
    }
    select.value = columns.some((c) => c.id === current) && select.dataset.touched === 'true' ? current
      : card.column_id;
    const where = state.whereIs(card.id);
    const position = $('[data-testid="move-position"]', this.dialog);
    if (position.dataset.touched !== 'true') position.value = String((where?.index ?? 0) + 1);
    select.onchange = () => { select.dataset.touched = 'true'; };
    position.oninput = () => { position.dataset.touched = 'true'; };
  }

  renderAssignees(card) {
    const list = $('[data-testid="assignees"]', this.dialog);
    const assigned = new Set(card.assignee_ids || []);
    const people = new Map(this.hooks.people().map((p) => [p.user_id, p]));
    for (const id of assigned) if (!people.has(id)) people.set(id, { user_id: id });
    const self = this.hooks.selfId();
    const ordered = [...people.values()].sort((a, b) => (a.user_id === self ? -1 : b.user_id === self ? 1
      : (a.email || a.user_id).localeCompare(b.email || b.user_id)));
    if (!changed(list, [ordered.map((p) => [p.user_id, p.email]), [...assigned], this.writable])) return;
    list.replaceChildren(...ordered.map((person) => {
      const box = h('input', { type: 'checkbox', checked: assigned.has(person.user_id), disabled: !this.writable,
        dataset: { testid: 'assignee-checkbox', userId: person.user_id } });
      box.addEventListener('change', () => this.assign(person.user_id, box.checked));
      const name = shortName(person);
      return h('li', {}, h('label', { class: 'assignee', title: person.email || person.user_id,
        dataset: { testid: 'assignee-option', userId: person.user_id } },
      box, avatar(person, { size: 'avatar-sm', testid: 'assignee-avatar' }),
      h('span', { class: 'assignee-name' }, person.user_id === self ? `${name} (you)` : name)));
    }));
  }

  renderComments(comments) {
    const list = $('[data-testid="comments"]', this.dialog);
    const people = new Map(this.hooks.people().map((p) => [p.user_id, p]));
    const authors = comments.map((c) => people.get(c.author_id)?.email);
    if (!changed(list, [this.taskId, comments.map((c) => c.id), authors])) return;
    if (!comments.length) {
      list.replaceChildren(h('li', { class: 'empty' }, 'No comments since you opened the board.'));
      return;
    }
    list.replaceChildren(...comments.map((comment) => {
      const author = people.get(comment.author_id) || { user_id: comment.author_id };
      return h('li', { class: 'comment', dataset: { testid: 'comment' } },
        avatar(author, { size: 'avatar-sm', testid: 'comment-avatar' }),
        h('div', { class: 'comment-body' },
          h('p', { class: 'comment-meta' }, h('strong', {}, shortName(author)), ' · ',
            h('time', { datetime: comment.created_at }, formatTime(comment.created_at))),
          h('p', { class: 'comment-text' }, comment.body)));
    }));
  }

  // ------------------------------------------------------------------ actions

  async save() {
    if (!this.writable || !this.taskId) return;
    const changes = {};
    for (const [name, field] of Object.entries(FIELDS)) {
      const value = $(field.selector, this.dialog).value;
      if (value === this.baseValues[name]) continue;
      if (name === 'labels') changes.labels = [...new Set(value.split(',').map((l) => l.trim()).filter(Boolean))];
      else if (name === 'due_date') changes.due_date = value || null;
      else if (name === 'title') changes.title = value.trim();
      else changes[name] = value;
    }
    if (Object.keys(changes).length === 0) { this.close(); return; }
    if (changes.title === '') { toast('A card needs a title.', { kind: 'warn' }); return; }
    const button = $('[data-testid="card-save"]', this.dialog);
    button.disabled = true;
    const ack = await this.hooks.call('task_updated', {
      task_id: this.taskId, changes, expected_version: this.baseVersion,
    });
    button.disabled = false;
    if (ack.ok) { this.close(); return; }
    if (ack.error.code === 'version_conflict' && ack.error.current) {
      // Keep what the user typed; the next save is a deliberate overwrite of the newer version.
      this.baseVersion = ack.error.current.version;
      $('[data-testid="dialog-conflict"]', this.dialog).hidden = false;
      return;
    }
    toast(`Could not save: ${ack.error.message}`, { kind: 'error' });
  }

  askDelete(asking) {
    $('[data-testid="delete-confirm"]', this.dialog).hidden = !asking;
    $('[data-testid="card-delete"]', this.dialog).hidden = asking || !this.writable;
    if (asking) $('[data-testid="card-delete-confirm"]', this.dialog).focus();
  }

  async remove() {
    const taskId = this.taskId;
    const ack = await this.hooks.call('task_deleted', { task_id: taskId });
    if (ack.ok) {
      this.taskId = null; // do not refocus a card that is gone
      this.close();
    } else toast(`Could not delete: ${ack.error.message}`, { kind: 'error' });
  }

  async comment() {
    const input = $('[data-testid="comment-input"]', this.dialog);
    const body = input.value.trim();
    if (!body || !this.writable) return;
    input.disabled = true;
    const ack = await this.hooks.call('task_commented', { task_id: this.taskId, body });
    input.disabled = false;
    if (ack.ok) input.value = '';
    else toast(`Could not comment: ${ack.error.message}`, { kind: 'error' });
    input.focus();
  }

  async assign(userId, on) {
    const card = this.taskId ? this.hooks.card(this.taskId) : null;
    if (!card) return;
    const ids = new Set(card.assignee_ids || []);
    if (on) ids.add(userId);
    else ids.delete(userId);
    const ack = await this.hooks.call('task_assigned', { task_id: this.taskId, assignee_ids: [...ids] });
    if (!ack.ok) toast(`Could not change assignees: ${ack.error.message}`, { kind: 'error' });
  }

  move() {
    const column = $('[data-testid="move-column"]', this.dialog).value;
    const position = Math.max(1, Number.parseInt($('[data-testid="move-position"]', this.dialog).value, 10) || 1);
    for (const el of this.dialog.querySelectorAll('[data-touched]')) delete el.dataset.touched;
    this.hooks.onMove(this.taskId, column, position - 1);
  }

  // ------------------------------------------------------------------ typing indicator

  onTyping() {
    if (!this.writable || !this.taskId) return;
    const now = Date.now();
    if (now - this.typingSentAt > TYPING_RENEW_MS) {
      this.typingSentAt = now;
      this.hooks.typing(this.taskId, true);
    }
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  stopTyping() {
    clearTimeout(this.idleTimer);
    if (this.typingSentAt && this.taskId) this.hooks.typing(this.taskId, false);
    this.typingSentAt = 0;
  }
}
