// The demo page's service worker: keeps the page, its scripts and the SDK so that a reload works
// while offline (the SDK then opens the board from IndexedDB, with the queued edits on top).
//
// Network first, the cache only when the network fails: online, a deploy is visible at once.
// The socket (`/socket.io/`) is never touched. The list of files is filled in by demo.py.

const CACHE = 'liveboard-page-v1';
const PRECACHE = ["%PRECACHE%"];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(PRECACHE)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((key) => key !== CACHE).map((key) => caches.delete(key))))
    .then(() => self.clients.claim()));
});

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== self.location.origin || url.pathname.startsWith('/socket.io/')) {
    return;
  }
  const key = url.pathname === '/' ? '/' : event.request;
  event.respondWith(fetch(event.request).then((response) => {
    if (response.ok) {
      const copy = response.clone();
      caches.open(CACHE).then((cache) => cache.put(key, copy));
    }
    return response;
  }).catch(() => caches.match(key).then((hit) => hit || Response.error())));
});
