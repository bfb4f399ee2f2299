// What the page keeps of the files this browser uploaded (IndexedDB, per upload id): the API stores uploads
// but does not serve their bytes back, and the result view overlays the input points on the mesh (and
// shows an input image beside the fitted one). Only ids the API still answers for are ever used, so
// another key's uploads are never shown.

const DB = "nfrecon-page";
const STORE = "uploads";

function open() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function tx(mode, fn) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const t = db.transaction(STORE, mode);
    const req = fn(t.objectStore(STORE));
    t.oncomplete = () => resolve(req?.result);
    t.onerror = () => reject(t.error);
  });
}

// Records are tagged with a short hash of the key they were uploaded with, so that after a change of key the
// page does not even ask the API about another user's uploads. (FNV-1a, 32 bits: a partition, not a secret;
// crypto.subtle is missing on plain-http hosts.)
export function keyTag(key) {
  let h = 0x811c9dc5;
  for (const c of new TextEncoder().encode(key)) h = Math.imul(h ^ c, 0x01000193) >>> 0;
  return h.toString(16);
}

// record: {upload (the API's JSON), owner: keyTag(key), points?: Float32Array, image?: Blob}
export const saveUpload = (id, record) => tx("readwrite", (s) => s.put(record, id)).catch(() => undefined);
export const loadUpload = (id) => tx("readonly", (s) => s.get(id)).catch(() => undefined);
export const listUploadIds = async (owner) => {
  const all = await tx("readonly", (s) => s.getAll()).catch(() => []);
  return all.filter((r) => r.owner === owner).map((r) => r.upload.id);
};
export const forgetUpload = (id) => tx("readwrite", (s) => s.delete(id)).catch(() => undefined);
