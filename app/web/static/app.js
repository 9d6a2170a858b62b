// imgsim pages: the search form (upload, drag-and-drop, "more like this") and the match view.
"use strict";

function text(tag, content, cls) {
  const el = document.createElement(tag);
  el.textContent = content;
  if (cls) el.className = cls;
  return el;
}

function showHits(answer, queryId) {
  const grid = document.getElementById("results");
  grid.replaceChildren();
  document.getElementById("status").textContent =
    `${answer.hits.length} results (${answer.resolved} in ${answer.collection})`;
  for (const hit of answer.hits) {
    const fig = document.createElement("figure");
    fig.className = "hit" + (hit.verified ? " verified" : "");
    const img = document.createElement("img");
    img.src = `/api/images/${hit.id}/thumbnail`;
    img.alt = `image ${hit.id}`;
    fig.append(img);
    const cap = document.createElement("figcaption");
    cap.append(text("span", `distance ${hit.distance.toFixed(3)}`));
    if (hit.score !== null) cap.append(text("span", ` · score ${hit.score.toFixed(1)} · ${hit.inliers ?? 0} inliers ✔`, "mark"));
    if (hit.confidence !== null && hit.confidence !== undefined) {
      cap.append(" ", text("span", `${Math.round(hit.confidence * 100)}% same item`, "badge confidence"));
    }
    cap.append(document.createElement("br"), text("span", hit.path, "path"));
    const more = text("a", "more like this", "more");
    more.href = "#";
    more.onclick = (e) => { e.preventDefault(); searchStored(hit.id); };
    cap.append(document.createElement("br"), more);
    const compare = text("a", " · compare methods", "compare");
    compare.href = `/compare?id=${hit.id}&collection=${encodeURIComponent(answer.collection)}`;
    cap.append(compare);
    if (queryId !== null && queryId !== hit.id) {
      const why = text("a", " · why?", "why");
      why.href = `/match/${queryId}/${hit.id}`;
      cap.append(why);
    }
    fig.append(cap);
    grid.append(fig);
  }
}

async function answerOf(response) {
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function options(form) {
  const data = new FormData(form);
  data.delete("file");
  if (!data.get("max_distance")) data.delete("max_distance");
  return data;
}

async function searchUpload(form, file) {
  const data = options(form);
  data.append("file", file);
  document.getElementById("status").textContent = "searching…";
  try {
    const answer = await answerOf(await fetch("/api/search", { method: "POST", body: data }));
    const first = answer.hits.find((h) => h.distance < 1e-6);
    showHits(answer, first ? first.id : null);
  } catch (err) {
    document.getElementById("status").textContent = `error: ${err.message}`;
  }
}

async function searchStored(id) {
  const form = document.getElementById("search");
  const params = new URLSearchParams(options(form));
  params.set("id", id);
  try {
    showHits(await answerOf(await fetch(`/api/search?${params}`)), id);
  } catch (err) {
    document.getElementById("status").textContent = `error: ${err.message}`;
  }
}

function setUpSearch() {
  const form = document.getElementById("search");
  if (!form) return;
  const input = form.querySelector("input[type=file]");
  input.onchange = () => input.files[0] && searchUpload(form, input.files[0]);
  const drop = document.getElementById("drop");
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
  drop.ondragleave = () => drop.classList.remove("over");
  drop.ondrop = (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files[0]) searchUpload(form, e.dataTransfer.files[0]);
  };
  form.onsubmit = (e) => e.preventDefault();
}

async function setUpMatch() {
  const box = document.getElementById("match");
  if (!box) return;
  const { a, b, method } = box.dataset;
  const verdict = document.getElementById("verdict");
  try {
    const m = await answerOf(await fetch(`/api/images/${a}/matches/${b}?method=${encodeURIComponent(method)}`));
    verdict.textContent = `${m.inliers} verified correspondences (${m.kind}; ${m.keypoints[0]} and ${m.keypoints[1]} keypoints)`;
    const [left, right] = box.querySelectorAll("img");
    const draw = () => {
      const svg = box.querySelector("svg");
      const w = box.clientWidth, h = box.clientHeight;
      svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
      svg.replaceChildren();
      for (const [x1, y1, x2, y2] of m.lines) {
        const line = document.createElementNS("http://www.w3.org/2000/svg", "line");
        line.setAttribute("x1", left.offsetLeft + x1 * left.width);
        line.setAttribute("y1", left.offsetTop + y1 * left.height);
        line.setAttribute("x2", right.offsetLeft + x2 * right.width);
        line.setAttribute("y2", right.offsetTop + y2 * right.height);
        svg.append(line);
      }
    };
    for (const img of [left, right]) if (!img.complete) await new Promise((r) => { img.onload = r; img.onerror = r; });
    draw();
    window.onresize = draw;
  } catch (err) {
    verdict.textContent = `error: ${err.message}`;
  }
}

function setUpIngest() {
  const form = document.getElementById("ingest");
  if (!form) return;
  const progress = document.getElementById("progress");
  form.onsubmit = async (e) => {
    e.preventDefault();
    try {
      const body = JSON.stringify(Object.fromEntries(new FormData(form)));
      let job = await answerOf(await fetch("/api/ingest", { method: "POST", body, headers: { "Content-Type": "application/json" } }));
      while (job.state === "running") {
        progress.textContent = `job ${job.id}: ${job.done}/${job.total ?? "?"} embedded, ${job.verified} verified`;
        await new Promise((r) => setTimeout(r, 1000));
        job = await answerOf(await fetch(`/api/ingest/${job.id}`));
      }
      progress.textContent = job.state === "done"
        ? `job ${job.id} done: ${job.report.new} new, ${job.report.skipped} skipped, ${job.report.failed.length} failed`
        : `job ${job.id} failed: ${job.error}`;
    } catch (err) {
      progress.textContent = `error: ${err.message}`;
    }
  };
}

async function decide(collection, image, others, verdict) {
  const body = JSON.stringify({ collection, image, others, verdict });
  return answerOf(await fetch("/api/decisions", { method: "POST", body, headers: { "Content-Type": "application/json" } }));
}

function setUpGroups() {
  const status = document.getElementById("decision-status");
  for (const section of document.querySelectorAll("section.group")) {
    const collection = section.dataset.collection;
    const ids = section.dataset.ids.split(",").map(Number);
    const act = async (image, others, verdict) => {
      try {
        const answer = await decide(collection, image, others, verdict);
        status.textContent = `${verdict}: ${answer.pairs} pairs recorded; regrouping…`;
        window.location.reload();
      } catch (err) {
        status.textContent = `error: ${err.message}`;
      }
    };
    section.querySelector("button.split").onclick = () => act(null, ids, "not-same");
    for (const member of section.querySelectorAll("figure.member")) {
      const id = Number(member.dataset.id);
      const others = ids.filter((o) => o !== id);
      member.querySelector("button.same").onclick = () => act(id, others, "same");
      member.querySelector("button.not-same").onclick = () => act(id, others, "not-same");
    }
  }
}

setUpSearch();
setUpMatch();
setUpIngest();
setUpGroups();
