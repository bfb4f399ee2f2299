// The page: hash routes #/new (upload + method form), #/jobs (list), #/jobs/<id> (progress and result),
// #/priors (the user's meta-learned priors: upload, list, delete; an sdf job picks one in the form).
// Everything it shows comes from the /v1 API with the user's key (when the service requires one).

import { ApiError, apiUrl, del, fetchBlob, get, getKey, post, postForm, setKey, streamEvents, upload } from "./api.js";
import { el, fmtAge, fmtBytes, fmtNumber, fmtSeconds } from "./dom.js";
import { forgetUpload, keyTag, listUploadIds, loadUpload, saveUpload } from "./localfiles.js";
import { linePlot } from "./plot.js";
import { SpecForm } from "./schemaform.js";

const main = document.getElementById("main");
const state = { info: null, cleanup: [] };
// Figures the end-to-end tests read (progress latency: receipt time minus the job's updated_at).
window.nfrecon = { progressLatencies: [], statusEvents: 0, ready: false };

const TERMINAL = ["succeeded", "failed", "canceled"];
const viewerModule = () => import("./viewer.js"); // three.js only when a 3D view is shown

function problemText(err) {
  if (!(err instanceof ApiError)) return String(err.message || err);
  const p = err.problem;
  const lines = [`${p.title || "Error"} (${err.status}): ${p.detail || err.message}`];
  for (const e of p.errors || []) lines.push(`${(e.loc || []).join(".")}: ${e.msg}`);
  return lines.join("\n");
}

function errorBox(err) {
  return el("div", { class: "problem", role: "alert" }, problemText(err));
}

function cleanup() {
  for (const fn of state.cleanup.splice(0)) fn();
}

function setTitle(text) {
  document.title = `${text} · nfrecon`;
}

// ---------------------------------------------------------------------------------------------
// API key

function keyView(err) {
  setTitle("API key");
  const input = el("input", { id: "api-key", type: "password", autocomplete: "current-password", required: true });
  const form = el("form", { class: "card key-form" },
    el("h1", {}, "API key"),
    el("p", {}, "This service requires an API key. It is kept in this tab only (session storage) and sent as ",
      el("code", {}, "Authorization: Bearer"), "."),
    el("div", { class: "field" }, el("label", { for: "api-key" }, "Key"), input),
    err ? errorBox(err) : null,
    el("button", { type: "submit" }, "Use this key"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    setKey(input.value.trim());
    boot();
  });
  main.replaceChildren(form);
  input.focus();
}

async function boot() {
  cleanup();
  try {
    state.info = await get("info");
  } catch (err) {
    document.getElementById("key-status").textContent = "";
    if (err.status === 401) return keyView(getKey() ? err : null);
    main.replaceChildren(errorBox(err));
    return;
  }
  const status = document.getElementById("key-status");
  status.replaceChildren();
  if (state.info.auth) {
    status.append("key set · ", el("button", { type: "button", class: "link", onclick: () => { setKey(""); boot(); } }, "change key"));
  }
  document.getElementById("version").textContent = `v${state.info.version}`;
  route();
}

// ---------------------------------------------------------------------------------------------
// New job: upload, report, preview, method form

function deviceOf(info) {
  // The form shows the preset values of the device the job will likely run on. /v1/info does not say which
  // device a worker has (yet): cpu unless a worker announces `device: "cuda"`.
  return (info.workers || []).some((w) => w.device === "cuda") ? "cuda" : "cpu";
}

function reportTable(up) {
  const v = up.validation || {};
  const rows = [["file", `${up.filename} (${fmtBytes(up.size)})`], ["kind", `${v.kind} (${v.format})`]];
  const known = new Set(["kind", "format", "bbox_min", "bbox_max", "warnings", "analysis"]);
  if (v.bbox_min && v.bbox_max) {
    rows.push(["bounding box", `[${v.bbox_min.map((x) => fmtNumber(x)).join(", ")}] – [${v.bbox_max.map((x) => fmtNumber(x)).join(", ")}]`]);
  }
  for (const [k, val] of Object.entries(v)) {
    if (known.has(k) || val === null || val === undefined || typeof val === "object") continue;
    rows.push([k.replace(/_/g, " "), typeof val === "boolean" ? (val ? "yes" : "no") : fmtNumber(val)]);
  }
  // the cloud analysis, when the service computes one (any nested object is shown as key: value)
  for (const [k, val] of Object.entries(v)) {
    if (val && typeof val === "object" && !Array.isArray(val) && k !== "warnings") {
      for (const [k2, v2] of Object.entries(val)) rows.push([`${k.replace(/_/g, " ")}: ${k2.replace(/_/g, " ")}`, typeof v2 === "object" ? JSON.stringify(v2) : fmtNumber(v2)]);
    }
  }
  const warnings = [...(v.warnings || []), ...(v.analysis?.warnings || [])];
  return el("div", {},
    el("table", { class: "kv" }, el("caption", {}, "Validation report"),
      el("tbody", {}, rows.map(([k, val]) => el("tr", {}, el("th", { scope: "row" }, k), el("td", {}, val))))),
    warnings.length ? el("ul", { class: "warnings", "aria-label": "warnings" }, warnings.map((w) => el("li", {}, typeof w === "string" ? w : JSON.stringify(w)))) : null);
}

async function newJobView() {
  setTitle("New job");
  // The catalogue (task per input kind, accepted formats) is not needed to draw the form: fetched alongside.
  // (Its first call after a server start also imports torch there, which takes seconds.)
  const methodsP = get("methods");
  methodsP.catch(() => undefined); // awaited where used; an error shows there
  const priorsP = get("priors?page_size=200"); // the choices of overrides.prior.id (sdf jobs)
  priorsP.catch(() => undefined);
  let current = null; // the chosen upload (API JSON)
  const fileInput = el("input", { type: "file", id: "file-input", class: "visually-hidden" });
  const drop = el("label", { for: "file-input", class: "drop", id: "drop-zone" },
    el("strong", {}, "Drop a point cloud, mesh or image here"), el("span", {}, " or click to choose a file"),
    el("small", { id: "accepted" }));
  methodsP.then((m) => (drop.querySelector("#accepted").textContent = `accepted: ${[...new Set(m.items.flatMap((x) => x.input_formats))].join(" ")}`), () => undefined);
  const bar = el("progress", { max: 1, value: 0, id: "upload-progress", "aria-label": "upload progress" });
  const barText = el("span", { id: "upload-progress-text" });
  const report = el("div", { id: "report", "aria-live": "polite" });
  const preview = el("div", { class: "viewer small", id: "preview", "data-label": "preview of the uploaded points" });
  const previous = el("select", { id: "previous-upload" }, el("option", { value: "" }, "(none)"));
  const formRoot = el("div", { id: "spec-form" });
  const summary = el("div", { id: "form-errors", "aria-live": "assertive" });
  const submit = el("button", { type: "submit", id: "submit-job", disabled: true }, "Start job");
  const nameInput = el("input", { id: "job-name", type: "text", autocomplete: "off" });
  let viewer = null;
  state.cleanup.push(() => viewer?.dispose());

  const detailCache = {};
  const detailFor = async (task) => (detailCache[task] ??= await get(`methods/${encodeURIComponent(task)}`));
  let form = null;
  const makeForm = async (task) => {
    const detail = await detailFor(task);
    if (!form) {
      form = new SpecForm(formRoot, detail, {
        device: deviceOf(state.info), onTaskChange: (t) => makeForm(t),
        // A prior is named by id (the API refuses server paths); it starts an sdf fit only.
        choices: { [PRIOR_ID]: { options: [], empty: "(none: train from scratch)", hint: "one of your priors (Priors page)" } },
        hidden: ["overrides.prior.path"], sectionTasks: { prior: ["sdf"] },
      });
    }
    else {
      form.values.task = task;
      form.setDetail(detail);
    }
  };
  // "sdf" is the API's default task (a job without a spec is an SDF); every task publishes the same spec schema
  await makeForm("sdf");
  priorsP.then((list) => form.setChoices(PRIOR_ID, list.items.map((p) => ({ value: p.id, label: priorLabel(p) }))),
    () => undefined); // without the list the select offers "none" only; the job form still works

  const choose = async (up, localRecord) => {
    current = up;
    submit.disabled = false;
    report.replaceChildren(reportTable(up));
    // pick the first task that takes this kind of input
    const methods = await methodsP;
    const task = methods.items.find((m) => m.input_kinds.includes(up.kind))?.name;
    if (task && form.values.task !== task) {
      form.values.task = task;
      await makeForm(task);
    }
    const rec = localRecord || (await loadUpload(up.id));
    if (rec?.image) {
      viewer?.dispose();
      viewer = null;
      preview.replaceChildren(el("img", { src: URL.createObjectURL(rec.image), alt: `uploaded image ${up.filename}` }));
    } else if (rec?.points) {
      preview.replaceChildren();
      const { Viewer } = await viewerModule();
      viewer?.dispose();
      viewer = new Viewer(preview);
      viewer.setPoints(rec.points);
    } else {
      preview.replaceChildren(el("p", { class: "muted" }, "No preview for this format."));
    }
  };

  const onFile = async (file) => {
    if (!file) return;
    bar.value = 0;
    barText.textContent = `uploading ${file.name}…`;
    report.replaceChildren();
    try {
      const up = await upload(file, (f) => {
        bar.value = f;
        barText.textContent = `uploading ${file.name}: ${Math.round(f * 100)} %`;
      });
      bar.value = 1;
      barText.textContent = `uploaded ${file.name}`;
      const record = { upload: up, owner: keyTag(getKey()) };
      if (up.kind === "image") record.image = file;
      else {
        try {
          const { parsePoints } = await viewerModule();
          record.points = parsePoints(await file.arrayBuffer(), file.name);
        } catch {
          record.points = null; // no preview, the report still shows
        }
      }
      await saveUpload(up.id, record);
      previous.append(el("option", { value: up.id }, `${up.filename} (${up.id})`));
      previous.value = up.id;
      await choose(up, record);
    } catch (err) {
      barText.textContent = "upload failed";
      report.replaceChildren(errorBox(err));
    }
  };
  fileInput.addEventListener("change", () => onFile(fileInput.files[0]));
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    onFile(e.dataTransfer.files[0]);
  });
  previous.addEventListener("change", async () => {
    if (!previous.value) return;
    try {
      await choose(await get(`uploads/${previous.value}`));
    } catch (err) {
      report.replaceChildren(errorBox(err));
    }
  });
  // This browser's earlier uploads that the API still shows to this key
  (async () => {
    for (const id of await listUploadIds(keyTag(getKey()))) {
      try {
        const up = await get(`uploads/${id}`);
        previous.append(el("option", { value: id }, `${up.filename} (${id})`));
      } catch (err) {
        if (err.status === 404 || err.status === 410) forgetUpload(id);
      }
    }
  })();

  const jobForm = el("form", { id: "job-form", novalidate: true },
    el("h2", {}, "2. Method"),
    el("div", { class: "field" }, el("label", { for: "job-name" }, "Job name (optional)"), nameInput),
    formRoot, summary, submit);
  jobForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    form.clearErrors();
    summary.replaceChildren();
    if (!current) return;
    const body = { inputs: [current.id], spec: form.collect() };
    if (nameInput.value.trim()) body.name = nameInput.value.trim();
    submit.disabled = true;
    try {
      const job = await post("jobs", body);
      location.hash = `#/jobs/${job.id}`;
    } catch (err) {
      form.showErrors(err.problem?.errors);
      summary.replaceChildren(errorBox(err));
      summary.querySelector(".problem")?.focus?.();
    } finally {
      submit.disabled = false;
    }
  });

  main.replaceChildren(
    el("h1", {}, "New job"),
    el("section", { class: "card", "aria-labelledby": "h-input" },
      el("h2", { id: "h-input" }, "1. Input"),
      el("div", { class: "grid2" },
        el("div", {}, fileInput, drop, el("div", { class: "progress-row" }, bar, barText),
          el("div", { class: "field" }, el("label", { for: "previous-upload" }, "Or an earlier upload"), previous), report),
        preview)),
    el("section", { class: "card" }, jobForm));
}

// ---------------------------------------------------------------------------------------------
// Priors: upload (multipart), list, delete; a job names one as spec.overrides.prior.id

const PRIOR_ID = "overrides.prior.id";

function priorLabel(p) {
  return `${p.name} (${p.id}) · ${p.inner_steps} inner steps`;
}

function fieldOf(p) {
  const n = p.field?.network || {};
  const parts = [p.field?.encoding?.type, n.type && `${n.type} ${n.hidden_layers ?? "?"}x${n.hidden_features ?? "?"}`];
  return parts.filter(Boolean).join(" + ");
}

async function priorsView() {
  setTitle("Priors");
  const fileInput = el("input", { type: "file", id: "prior-file", accept: ".safetensors,.pt" });
  const nameInput = el("input", { type: "text", id: "prior-name", autocomplete: "off" });
  const status = el("div", { id: "prior-status", "aria-live": "polite" });
  const submit = el("button", { type: "submit", id: "upload-prior" }, "Upload prior");
  const body = el("tbody");
  const table = el("table", { class: "jobs", id: "priors-table" }, el("caption", { class: "visually-hidden" }, "Your priors, newest first"),
    el("thead", {}, el("tr", {}, ["Name", "Id", "Field", "Inner steps", "Made by", "Created", "Size", "Actions"].map((h) => el("th", { scope: "col" }, h)))), body);
  const err = el("div", { id: "priors-error" });

  const refresh = async () => {
    try {
      const list = await get("priors?page_size=200");
      err.replaceChildren();
      body.replaceChildren(...list.items.map((p) => el("tr", { "data-prior": p.id },
        el("td", {}, p.name),
        el("td", {}, el("code", {}, p.id)),
        el("td", {}, fieldOf(p)),
        el("td", {}, String(p.inner_steps)),
        el("td", {}, p.source_job ? el("a", { href: `#/jobs/${p.source_job}` }, "meta-train job") : "uploaded"),
        el("td", {}, el("time", { datetime: p.created_at }, fmtAge(p.created_at))),
        el("td", {}, fmtBytes(p.size)),
        el("td", {}, el("button", { type: "button", class: "danger", "data-delete": p.id, "aria-label": `Delete prior ${p.name}`, onclick: () => {
          if (!confirm(`Delete prior ${p.name}? Jobs already submitted with it keep their own copy.`)) return;
          del(`priors/${p.id}`).then(refresh, (e) => err.replaceChildren(errorBox(e)));
        } }, "Delete")))));
      if (!list.items.length) {
        body.replaceChildren(el("tr", {}, el("td", { colspan: 8 }, "No priors yet. Upload one written by ", el("code", {}, "nfrecon meta-train"),
          ", or run a meta-train job (", el("code", {}, "POST /v1/jobs/meta-train"), ").")));
      }
    } catch (e) {
      err.replaceChildren(errorBox(e));
    }
  };

  const form = el("form", { id: "prior-form", class: "card" },
    el("h2", {}, "Upload a prior"),
    el("p", { class: "muted" }, "A prior file written by ", el("code", {}, "nfrecon meta-train"), " (safetensors). An sdf job starts from it when you pick it in the method form."),
    el("div", { class: "field" }, el("label", { for: "prior-file" }, "File"), fileInput),
    el("div", { class: "field" }, el("label", { for: "prior-name" }, "Name (optional)"), nameInput),
    status, submit);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const file = fileInput.files[0];
    if (!file) {
      status.replaceChildren(el("p", { class: "problem", role: "alert" }, "Choose a prior file first."));
      return;
    }
    const data = new FormData();
    data.append("file", file, file.name);
    if (nameInput.value.trim()) data.append("name", nameInput.value.trim());
    submit.disabled = true;
    status.replaceChildren(el("p", { class: "muted" }, `uploading ${file.name}…`));
    try {
      const p = await postForm("priors", data);
      status.replaceChildren(el("p", { role: "status" }, `stored ${p.name} as ${p.id}`));
      form.reset();
      await refresh();
    } catch (e2) {
      status.replaceChildren(errorBox(e2));
    } finally {
      submit.disabled = false;
    }
  });
  main.replaceChildren(el("h1", {}, "Priors"), form, err, el("section", { class: "card", "aria-label": "your priors" }, table));
  await refresh();
}

// ---------------------------------------------------------------------------------------------
// Jobs list

function statusBadge(status) {
  return el("span", { class: `badge s-${status}` }, status);
}

async function jobsView() {
  setTitle("Jobs");
  const body = el("tbody");
  const table = el("table", { class: "jobs", id: "jobs-table" }, el("caption", { class: "visually-hidden" }, "Your jobs, newest first"),
    el("thead", {}, el("tr", {}, ["Job", "Task", "Status", "Progress", "Created"].map((h) => el("th", { scope: "col" }, h)))), body);
  const err = el("div");
  main.replaceChildren(el("h1", {}, "Jobs"), err, table);
  const refresh = async () => {
    try {
      const list = await get("jobs?page_size=100");
      err.replaceChildren();
      body.replaceChildren(...list.items.map((j) => el("tr", { "data-job": j.id },
        el("td", {}, el("a", { href: `#/jobs/${j.id}` }, j.name || j.id)),
        el("td", {}, j.spec.preset ? `${j.spec.task} · ${j.spec.preset}` : j.spec.task),
        el("td", {}, statusBadge(j.status)),
        el("td", {}, el("progress", { max: 1, value: j.progress?.fraction ?? (j.status === "succeeded" ? 1 : 0), "aria-label": `progress of ${j.name || j.id}` }),
          ` ${Math.round((j.progress?.fraction ?? 0) * 100)} %`),
        el("td", {}, el("time", { datetime: j.created_at }, fmtAge(j.created_at))))));
      if (!list.items.length) body.replaceChildren(el("tr", {}, el("td", { colspan: 5 }, "No jobs yet. ", el("a", { href: "#/new" }, "Start one"), ".")));
    } catch (e) {
      err.replaceChildren(errorBox(e));
    }
  };
  await refresh();
  const timer = setInterval(refresh, 2000);
  state.cleanup.push(() => clearInterval(timer));
}

// ---------------------------------------------------------------------------------------------
// One job: live progress, plots, log tail, actions, result

function flatten(obj, prefix = "", out = []) {
  for (const [k, v] of Object.entries(obj || {})) {
    const name = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === "object" && !Array.isArray(v)) flatten(v, name, out);
    else out.push([name, Array.isArray(v) ? v.map((x) => fmtNumber(x)).join(", ") : fmtNumber(v)]);
  }
  return out;
}

function downloadLink(name, url) {
  const a = el("a", { href: apiUrl(url), download: name.split("/").pop() }, name);
  // With a key, a plain link would be refused (a browser navigation sends no Authorization header)
  a.addEventListener("click", async (e) => {
    if (!getKey()) return;
    e.preventDefault();
    const blob = await fetchBlob(url);
    const tmp = el("a", { href: URL.createObjectURL(blob), download: a.download });
    tmp.click();
    setTimeout(() => URL.revokeObjectURL(tmp.href), 10000);
  });
  return a;
}

async function jobView(id) {
  setTitle(`Job ${id}`);
  const series = { loss: {}, noise: { "noise scale": [] } };
  const head = el("div", { class: "job-head" });
  const progress = el("progress", { max: 1, value: 0, id: "job-progress", "aria-label": "job progress" });
  const progressText = el("p", { id: "progress-text", "aria-live": "polite" });
  const actions = el("div", { class: "actions" });
  const lossPlot = el("div", { id: "loss-plot", class: "plot-box" });
  const noisePlot = el("div", { id: "noise-plot", class: "plot-box" });
  const log = el("pre", { id: "log", tabindex: 0, "aria-label": "log tail" });
  const result = el("section", { id: "result", class: "card", hidden: true, "aria-labelledby": "h-result" });
  const err = el("div");
  const logLines = [];
  let job = null;
  let resultShown = false;

  const drawPlots = () => {
    const empty = job && TERMINAL.includes(job.status) ? "this job reported no training curve" : "no data yet";
    linePlot(lossPlot, series.loss, { title: "Loss terms", log: true, empty });
    linePlot(noisePlot, series.noise, { title: "Preconditioning noise scale", empty });
  };

  const renderHead = () => {
    const p = job.progress || {};
    head.replaceChildren(el("h1", {}, job.name || job.id), statusBadge(job.status),
      el("span", { class: "muted" }, ` ${job.spec.task}${job.spec.preset ? ` · ${job.spec.preset}` : ""} · attempt ${job.attempt}/${job.max_attempts}${job.device ? ` · ${job.device}` : ""}`));
    progress.value = job.status === "succeeded" ? 1 : p.fraction ?? 0;
    const parts = [];
    if (job.status === "queued" && job.queue_position) parts.push(`queued, position ${job.queue_position}`);
    if (p.phase) parts.push(`phase ${p.phase}`);
    if (p.step !== null && p.step !== undefined) parts.push(`step ${p.step}${p.total_steps ? ` / ${p.total_steps}` : ""}`);
    if (p.eta_seconds !== null && p.eta_seconds !== undefined && !TERMINAL.includes(job.status)) parts.push(`ETA ${fmtSeconds(p.eta_seconds)}`);
    parts.push(`${Math.round((progress.value || 0) * 100)} %`);
    progressText.textContent = parts.join(" · ");
    if (job.error) err.replaceChildren(el("div", { class: "problem", role: "alert" }, `${job.error.title}: ${job.error.detail || job.error.code}`));
    const active = !TERMINAL.includes(job.status);
    actions.replaceChildren(...[
      active ? el("button", { type: "button", id: "cancel", onclick: () => act(() => post(`jobs/${id}/cancel`)) }, "Cancel") : null,
      !active ? el("button", { type: "button", id: "retry", onclick: () => act(async () => { const r = await post(`jobs/${id}/retry`); location.hash = `#/jobs/${r.id}`; }) }, "Retry") : null,
      el("button", { type: "button", id: "delete", class: "danger", onclick: () => {
        if (confirm(`Delete job ${job.name || id} and its files?`)) act(async () => { await del(`jobs/${id}`); location.hash = "#/jobs"; });
      } }, "Delete")].filter(Boolean)); // replaceChildren would print a null as text
  };

  const act = async (fn) => {
    try {
      await fn();
    } catch (e) {
      err.replaceChildren(errorBox(e));
    }
  };

  const onStatus = (j) => {
    job = j;
    window.nfrecon.statusEvents++;
    const p = j.progress;
    if (p && p.step !== null && p.step !== undefined && j.status === "running") {
      window.nfrecon.progressLatencies.push(Date.now() - Date.parse(j.updated_at));
    }
    if (p && Array.isArray(p.curve) && p.curve.length) {
      // Each report carries the whole (thinned) curve: redraw from it, so that a page opened late, or a
      // training shorter than the stream's poll, still shows every point the worker reported.
      series.loss = {};
      series.noise = { "noise scale": [] };
      for (const c of p.curve) {
        for (const [k, v] of Object.entries(c.loss || {})) if (typeof v === "number") (series.loss[k] ??= []).push([c.step, v]);
        if (typeof c.noise_scale === "number") series.noise["noise scale"].push([c.step, c.noise_scale]);
      }
      drawPlots();
    }
    renderHead();
    if (!Object.keys(series.loss).length) drawPlots(); // the empty plots' text depends on the status
    if (j.status === "succeeded" && !resultShown) {
      resultShown = true;
      showResult(j, result).catch((e) => result.replaceChildren(errorBox(e)));
    }
  };

  main.replaceChildren(head, err,
    el("section", { class: "card", "aria-label": "progress" }, progress, progressText, actions),
    el("section", { class: "card", "aria-label": "plots" }, el("div", { class: "grid2" }, lossPlot, noisePlot)),
    result,
    el("section", { class: "card", "aria-labelledby": "h-log" }, el("h2", { id: "h-log" }, "Log"), log));
  drawPlots();
  try {
    onStatus(await get(`jobs/${id}`));
  } catch (e) {
    main.replaceChildren(el("h1", {}, "Job"), errorBox(e));
    return;
  }
  const stop = streamEvents(`jobs/${id}/events`, (name, data) => {
    if (name === "status") onStatus(data);
    else if (name === "log") {
      logLines.push(data);
      if (logLines.length > 200) logLines.splice(0, logLines.length - 200);
      log.textContent = logLines.join("\n");
      log.scrollTop = log.scrollHeight;
    } else if (name === "deleted") err.replaceChildren(el("p", { role: "status" }, "This job was deleted."));
  }, (e) => e && err.replaceChildren(errorBox(e)));
  state.cleanup.push(stop);
}

async function showResult(job, section) {
  const arts = await get(`jobs/${job.id}/artifacts`);
  const names = arts.items.map((a) => a.name);
  section.hidden = false;
  const downloads = el("ul", { class: "downloads", id: "downloads" },
    arts.items.map((a) => el("li", {}, downloadLink(a.name, a.url), el("span", { class: "muted" }, ` ${fmtBytes(a.size)}`))),
    el("li", {}, downloadLink("all.zip", arts.zip_url), el("span", { class: "muted" }, " every artifact")));
  const metrics = el("table", { class: "kv", id: "metrics" }, el("caption", {}, "Metrics"),
    el("tbody", {}, flatten(job.metrics).map(([k, v]) => el("tr", {}, el("th", { scope: "row" }, k), el("td", {}, v)))));
  const view = el("div", {});
  section.replaceChildren(el("h2", { id: "h-result" }, "Result"), view, el("div", { class: "grid2" }, metrics, el("div", {}, el("h3", {}, "Downloads"), downloads)));
  if (job.metrics?.prior_id && job.spec.task === "meta-train") {
    // a meta-train job's prior is one of the user's priors: an sdf job picks it in the method form
    view.append(el("p", { id: "made-prior" }, "This job made the prior ", el("code", {}, job.metrics.prior_id), ", listed under ",
      el("a", { href: "#/priors" }, "Priors"), "."));
  }

  const meshName = ["mesh.glb", "mesh.ply"].find((n) => names.includes(n));
  if (meshName) {
    const box = el("div", { class: "viewer", id: "mesh-view", "data-label": "3D view of the reconstructed mesh" });
    const status = el("p", { class: "muted", id: "mesh-status", "aria-live": "polite" }, `loading ${meshName}…`);
    const flat = el("input", { type: "checkbox", id: "flat" });
    const wire = el("input", { type: "checkbox", id: "wire" });
    const pts = el("input", { type: "checkbox", id: "show-points" });
    view.append(el("div", { class: "toolbar" },
      el("span", {}, flat, el("label", { for: "flat" }, "Flat shading")),
      el("span", {}, wire, el("label", { for: "wire" }, "Wireframe")),
      el("span", {}, pts, el("label", { for: "show-points" }, "Input points"))), box, status);
    const t0 = performance.now();
    const { Viewer, parseMesh } = await viewerModule();
    const viewer = new Viewer(box);
    state.cleanup.push(() => viewer.dispose());
    const buffer = await (await fetchBlob(`jobs/${job.id}/artifacts/${meshName}`)).arrayBuffer();
    const tris = viewer.setGeometry(await parseMesh(buffer, meshName));
    const seconds = (performance.now() - t0) / 1000;
    status.textContent = `${meshName}: ${tris.toLocaleString("en")} triangles, loaded in ${seconds.toFixed(2)} s. Drag to orbit, wheel to zoom, right-drag to pan.`;
    window.nfrecon.meshLoad = { name: meshName, triangles: tris, seconds };
    window.nfrecon.viewer = viewer; // for the tests' frame-time measurement
    flat.addEventListener("change", () => viewer.setShading(flat.checked));
    wire.addEventListener("change", () => viewer.setWireframe(wire.checked));
    const rec = await loadUpload(job.inputs[0]?.upload_id);
    if (rec?.points) {
      pts.addEventListener("change", () => {
        if (pts.checked && !viewer.points) viewer.setPoints(rec.points);
        viewer.showPoints(pts.checked);
      });
    } else {
      pts.disabled = true;
      pts.parentElement.title = "the input points are kept only in the browser that uploaded them";
    }
  }
  if (names.includes("fitted.png")) {
    const fitted = URL.createObjectURL(await fetchBlob(`jobs/${job.id}/artifacts/fitted.png`));
    const rec = await loadUpload(job.inputs[0]?.upload_id);
    const slider = el("input", { type: "range", min: 0, max: 100, value: 50, id: "compare", "aria-label": "input / fitted divider" });
    const top = el("img", { src: fitted, alt: "fitted image", class: "top" });
    const cmp = el("div", { class: "compare" },
      rec?.image ? el("img", { src: URL.createObjectURL(rec.image), alt: "input image" }) : el("p", { class: "muted" }, "input image not kept in this browser"),
      top);
    const clip = () => (top.style.clipPath = `inset(0 0 0 ${slider.value}%)`);
    slider.addEventListener("input", clip);
    clip();
    view.append(el("div", { class: "grid2" }, el("div", {}, el("h3", {}, "Input (left) and fitted (right)"), cmp, slider),
      el("div", { class: "plot-box", id: "psnr-plot" })));
  }
  if (names.includes("psnr_curve.json")) {
    const curve = await (await fetchBlob(`jobs/${job.id}/artifacts/psnr_curve.json`)).text().then(JSON.parse);
    let box = view.querySelector("#psnr-plot");
    if (!box) view.append((box = el("div", { class: "plot-box", id: "psnr-plot" })));
    linePlot(box, { PSNR: curve.steps.map((s, i) => [s, curve.psnr[i]]) }, { title: "PSNR (dB)" });
  }
}

// ---------------------------------------------------------------------------------------------

async function route() {
  cleanup();
  const hash = location.hash || "#/new";
  for (const a of document.querySelectorAll("nav a")) {
    if (hash.startsWith(a.getAttribute("href"))) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  try {
    const m = hash.match(/^#\/jobs\/([\w-]+)/);
    if (m) await jobView(m[1]);
    else if (hash.startsWith("#/jobs")) await jobsView();
    else if (hash.startsWith("#/priors")) await priorsView();
    else await newJobView();
  } catch (err) {
    if (err.status === 401) return keyView(err);
    main.replaceChildren(errorBox(err));
  }
  window.nfrecon.ready = true;
}

window.addEventListener("hashchange", () => state.info && route());
boot();
