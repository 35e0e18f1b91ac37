// The board on screen: columns and cards, drag and drop, keyboard moves, inline card creation.
//
// Rendering is keyed (one element per column and per card, reused), so a live update moves only
// the nodes that changed place: the card someone else is looking at, or has focused, stays put.

import { announce, avatar, h, icon, shortName } from './ui.js';

const DESCRIPTION_EXCERPT = 140;

export class BoardView {
  /**
   * @param {HTMLElement} root  the element that holds the columns
   * @param {object} hooks  onMove(taskId, toColumnId, position), onOpen(taskId),
   *   onCreate(columnId, title) -> Promise<boolean>, person(userId) -> {user_id, email}|null,
   *   editorsOf(taskId) -> [person], selfId() -> string
   */
  constructor(root, hooks) {
    this.root = root;
    this.hooks = hooks;
    this.columnEls = new Map();
    this.cardEls = new Map();
    this.writable = false;
    this.drag = null;
    this.marker = h('li', { class: 'drop-marker', 'aria-hidden': 'true', dataset: { testid: 'drop-marker' } });
    this.layout = new Map();
    this.columns = [];
    root.addEventListener('keydown', (event) => this.onKeyDown(event));
    // The whole height of the board is a drop zone: a drop below a short column lands at its end.
    root.addEventListener('dragover', (event) => this.onDragOver(event));
    root.addEventListener('drop', (event) => this.onDrop(event));
    root.addEventListener('dragleave', (event) => {
      if (!root.contains(event.relatedTarget)) this.marker.remove();
    });
  }

  setWritable(writable) {
    this.writable = writable;
    this.root.classList.toggle('read-only', !writable);
    for (const el of this.cardEls.values()) el.draggable = writable;
    for (const el of this.columnEls.values()) {
      if (!writable) this.closeComposer(el, { focus: false });
      el.querySelector('.add-card').hidden = !writable || !el.querySelector('.composer').hidden;
    }
  }

  render(state) {
    const focusedId = document.activeElement?.closest?.('.card')?.dataset.cardId;
    this.marker.remove();
    this.columns = state.columnsInOrder();
    this.layout = state.layout();
    const wanted = this.columns.map((column) => this.columnEl(column));
    this.placeChildren(this.root, wanted);
    for (const [id, el] of this.columnEls) if (!state.columns.has(id)) { el.remove(); this.columnEls.delete(id); }
    for (const column of this.columns) {
      const cards = this.layout.get(column.id) || [];
      const el = this.columnEls.get(column.id);
      this.updateColumnHeader(el, column, cards.length);
      this.placeChildren(el.querySelector('.cards'), cards.map((card) => this.cardEl(card, state)));
    }
    for (const [id, el] of this.cardEls) if (!state.cards.has(id)) { el.remove(); this.cardEls.delete(id); }
    if (focusedId && this.cardEls.has(focusedId) && document.activeElement !== this.cardEls.get(focusedId)) {
      const el = this.cardEls.get(focusedId);
      el.focus({ preventScroll: true });
      el.scrollIntoView({ block: 'nearest', inline: 'nearest' });
    }
  }

  /** Make `parent`'s children exactly `wanted`, in order, moving as few nodes as possible. */
  placeChildren(parent, wanted) {
    wanted.forEach((node, index) => {
      if (parent.children[index] !== node) parent.insertBefore(node, parent.children[index] || null);
    });
    while (parent.children.length > wanted.length) parent.lastElementChild.remove();
  }

  // ------------------------------------------------------------------ columns

  columnEl(column) {
    let el = this.columnEls.get(column.id);
    if (el) return el;
    const list = h('ol', { class: 'cards', dataset: { testid: 'column-cards' } });
    const input = h('input', {
      class: 'composer-input', type: 'text', maxlength: 500, required: true, autocomplete: 'off',
      placeholder: 'Card title', 'aria-label': 'New card title', dataset: { testid: 'new-card-title' },
    });
    const composer = h('form', { class: 'composer', hidden: true, dataset: { testid: 'new-card-form' } },
      input,
      h('div', { class: 'composer-actions' },
        h('button', { class: 'btn btn-primary', type: 'submit', dataset: { testid: 'new-card-submit' } }, 'Add card'),
        h('button', { class: 'btn btn-ghost', type: 'button', dataset: { testid: 'new-card-cancel' },
          onclick: () => this.closeComposer(el) }, 'Cancel')));
    composer.addEventListener('submit', (event) => {
      event.preventDefault();
      this.submitComposer(el, column.id);
    });
    input.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') { event.preventDefault(); this.closeComposer(el); }
    });
    const add = h('button', { class: 'add-card', type: 'button', hidden: !this.writable,
      dataset: { testid: 'add-card' }, onclick: () => this.openComposer(el) },
    h('span', { 'aria-hidden': 'true' }, '+'), ' Add a card');
    el = h('section', { class: 'column', dataset: { testid: 'column', columnId: column.id } },
      h('header', { class: 'column-header' },
        h('h2', { class: 'column-name', dataset: { testid: 'column-name' } }),
        h('span', { class: 'column-count', dataset: { testid: 'column-count' } })),
      list, composer, add);
    this.columnEls.set(column.id, el);
    return el;
  }

  updateColumnHeader(el, column, count) {
    const name = el.querySelector('.column-name');
    if (name.textContent !== column.name) name.textContent = column.name;
    const list = el.querySelector('.cards');
    list.setAttribute('aria-label', `${column.name}: ${count} ${count === 1 ? 'card' : 'cards'}`);
    const countEl = el.querySelector('.column-count');
    const limit = column.wip_limit;
    countEl.textContent = Number.isInteger(limit) ? `${count} / ${limit}` : String(count);
    countEl.title = Number.isInteger(limit) ? `Work-in-progress limit ${limit}` : `${count} cards`;
    el.classList.toggle('over-limit', Number.isInteger(limit) && count > limit);
  }

  openComposer(columnEl) {
    if (!this.writable) return;
    const form = columnEl.querySelector('.composer');
    form.hidden = false;
    columnEl.querySelector('.add-card').hidden = true;
    form.querySelector('input').focus();
  }

  closeComposer(columnEl, { focus = true } = {}) {
    const form = columnEl.querySelector('.composer');
    if (form.hidden) return;
    form.hidden = true;
    form.querySelector('input').value = '';
    const add = columnEl.querySelector('.add-card');
    add.hidden = !this.writable;
    if (focus && !add.hidden) add.focus();
  }

  async submitComposer(columnEl, columnId) {
    const input = columnEl.querySelector('.composer-input');
    const title = input.value.trim();
    if (!title) { input.focus(); return; }
    input.disabled = true;
    const ok = await this.hooks.onCreate(columnId, title);
    input.disabled = false;
    if (ok) input.value = '';
    input.focus(); // ready for the next card, as in every kanban tool
  }

  // ------------------------------------------------------------------ cards

  cardEl(card, state) {
    let el = this.cardEls.get(card.id);
    if (!el) {
      el = h('li', { class: 'card', tabindex: 0, dataset: { testid: 'card', cardId: card.id },
        'aria-roledescription': 'card', 'aria-haspopup': 'dialog' });
      el.draggable = this.writable;
      el.addEventListener('click', () => this.hooks.onOpen(el.dataset.cardId));
      el.addEventListener('dragstart', (event) => this.onDragStart(event, el));
      el.addEventListener('dragend', () => this.endDrag());
      this.cardEls.set(card.id, el);
    }
    const comments = (state.comments.get(card.id) || []).length;
    const editors = this.hooks.editorsOf(card.id);
    const assignees = (card.assignee_ids || []).map((id) => this.hooks.person(id) || { user_id: id });
    // Everything the card shows, so it is rebuilt only when something on it changed (including
    // an assignee whose email became known after the card was first drawn).
    const signature = JSON.stringify([card.version, card.title, card.description, card.labels, card.due_date,
      assignees.map((p) => [p.user_id, p.email]), comments, editors.map((p) => p.user_id),
      state.pendingMoves.has(card.id)]);
    if (el.dataset.signature !== signature) {
      el.dataset.signature = signature;
      el.dataset.version = String(card.version);
      el.classList.toggle('pending', state.pendingMoves.has(card.id));
      el.replaceChildren(...this.cardContent(card, comments, editors, assignees));
      el.setAttribute('aria-label', card.title);
    }
    return el;
  }

  cardContent(card, comments, editors, people) {
    const parts = [];
    if (card.labels?.length) {
      parts.push(h('ul', { class: 'labels', 'aria-label': 'Labels' },
        card.labels.map((label) => h('li', { class: 'label', dataset: { testid: 'card-label' } }, label))));
    }
    parts.push(h('p', { class: 'card-title', dataset: { testid: 'card-title' } }, card.title));
    if (card.description) {
      const excerpt = card.description.length > DESCRIPTION_EXCERPT
        ? `${card.description.slice(0, DESCRIPTION_EXCERPT).trimEnd()}…` : card.description;
      parts.push(h('p', { class: 'card-description', dataset: { testid: 'card-description' } }, excerpt));
    }
    const meta = [];
    if (card.due_date) {
      const overdue = card.due_date < new Date().toISOString().slice(0, 10);
      meta.push(h('span', { class: `chip${overdue ? ' chip-warn' : ''}`, title: 'Due date' },
        icon('clock'), formatDate(card.due_date)));
    }
    if (comments) {
      meta.push(h('span', { class: 'chip', title: `${comments} new comment${comments === 1 ? '' : 's'}`,
        dataset: { testid: 'card-comments' } }, icon('comment'), String(comments)));
    }
    const assignees = h('span', { class: 'assignees', dataset: { testid: 'card-assignees' } },
      people.slice(0, 4).map((p) => avatar(p, { testid: 'card-assignee', size: 'avatar-sm' })));
    if (meta.length || people.length) parts.push(h('div', { class: 'card-meta' }, ...meta, assignees));
    if (editors.length) {
      const names = editors.map(shortName).join(', ');
      parts.push(h('p', { class: 'typing', dataset: { testid: 'card-typing' } },
        h('span', { class: 'typing-dots', 'aria-hidden': 'true' }, h('i'), h('i'), h('i')),
        `${names} ${editors.length === 1 ? 'is' : 'are'} editing`));
    }
    return parts;
  }

  // ------------------------------------------------------------------ drag and drop

  onDragStart(event, el) {
    if (!this.writable) { event.preventDefault(); return; }
    this.drag = { id: el.dataset.cardId, el };
    event.dataTransfer.effectAllowed = 'move';
    event.dataTransfer.setData('text/plain', el.querySelector('.card-title')?.textContent || '');
    // After the browser took the drag image, so the image is the card, not the faded copy.
    requestAnimationFrame(() => { if (this.drag?.el === el) el.classList.add('dragging'); });
    this.marker.style.setProperty('--marker-height', `${el.offsetHeight}px`);
  }

  /** Index among the column's cards (the dragged one left out) where a drop at `y` lands. */
  dropIndex(columnEl, y) {
    const cards = [...columnEl.querySelectorAll('.card')].filter((c) => c.dataset.cardId !== this.drag?.id);
    for (let i = 0; i < cards.length; i += 1) {
      const rect = cards[i].getBoundingClientRect();
      if (y < rect.top + rect.height / 2) return { index: i, before: cards[i] };
    }
    return { index: cards.length, before: null };
  }

  /** The column under the pointer: the one hovered, or the one whose horizontal span holds x. */
  columnAt(event) {
    const hovered = event.target.closest?.('.column');
    if (hovered) return hovered;
    return [...this.columnEls.values()].find((el) => {
      const rect = el.getBoundingClientRect();
      return event.clientX >= rect.left && event.clientX <= rect.right;
    }) || null;
  }

  onDragOver(event) {
    const columnEl = this.drag ? this.columnAt(event) : null;
    if (!columnEl) {
      this.marker.remove();
      return;
    }
    event.preventDefault();
    event.dataTransfer.dropEffect = 'move';
    const { before } = this.dropIndex(columnEl, event.clientY);
    const list = columnEl.querySelector('.cards');
    if (before) {
      if (this.marker.nextSibling !== before) list.insertBefore(this.marker, before);
    } else if (this.marker.parentNode !== list || this.marker.nextSibling) {
      list.append(this.marker);
    }
  }

  onDrop(event) {
    const columnEl = this.drag ? this.columnAt(event) : null;
    if (!columnEl) return;
    event.preventDefault();
    const { index } = this.dropIndex(columnEl, event.clientY);
    const taskId = this.drag.id;
    this.endDrag();
    this.hooks.onMove(taskId, columnEl.dataset.columnId, index);
  }

  endDrag() {
    this.drag?.el.classList.remove('dragging');
    this.drag = null;
    this.marker.remove();
  }

  // ------------------------------------------------------------------ keyboard

  /**
   * Arrows move focus between cards; Shift+arrows move the focused card (up/down within its
   * column, left/right to the neighbouring column); Enter or Space opens it.
   */
  onKeyDown(event) {
    const el = event.target.closest?.('.card');
    if (!el || event.target !== el || event.altKey || event.ctrlKey || event.metaKey) return;
    const id = el.dataset.cardId;
    if (event.key === 'Enter' || event.key === ' ') {
      event.preventDefault();
      this.hooks.onOpen(id);
      return;
    }
    const deltas = { ArrowUp: [0, -1], ArrowDown: [0, 1], ArrowLeft: [-1, 0], ArrowRight: [1, 0] };
    if (!(event.key in deltas)) return;
    event.preventDefault();
    const [dx, dy] = deltas[event.key];
    const columnIds = this.columns.map((c) => c.id);
    const columnId = [...this.layout].find(([, cards]) => cards.some((c) => c.id === id))?.[0];
    const from = columnIds.indexOf(columnId);
    const index = (this.layout.get(columnId) || []).findIndex((c) => c.id === id);
    const toColumn = columnIds[Math.max(0, Math.min(columnIds.length - 1, from + dx))];
    if (event.shiftKey) {
      if (!this.writable) { announce('This board is read-only'); return; }
      const others = (this.layout.get(toColumn) || []).filter((c) => c.id !== id).length;
      const position = Math.max(0, Math.min(others, index + dy));
      if (toColumn === columnId && position === index) return;
      this.hooks.onMove(id, toColumn, position);
      const name = this.columns.find((c) => c.id === toColumn)?.name || '';
      announce(`Moved to ${name}, position ${position + 1} of ${others + 1}`);
      return;
    }
    const targetCards = this.layout.get(toColumn) || [];
    const target = dx ? targetCards[Math.min(index, targetCards.length - 1)]
      : targetCards[Math.max(0, Math.min(targetCards.length - 1, index + dy))];
    if (target) this.cardEls.get(target.id)?.focus();
  }
}

function formatDate(isoDate) {
  const [year, month, day] = isoDate.split('-').map(Number);
  const when = new Date(year, month - 1, day);
  const options = { month: 'short', day: 'numeric' };
  if (year !== new Date().getFullYear()) options.year = 'numeric';
  return when.toLocaleDateString(undefined, options);
}
