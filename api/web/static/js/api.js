// The /v1 client of the page: bearer key, problem+json errors, upload progress, server-sent events.
// URLs are relative to the page (…/ui/ -> …/v1/) so a proxy prefix (root_path) keeps working.

const API = new URL("../v1/", document.baseURI);
const KEY_STORE = "nfrecon.apiKey";

export class ApiError extends Error {
  // status + the problem+json body (detail, code, errors[{loc, msg}]) as the API sent it
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

export function apiUrl(path) {
  return new URL(path.replace(/^\/?(v1\/)?/, ""), API).href;
}

export function getKey() {
  return sessionStorage.getItem(KEY_STORE) || "";
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY_STORE, key);
  else sessionStorage.removeItem(KEY_STORE);
}

function authHeaders(extra = {}) {
  const key = getKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function problemOf(resp) {
  const text = await resp.text();
  try {
    return JSON.parse(text);
  } catch {
    return { detail: text || resp.statusText };
  }
}

export async function request(method, path, body) {
  const init = { method, headers: authHeaders() };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const resp = await fetch(apiUrl(path), init);
  if (!resp.ok) throw new ApiError(resp.status, await problemOf(resp));
  if (resp.status === 204) return null;
  return resp.json();
}

// A multipart/form-data POST (the browser sets the boundary): a prior file (POST /v1/priors).
export async function postForm(path, formData) {
  const resp = await fetch(apiUrl(path), { method: "POST", headers: authHeaders(), body: formData });
  if (!resp.ok) throw new ApiError(resp.status, await problemOf(resp));
  return resp.json();
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body);
export const del = (path) => request("DELETE", path);

// fetch() has no upload progress: XMLHttpRequest does (upload.onprogress).
export function upload(file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", apiUrl(`uploads?filename=${encodeURIComponent(file.name)}`));
    for (const [k, v] of Object.entries(authHeaders({ "Content-Type": "application/octet-stream" }))) {
      xhr.setRequestHeader(k, v);
    }
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onload = () => {
      let body;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = { detail: xhr.responseText };
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body));
    };
    xhr.onerror = () => reject(new ApiError(0, { detail: "network error during the upload" }));
    xhr.send(file);
  });
}

// Download a binary artifact with the key (a plain <a href> could not send the Authorization header).
export async function fetchBlob(path) {
  const resp = await fetch(apiUrl(path), { headers: authHeaders() });
  if (!resp.ok) throw new ApiError(resp.status, await problemOf(resp));
  return resp.blob();
}

// Server-sent events over fetch(): EventSource cannot send an Authorization header.
// Calls onEvent(name, data) per event; returns a function that stops the stream.
export function streamEvents(path, onEvent, onEnd) {
  const ctrl = new AbortController();
  (async () => {
    try {
      const resp = await fetch(apiUrl(path), { headers: authHeaders({ Accept: "text/event-stream" }), signal: ctrl.signal });
      if (!resp.ok) throw new ApiError(resp.status, await problemOf(resp));
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let name = "message";
          const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) name = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
          }
          if (!data.length) continue; // a comment (keep-alive)
          let parsed;
          try {
            parsed = JSON.parse(data.join("\n"));
          } catch {
            parsed = data.join("\n");
          }
          onEvent(name, parsed);
        }
      }
      onEnd?.(null);
    } catch (err) {
      if (err.name !== "AbortError") onEnd?.(err);
    }
  })();
  return () => ctrl.abort();
}
