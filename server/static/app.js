// RuleRAG web page: asks /v1/ask with server-sent events and shows rules, documents, the answer
// and the checker's verdicts. Every text from the user, the server or a document is set with
// textContent (never innerHTML), so it is shown, not interpreted.
"use strict";

const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function fmt(x, digits) {
  return typeof x === "number" && isFinite(x) ? x.toFixed(digits) : "–";
}

function headers(extra) {
  const h = Object.assign({ "Content-Type": "application/json" }, extra || {});
  const key = $("api-key").value.trim();
  if (key) h["X-API-Key"] = key;
  return h;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function setStatus(message) {
  $("status").textContent = message;
}

// ------------------------------------------------------------------ form rows

function addInstruction(value) {
  const row = el("div", null, "item");
  const input = el("input");
  input.type = "text";
  input.className = "instruction";
  input.maxLength = 500;
  input.placeholder = "e.g. Answer in one lowercase word.";
  if (value) input.value = value;
  const remove = el("button", "×");
  remove.type = "button";
  remove.title = "remove";
  remove.addEventListener("click", () => row.remove());
  row.append(input, remove);
  $("instructions").append(row);
}

function addConstraint(id, kwargs) {
  const row = el("div", null, "item");
  const idInput = el("input");
  idInput.type = "text";
  idInput.className = "constraint-id";
  idInput.setAttribute("list", "constraint-ids");
  idInput.placeholder = "id, e.g. change_case:english_lowercase";
  if (id) idInput.value = id;
  const kw = el("input");
  kw.type = "text";
  kw.className = "kwargs";
  kw.placeholder = 'kwargs as JSON, e.g. {"num_words": 5, "relation": "less than"}';
  if (kwargs) kw.value = kwargs;
  const remove = el("button", "×");
  remove.type = "button";
  remove.title = "remove";
  remove.addEventListener("click", () => row.remove());
  row.append(idInput, kw, remove);
  $("constraints").append(row);
}

function readForm() {
  const body = { question: $("question").value.trim(), mode: $("mode").value, stream: true };
  const k = parseInt($("k").value, 10);
  if (Number.isInteger(k)) body.k = k;
  const instructions = [...document.querySelectorAll("#instructions .instruction")]
    .map((i) => i.value.trim()).filter(Boolean);
  if (instructions.length) body.instructions = instructions;
  const constraints = [];
  for (const row of document.querySelectorAll("#constraints .item")) {
    const id = row.querySelector(".constraint-id").value.trim();
    if (!id) continue;
    const raw = row.querySelector(".kwargs").value.trim();
    let kwargs = {};
    if (raw) {
      try { kwargs = JSON.parse(raw); } catch (e) { throw new Error(`kwargs of ${id} are not valid JSON: ${e.message}`); }
      if (typeof kwargs !== "object" || kwargs === null || Array.isArray(kwargs)) throw new Error(`kwargs of ${id} must be a JSON object`);
    }
    constraints.push({ id, kwargs });
  }
  if (constraints.length) body.constraints = constraints;
  return body;
}

// ------------------------------------------------------------------ rendering

function clear() {
  showError("");
  for (const id of ["answer-section", "checks-section", "rules-section", "documents-section"]) $(id).hidden = true;
  for (const id of ["rules", "documents", "checks"]) $(id).querySelector("tbody").replaceChildren();
  $("answer").textContent = "";
  $("answer-why").replaceChildren();
  $("answer-meta").textContent = "";
  $("checks-meta").textContent = "";
}

// "rule:<id>" -> "rule 2" (its row in the rules table), so documents say which rule found them
let ruleNumbers = new Map();

function foundBy(labels) {
  return (labels || []).map((f) => (f.startsWith("rule:") && ruleNumbers.has(f.slice(5)) ? `rule ${ruleNumbers.get(f.slice(5))}` : f)).join(", ");
}

function renderRules(data) {
  const body = $("rules").querySelector("tbody");
  body.replaceChildren();
  ruleNumbers = new Map();
  (data.rules || []).forEach((m, i) => {
    ruleNumbers.set(m.rule.id, i + 1);
    const tr = el("tr");
    tr.className = "rule";
    tr.title = `rule id ${m.rule.id}`;
    tr.append(el("td", i + 1, "num"), el("td", fmt(m.score, 2), "num score"), el("td", fmt(m.rule.confidence, 2), "num"),
      el("td", m.rule.text, "rule-text"), el("td", m.reason, "why"));
    body.append(tr);
  });
  $("no-rules").hidden = (data.rules || []).length > 0;
  $("rules-section").hidden = false;
}

function renderDocuments(data) {
  const body = $("documents").querySelector("tbody");
  body.replaceChildren();
  for (const d of data.documents || []) {
    const tr = el("tr");
    tr.className = "document" + ((d.found_by || []).some((f) => f.startsWith("rule:")) ? " rule-doc" : "");
    tr.append(el("td", d.rank, "num"), el("td", fmt(d.score, 4), "num"), el("td", d.id),
      el("td", foundBy(d.found_by), "found"), el("td", d.contents, "doc-text"));
    body.append(tr);
  }
  $("documents-section").hidden = false;
}

function renderToken(data) {
  // the answer as the generator decodes it; the `answer` event then replaces it with the final text
  $("answer").textContent += data.text;
  $("answer-section").hidden = false;
}

function renderAnswer(data) {
  $("answer").textContent = data.answer;
  const why = $("answer-why");
  why.replaceChildren();
  const support = data.support;
  if (support && support.supported) {
    for (const path of support.paths) why.append(el("li", "why: " + path));
  }
  for (const w of data.warnings || []) why.append(el("li", "warning: " + w, "warning"));
  why.hidden = why.children.length === 0;
  $("answer-section").hidden = false;
}

function renderCheck(data) {
  const report = data.check;
  const body = $("checks").querySelector("tbody");
  body.replaceChildren();
  report.instruction_id_list.forEach((id, i) => {
    const strict = report.strict.follow_instruction_list[i];
    const loose = report.loose.follow_instruction_list[i];
    const tr = el("tr");
    tr.className = "verdict";
    tr.append(el("td", id), el("td", strict ? "followed" : "not followed", strict ? "ok" : "bad"),
      el("td", loose ? "followed" : "not followed", loose ? "ok" : "bad"));
    body.append(tr);
  });
  const notes = [];
  if (report.unsatisfiable) notes.push("unsatisfiable: " + (report.unsatisfiable_reason || ""));
  if (report.faithfulness) notes.push(`K-Precision ${fmt(report.faithfulness.k_precision, 2)}, grounded: ${report.faithfulness.grounded ? "yes" : "no"}`);
  if (data.rounds && data.rounds.length) notes.push(`${data.rounds.length} round(s)`);
  $("checks-meta").textContent = notes.join(" · ");
  $("checks-section").hidden = false;
}

function renderDone(data) {
  const t = data.timings || {};
  $("answer-meta").textContent = `${data.mode} · generator ${data.generator} · retrieval ${fmt(t.retrieval_s, 3)} s · generation ${fmt(t.generation_s, 3)} s · total ${fmt(t.total_s, 3)} s`;
  if (data.instructions && data.instructions.length) {
    $("answer-meta").textContent += " · instructions: " + data.instructions.join(" | ");
  }
}

// ------------------------------------------------------------------ server-sent events

function parseEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  return { event, data: data.length ? JSON.parse(data.join("\n")) : null };
}

function handleEvent(ev) {
  switch (ev.event) {
    case "rules": renderRules(ev.data); setStatus("retrieved; generating…"); break;
    case "documents": renderDocuments(ev.data); break;
    case "token": renderToken(ev.data); break;
    case "answer": renderAnswer(ev.data); break;
    case "check": renderCheck(ev.data); break;
    case "done": renderDone(ev.data); setStatus("done"); return true;
    case "error": showError(`${ev.data.error.code}: ${ev.data.error.message}`); setStatus(""); return true;
  }
  return false;
}

async function ask(event) {
  event.preventDefault();
  clear();
  let body;
  try { body = readForm(); } catch (e) { showError(e.message); return; }
  if (!body.question) { showError("Type a question first."); return; }
  const button = $("ask");
  button.disabled = true;
  setStatus("retrieving…");
  try {
    const response = await fetch("/v1/ask", { method: "POST", headers: headers({ Accept: "text/event-stream" }), body: JSON.stringify(body) });
    if (!response.ok) {
      let message = `HTTP ${response.status}`;
      try { const err = await response.json(); message = `${err.error.code}: ${err.error.message}`; } catch (e) { /* not JSON */ }
      showError(message);
      setStatus("");
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let finished = false;
    while (!finished) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while (!finished && (cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        if (block.trim()) finished = handleEvent(parseEvent(block));
      }
    }
    if (!finished) { showError("the connection closed before the answer was complete"); setStatus(""); }
  } catch (e) {
    showError(`request failed: ${e.message}`);
    setStatus("");
  } finally {
    button.disabled = false;
  }
}

// ------------------------------------------------------------------ start

async function checkReady() {
  const badge = $("ready");
  try {
    const r = await fetch("/readyz");
    const data = await r.json();
    if (r.ok) {
      badge.textContent = `ready · ${data.index} · ${data.documents} documents · ${data.rules} rules · ${data.generator}`;
      badge.className = "badge ok";
      return;
    }
    badge.textContent = data.error ? data.error.code.replace("_", " ") : "not ready";
    badge.className = "badge bad";
    if (data.error && data.error.code === "not_ready") setTimeout(checkReady, 2000);
  } catch (e) {
    badge.textContent = "unreachable";
    badge.className = "badge bad";
  }
}

async function loadConstraintIds() {
  try {
    const r = await fetch("/v1/constraints", { headers: headers() });
    if (!r.ok) return;
    const list = $("constraint-ids");
    for (const c of (await r.json()).items) {
      const opt = el("option");
      opt.value = c.id;
      opt.label = c.description;
      list.append(opt);
    }
  } catch (e) { /* optional */ }
}

document.addEventListener("DOMContentLoaded", () => {
  $("ask-form").addEventListener("submit", ask);
  $("add-instruction").addEventListener("click", () => addInstruction());
  $("add-constraint").addEventListener("click", () => addConstraint());
  $("question").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("ask-form").requestSubmit(); }
  });
  checkReady();
  loadConstraintIds();
});
