// A form generated from the published JSON Schema of a MethodSpec (GET /v1/methods/{task}: spec_schema,
// preset_options). Every top-level property of the spec other than `overrides` (task, preset, and any
// field the API adds later) becomes a field; every section of `overrides` (a partial MethodConfig)
// becomes a fieldset. Inputs start empty with the effective default (preset for the device, else the
// schema's default) shown as placeholder: only what the user sets is sent, so the spec stays partial.
// Values are sent as typed; the API validates them and its 422 errors are shown at their fields.
// Options: `choices` turns a field into a select of values the page knows (a prior id from GET /v1/priors),
// `hidden` leaves fields out (a server path the API refuses), `sectionTasks` shows a section for some tasks only.

import { el } from "./dom.js";

// Sections shown open; the rest go under "More options".
const PRIMARY = ["precondition", "encoding", "network", "optimizer", "train", "extraction", "prior"];

let uid = 0;

function deref(schema, node) {
  while (node && node.$ref) node = schema.$defs[node.$ref.split("/").pop()];
  return node;
}

// anyOf [X, null] -> X, nullable
function unwrap(schema, node) {
  node = deref(schema, node);
  if (node && node.anyOf) {
    const rest = node.anyOf.filter((n) => n.type !== "null");
    if (rest.length === 1) return { ...deref(schema, rest[0]), nullable: true, default: node.default, description: node.description, title: node.title };
  }
  return node;
}

function dig(obj, path) {
  return path.reduce((o, k) => (o == null ? undefined : o[k]), obj);
}

function setIn(obj, path, value) {
  let o = obj;
  path.slice(0, -1).forEach((k) => (o = o[k] ??= {}));
  o[path[path.length - 1]] = value;
}

function show(v) {
  if (v === undefined) return "";
  if (v === null) return "null";
  return Array.isArray(v) ? v.join(", ") : String(v);
}

function humanize(name) {
  return name.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());
}

export class SpecForm {
  // root: element to render into; detail: GET /v1/methods/{task}; device: "cpu" | "cuda"
  // choices: {path: {options: [{value, label}], empty: label of "no value", hint}}; hidden: [path];
  // sectionTasks: {overrides section: [tasks it is shown for]}
  constructor(root, detail, { device = "cpu", onTaskChange, choices = {}, hidden = [], sectionTasks = {} } = {}) {
    this.root = root;
    this.device = device;
    this.onTaskChange = onTaskChange;
    this.choices = choices;
    this.hidden = new Set(hidden);
    this.sectionTasks = sectionTasks;
    this.values = {}; // path string -> raw input value, kept across re-renders (preset changes)
    this.setDetail(detail);
  }

  setDetail(detail) {
    this.detail = detail;
    this.schema = detail.spec_schema;
    this.render();
  }

  get preset() {
    return this.values.preset || this.schema.properties.preset?.default;
  }

  get task() {
    return this.values.task || this.schema.properties.task?.default;
  }

  // New options for a `choices` field, in place (the rest of the form and what the user typed stay).
  setChoices(path, options) {
    const choice = (this.choices[path] ??= {});
    choice.options = options;
    const f = this.fields.find((x) => x.path.join(".") === path);
    if (!f) return;
    const keep = this.values[path];
    f.input.replaceChildren(...this.choiceOptions(choice));
    f.input.value = keep && options.some((o) => o.value === keep) ? keep : "";
    if (f.input.value === "") delete this.values[path];
  }

  choiceOptions(choice) {
    return [el("option", { value: "" }, choice.empty || "(none)"),
      ...(choice.options || []).map((o) => el("option", { value: o.value }, o.label))];
  }

  // The value the server will use when the field is left empty.
  effectiveDefault(path, node) {
    if (path[0] === "overrides") {
      const presets = this.detail.preset_options?.[this.device] || this.detail.preset_options?.cpu || {};
      const fromPreset = dig(presets[this.preset] || {}, path.slice(1));
      if (fromPreset !== undefined) return fromPreset;
    }
    return node.default;
  }

  render() {
    this.fields = []; // {path, input, parse, node}
    this.unions = []; // {path, select, defaultType}
    const props = this.schema.properties;
    const top = el("fieldset", { class: "spec-top" }, el("legend", {}, "Method"));
    for (const [name, node] of Object.entries(props)) {
      if (name === "overrides") continue;
      top.append(this.field([name], unwrap(this.schema, node)));
    }
    const overrides = unwrap(this.schema, props.overrides);
    const primary = el("div", { class: "sections" });
    const more = el("div", { class: "sections" });
    for (const [name, node] of Object.entries(overrides.properties || {})) {
      if (name === "task") continue; // must agree with the spec's task: set from there
      if (this.sectionTasks[name] && !this.sectionTasks[name].includes(this.task)) continue;
      const section = this.section(["overrides", name], node);
      (PRIMARY.includes(name) ? primary : more).append(section);
    }
    const details = el("details", { class: "more" }, el("summary", {}, "More options"), more);
    this.root.replaceChildren(top, primary, details);
  }

  section(path, raw) {
    const name = path[path.length - 1];
    const node = unwrap(this.schema, raw); // a nullable section (the prior) shows its fields
    const fs = el("fieldset", { class: "section", "data-path": path.join(".") }, el("legend", {}, humanize(name)));
    if (node.oneOf && node.discriminator) {
      // A union (encoding, network, optimizer): a type select, then the chosen variant's fields.
      const mapping = node.discriminator.mapping;
      const prop = node.discriminator.propertyName;
      const defaultType = this.effectiveDefault([...path, prop], {}) ?? Object.keys(mapping)[0];
      const key = [...path, prop].join(".");
      const id = `f${++uid}`;
      const select = el("select", { id, name: key, "data-path": key },
        el("option", { value: "" }, `${defaultType} (default)`),
        ...Object.keys(mapping).map((t) => el("option", { value: t }, t)));
      select.value = this.values[key] || "";
      const body = el("div", { class: "variant" });
      const draw = () => {
        this.values[key] = select.value;
        const type = select.value || defaultType;
        this.fields = this.fields.filter((f) => !f.path.join(".").startsWith(path.join(".") + "."));
        const variant = deref(this.schema, { $ref: mapping[type] });
        body.replaceChildren(...Object.entries(variant.properties || {})
          .filter(([k]) => k !== prop)
          .map(([k, n]) => this.field([...path, k], unwrap(this.schema, n), type !== defaultType)));
      };
      select.addEventListener("change", draw);
      this.unions.push({ path, prop, select, defaultType });
      fs.append(el("div", { class: "field" }, el("label", { for: id }, "Type"), select), body);
      draw();
    } else {
      for (const [k, n] of Object.entries(node.properties || {})) {
        if (!this.hidden.has([...path, k].join("."))) fs.append(this.field([...path, k], unwrap(this.schema, n)));
      }
    }
    return fs;
  }

  // One input for a primitive, an enum, a nullable value or an array. `schemaDefaults`: the preset's
  // values do not apply (another union variant was picked), so show the schema's defaults.
  field(path, node, schemaDefaults = false) {
    const key = path.join(".");
    const id = `f${++uid}`;
    const def = schemaDefaults ? node.default : this.effectiveDefault(path, node);
    const label = el("label", { for: id }, node.title || humanize(path[path.length - 1]));
    const hint = el("small", { class: "hint", id: `${id}-hint` }, `default: ${show(def) || "none"}`);
    const err = el("small", { class: "field-error", id: `${id}-err`, role: "alert" });
    let input;
    let parse;
    const topLevel = path.length === 1;
    const choice = this.choices[key];
    if (choice) {
      // values the page knows (e.g. the user's priors); empty = not sent
      input = el("select", { id }, ...this.choiceOptions(choice));
      input.value = this.values[key] ?? "";
      parse = (v) => (v === "" ? undefined : v);
      if (choice.hint) hint.textContent = choice.hint;
    } else if (node.enum || node.type === "boolean" || node.const !== undefined) {
      const options = node.enum || (node.type === "boolean" ? [true, false] : [node.const]);
      // Top-level choices (task, preset, ...) name their value; nested ones may stay unset (= default).
      const opts = topLevel ? [] : [el("option", { value: "" }, `(default: ${show(def)})`)];
      if (node.nullable && !topLevel) opts.push(el("option", { value: "null" }, "null"));
      input = el("select", { id }, ...opts, ...options.map((o) => el("option", { value: JSON.stringify(o) }, String(o))));
      if (topLevel && this.values[key] === undefined) this.values[key] = def;
      parse = (v) => (v === "" ? undefined : JSON.parse(v));
      input.value = this.values[key] === undefined ? "" : JSON.stringify(this.values[key]);
      if (topLevel && input.value === "" && options.length) input.value = JSON.stringify(options[0]);
    } else if (node.type === "array" && node.items?.enum) {
      // e.g. extraction.formats: one checkbox per allowed value
      input = el("div", { id, class: "checks", role: "group", "aria-labelledby": `${id}-lbl` });
      label.id = `${id}-lbl`;
      label.removeAttribute("for");
      const chosen = this.values[key] || [];
      for (const o of node.items.enum) {
        const cid = `f${++uid}`;
        const box = el("input", { type: "checkbox", id: cid, value: o });
        box.checked = chosen.includes(o);
        input.append(el("span", {}, box, el("label", { for: cid }, o)));
      }
      parse = () => {
        const v = [...input.querySelectorAll("input:checked")].map((b) => b.value);
        return v.length ? v : undefined;
      };
    } else {
      const numeric = node.type === "integer" || node.type === "number";
      input = el("input", { id, type: "text", inputmode: numeric ? "decimal" : "text", placeholder: show(def), autocomplete: "off" });
      input.value = this.values[key] ?? "";
      parse = (v) => {
        v = v.trim();
        if (v === "") return undefined;
        if (v === "null" && node.nullable) return null;
        if (node.type === "array") return v.split(",").map((s) => (Number.isFinite(Number(s)) && s.trim() !== "" ? Number(s) : s.trim()));
        // numbers as numbers; anything else as typed, for the API to reject with its own message
        if (numeric) return Number.isFinite(Number(v)) ? Number(v) : v;
        return v;
      };
    }
    input.setAttribute("aria-describedby", `${id}-hint ${id}-err`);
    input.dataset.path = key;
    const read = () => (input.tagName === "DIV" ? parse() : parse(input.value));
    input.addEventListener("change", () => {
      this.values[key] = input.tagName === "DIV" ? parse() : input.tagName === "SELECT" ? read() : input.value;
      if (key === "task") this.onTaskChange?.(this.values.task);
      else if (key === "preset") this.render(); // new effective defaults
    });
    this.fields.push({ path, input, read, err, wrapper: null });
    const wrapper = el("div", { class: "field" }, label, input, hint, err);
    if (node.description) wrapper.title = node.description;
    this.fields[this.fields.length - 1].wrapper = wrapper;
    return wrapper;
  }

  // The MethodSpec to send: top-level values plus the overrides the user set.
  collect() {
    const spec = {};
    for (const f of this.fields) {
      const v = f.read();
      if (v !== undefined) setIn(spec, f.path, v);
    }
    for (const u of this.unions) {
      const section = dig(spec, u.path);
      const type = u.select.value || (section ? u.defaultType : undefined);
      if (type) setIn(spec, [...u.path, u.prop], type);
    }
    spec.overrides ??= {};
    return spec;
  }

  clearErrors() {
    for (const f of this.fields) {
      f.err.textContent = "";
      f.input.removeAttribute("aria-invalid");
    }
  }

  // errors: [{loc: ["body", "spec", "overrides", "train", "steps"], msg}] from a 422 problem+json.
  // Returns the errors no field took (shown in the summary only).
  showErrors(errors) {
    const left = [];
    for (const e of errors || []) {
      const loc = (e.loc || []).map(String);
      const i = loc.indexOf("spec");
      let path = i >= 0 ? loc.slice(i + 1) : loc;
      let f = this.fields.find((x) => x.path.join(".") === path.join("."));
      if (!f) {
        // pydantic puts a union's tag in the path (overrides.encoding.hashgrid.n_levels)
        path = path.filter((seg, k) => !(k > 0 && this.unions.some((u) => u.path.join(".") === path.slice(0, k).join("."))));
        f = this.fields.find((x) => x.path.join(".") === path.join("."));
      }
      if (f) {
        f.err.textContent = e.msg;
        f.input.setAttribute("aria-invalid", "true");
        f.wrapper.closest("details")?.setAttribute("open", "");
      } else left.push(e);
    }
    return left;
  }
}
