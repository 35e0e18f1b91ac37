// Small DOM helpers shared by the page's modules.
//
// Every piece of user data reaches the DOM through `textContent` or an attribute (never as HTML),
// which, with the page's CSP, is what keeps a card titled "<img onerror=...>" a harmless title.

/** `h('button', {class: 'x', dataset: {testid: 'y'}, onclick}, 'text', child)` */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'text') node.textContent = value;
    else if (value === true) node.setAttribute(key, '');
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const ICONS = {
  // 16x16 strokes, drawn in currentColor (no icon font, no emoji: both render differently everywhere).
  comment: 'M3 3.5h10a1 1 0 0 1 1 1v6a1 1 0 0 1-1 1H7l-3 2.5v-2.5H3a1 1 0 0 1-1-1v-6a1 1 0 0 1 1-1z',
  clock: 'M8 2.5a5.5 5.5 0 1 0 0 11 5.5 5.5 0 0 0 0-11zM8 5v3.2l2 1.3',
};

export function icon(name) {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 16 16');
  svg.setAttribute('class', 'icon');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS('http://www.w3.org/2000/svg', 'path');
  path.setAttribute('d', ICONS[name]);
  svg.append(path);
  return svg;
}

/** The readable part of an email ("alice.smith" of "alice.smith@example.com"). */
export function shortName(person) {
  if (person?.email) return person.email.split('@')[0];
  return person?.user_id ? `user ${String(person.user_id).slice(0, 8)}` : 'someone';
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

/** Two letters for an avatar: "alice.smith@x" -> "AS", "bob@x" -> "BO". */
export function initials(email, fallback = '?') {
  const name = (email || '').split('@')[0];
  if (!name) return fallback.slice(0, 2).toUpperCase();
  // Words that start with a letter: "alice.8008" is Alice, not "A8".
  const parts = name.split(/[._\-+\s]+/).filter((part) => /^\p{L}/u.test(part));
  if (!parts.length) return name.slice(0, 2).toUpperCase();
  const letters = parts.length > 1 ? parts[0][0] + parts[1][0] : parts[0].slice(0, 2);
  return letters.toUpperCase();
}

/** A stable hue per user, so someone has the same colour on every screen. */
export function hueOf(id) {
  let hash = 0;
  for (const ch of String(id)) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
  return hash % 360;
}

export function avatar(person, { testid = 'avatar', self = false, size = '' } = {}) {
  const label = person.email || `user ${String(person.user_id || person.id).slice(0, 8)}`;
  const node = h('span', {
    class: `avatar ${size}`.trim(),
    title: self ? `${label} (you)` : label,
    'aria-label': self ? `${label} (you)` : label,
    role: 'img',
    dataset: { testid, userId: person.user_id || person.id },
  }, initials(person.email, String(person.user_id || person.id || '?')));
  node.style.setProperty('--hue', String(hueOf(person.user_id || person.id)));
  return node;
}

/** Short-lived messages; `polite` so screen readers hear them without losing their place. */
export function toast(message, { kind = 'info', timeoutMs = 6000, testid = 'toast' } = {}) {
  const region = document.getElementById('toasts');
  const close = h('button', { class: 'toast-close', type: 'button', 'aria-label': 'Dismiss' }, '×');
  const node = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status',
    dataset: { testid, kind } }, h('span', { class: 'toast-text' }, message), close);
  const remove = () => node.remove();
  close.addEventListener('click', remove);
  region.append(node);
  while (region.children.length > 4) region.firstElementChild.remove();
  if (timeoutMs) setTimeout(remove, timeoutMs);
  return node;
}

/** Say something to screen-reader users (card moved, board loaded). */
export function announce(message) {
  const region = document.getElementById('announcer');
  region.textContent = '';
  // A fresh text node after a tick is what makes every announcement heard, even a repeated one.
  setTimeout(() => { region.textContent = message; }, 30);
}

/** A random id for `client_op_id` (crypto.randomUUID needs a secure context; this does not). */
export function randomId(prefix = 'op') {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `${prefix}-${[...bytes].map((b) => b.toString(16).padStart(2, '0')).join('')}`;
}

export function formatTime(iso) {
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return '';
  return when.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}
