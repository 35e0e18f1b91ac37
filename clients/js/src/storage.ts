import type { Storage, StoredBoard } from './types.js';

const clone = <T>(value: T): T => structuredClone(value);

/** The default in Node: survives a closed client within the process, not a restart. */
export class MemoryStorage implements Storage {
  private items = new Map<string, StoredBoard>();

  async load(key: string): Promise<StoredBoard | null> {
    const value = this.items.get(key);
    return value ? clone(value) : null;
  }

  async save(key: string, value: StoredBoard): Promise<void> {
    this.items.set(key, clone(value));
  }

  async remove(key: string): Promise<void> {
    this.items.delete(key);
  }
}

/** The default in browsers: one IndexedDB object store, so queued edits survive a reload. */
export class IndexedDBStorage implements Storage {
  private opened: Promise<IDBDatabase> | null = null;

  constructor(
    private readonly databaseName = 'liveboard-client',
    private readonly storeName = 'boards',
  ) {}

  private db(): Promise<IDBDatabase> {
    if (!this.opened) {
      this.opened = new Promise((resolve, reject) => {
        const request = indexedDB.open(this.databaseName, 1);
        request.onupgradeneeded = () => {
          if (!request.result.objectStoreNames.contains(this.storeName)) {
            request.result.createObjectStore(this.storeName);
          }
        };
        request.onsuccess = () => resolve(request.result);
        request.onerror = () => reject(request.error);
      });
    }
    return this.opened;
  }

  private async run<T>(mode: IDBTransactionMode, act: (store: IDBObjectStore) => IDBRequest<T>): Promise<T> {
    const db = await this.db();
    return new Promise((resolve, reject) => {
      const tx = db.transaction(this.storeName, mode);
      const request = act(tx.objectStore(this.storeName));
      tx.oncomplete = () => resolve(request.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  }

  async load(key: string): Promise<StoredBoard | null> {
    return ((await this.run('readonly', (store) => store.get(key))) as StoredBoard | undefined) ?? null;
  }

  async save(key: string, value: StoredBoard): Promise<void> {
    await this.run('readwrite', (store) => store.put(value, key));
  }

  async remove(key: string): Promise<void> {
    await this.run('readwrite', (store) => store.delete(key));
  }
}

/** IndexedDB where there is one (browsers), memory elsewhere (Node). */
export function defaultStorage(): Storage {
  return typeof indexedDB !== 'undefined' ? new IndexedDBStorage() : new MemoryStorage();
}
