// The dashboard: streams with a live window-score sparkline, the latest events with
// their evidence, a form to add a stream. Polls /api/streams every second.
import { api, localPath, tokenForm } from "./common.js";

const POLL_MS = 1000;
const EVENTS_EVERY = 2;        // poll /api/events every 2nd tick
const HISTORY = 60;            // sparkline points kept per stream (about a minute)
const SVG = "http://www.w3.org/2000/svg";
const SPARK_W = 180;
const SPARK_H = 48;

const $ = (id) => document.getElementById(id);
const rows = new Map();        // stream id -> {row, cells, history}
const thumbs = new Map();      // event id -> blob URL of its frame.jpg
let tick = 0;
let timer = null;
let generation = 0;            // a token change restarts polling; older loops stop

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text) node.textContent = text;
  return node;
}

function fmt(value, digits = 2, unit = "") {
  return value === null || value === undefined ? "–" : `${value.toFixed(digits)}${unit}`;
}

function setStatus(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

// ---- streams ---------------------------------------------------------------

function newRow(stream) {
  const row = el("tr", { "data-testid": "stream-row", "data-stream-id": stream.id });
  const cells = {};
  for (const key of ["name", "state", "fps", "dropped", "latency", "score", "spark", "actions"]) {
    cells[key] = el("td", { class: key });
    row.append(cells[key]);
  }
  cells.title = el("strong", { "data-testid": "stream-name" });
  cells.source = el("small", { class: "source" });
  cells.name.append(cells.title, el("br"), cells.source);
  cells.status = el("span", { "data-testid": "stream-status" });
  cells.alert = el("span", { class: "badge", "data-testid": "stream-alert", hidden: "" }, "ALERT");
  cells.faces = el("small", { class: "faces", "data-testid": "stream-alerts" });
  cells.state.append(cells.status, " ", cells.alert, el("br"), cells.faces);
  cells.score.setAttribute("data-testid", "stream-score");

  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${SPARK_W} ${SPARK_H}`);
  svg.setAttribute("width", SPARK_W);
  svg.setAttribute("height", SPARK_H);
  svg.setAttribute("role", "img");
  svg.setAttribute("data-testid", "sparkline");
  const title = document.createElementNS(SVG, "title");
  svg.append(title);
  // the hysteresis band (clear below its bottom, alert above its top) and the alert line
  const band = document.createElementNS(SVG, "rect");
  band.setAttribute("class", "band");
  band.setAttribute("x", 0);
  band.setAttribute("width", SPARK_W);
  const enter = document.createElementNS(SVG, "line");
  enter.setAttribute("class", "threshold enter");
  enter.setAttribute("x1", 0);
  enter.setAttribute("x2", SPARK_W);
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("class", "score");
  svg.append(band, enter, path);
  cells.spark.append(svg);
  cells.svg = { svg, title, path, band, enter };

  const remove = el("button", { type: "button", "data-testid": "stream-remove" }, "Remove");
  remove.setAttribute("aria-label", `Remove stream ${stream.name}`);
  remove.addEventListener("click", () => removeStream(stream.id, stream.name, remove));
  cells.actions.append(remove);
  return { row, cells, history: [] };
}

const y = (score) => Number((SPARK_H - 2 - score * (SPARK_H - 4)).toFixed(1));

function drawSparkline(entry, votes) {
  const { svg, title, path, band, enter } = entry.cells.svg;
  const step = SPARK_W / (HISTORY - 1);
  const offset = HISTORY - entry.history.length;
  let d = "";
  let pen = false;         // a missing score (no face yet) breaks the line
  entry.history.forEach((score, i) => {
    if (score === null) {
      pen = false;
      return;
    }
    d += `${pen ? "L" : "M"}${((offset + i) * step).toFixed(1)},${y(score)} `;
    pen = true;
  });
  path.setAttribute("d", d.trim());
  const points = entry.history.filter((s) => s !== null);
  svg.setAttribute("data-points", points.length);
  svg.setAttribute("data-last", points.length ? points[points.length - 1] : "");
  const thresholds = votes && votes.stream;
  const high = thresholds?.enter_threshold;
  const low = thresholds?.exit_threshold ?? high;
  const known = typeof high === "number";
  enter.toggleAttribute("hidden", !known);
  band.toggleAttribute("hidden", !known);
  if (known) {
    enter.setAttribute("y1", y(high));
    enter.setAttribute("y2", y(high));
    band.setAttribute("y", y(high));
    band.setAttribute("height", Math.max(1, y(low) - y(high)).toFixed(1));
  }
  const last = points.length ? points[points.length - 1].toFixed(3) : "none yet";
  title.textContent = `window score over the last ${entry.history.length} s: latest ${last}; ` +
    `alert at ${fmt(thresholds?.enter_threshold, 3)}, clear below ${fmt(thresholds?.exit_threshold, 3)}`;
}

function updateRow(entry, stream) {
  const { row, cells } = entry;
  cells.title.textContent = stream.name;
  cells.source.textContent = `${stream.kind}: ${stream.source}`;
  cells.status.textContent = stream.status;
  cells.status.title = stream.status_detail || "";
  cells.alert.hidden = !stream.alerting;
  // one line per face with an open alert: its track, box and window score
  const alerts = stream.alerts || [];
  cells.faces.textContent = alerts
    .map((a) => `face ${a.track} at [${a.box.map((v) => Math.round(v)).join(", ")}]: ${fmt(a.score, 3)}`)
    .join("; ");
  row.dataset.alertTracks = alerts.map((a) => a.track).join(" ");
  row.classList.toggle("alerting", Boolean(stream.alerting));
  row.dataset.name = stream.name;
  row.dataset.status = stream.status;
  row.dataset.alerting = String(Boolean(stream.alerting));
  cells.fps.textContent = `${fmt(stream.fps_in, 1)} / ${fmt(stream.fps_analysed, 1)}`;
  const dropped = Object.entries(stream.frames_dropped || {});
  cells.dropped.textContent = String(dropped.reduce((sum, [, n]) => sum + n, 0));
  cells.dropped.title = dropped.map(([reason, n]) => `${reason}: ${n}`).join(", ") || "none";
  cells.latency.textContent = fmt(stream.latency_s, 2, " s");
  cells.score.textContent = fmt(stream.score, 3);
  row.dataset.score = stream.score === null ? "" : String(stream.score);
  entry.history.push(stream.score);
  if (entry.history.length > HISTORY) entry.history.shift();
  drawSparkline(entry, stream.votes);
}

function renderStreams(streams) {
  const body = $("stream-rows");
  const seen = new Set();
  for (const stream of streams) {
    seen.add(stream.id);
    let entry = rows.get(stream.id);
    if (!entry) {
      entry = newRow(stream);
      rows.set(stream.id, entry);
      body.append(entry.row);
    }
    updateRow(entry, stream);
  }
  for (const [id, entry] of rows) {
    if (!seen.has(id)) {
      entry.row.remove();
      rows.delete(id);
    }
  }
  $("no-streams").hidden = streams.length > 0;
}

async function removeStream(id, name, button) {
  if (!window.confirm(`Stop watching ${name}?`)) return;
  button.disabled = true;
  try {
    await api(`/api/streams/${encodeURIComponent(id)}`, { method: "DELETE" });
    setStatus(`removed ${name}`);
    await refresh();
  } catch (error) {
    setStatus(`could not remove ${name}: ${error.message}`, true);
    button.disabled = false;
  }
}

async function addStream(event) {
  event.preventDefault();
  const form = event.target;
  const error = $("add-error");
  error.textContent = "";
  const body = { name: form.elements.name.value.trim(), url: form.elements.url.value.trim() };
  try {
    await api("/api/streams", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    form.reset();
    setStatus(`added ${body.name}`);
    await refresh();
  } catch (failure) {
    error.textContent = failure.message;
  }
}

// ---- events ----------------------------------------------------------------

async function blobUrl(url) {
  const response = await api(localPath(url));
  return URL.createObjectURL(await response.blob());
}

function describe(event) {
  const who = `${event.stream.name}${event.track ? ` (${event.track})` : ""}`;
  const what = event.detail || (event.window ? `window score ${fmt(event.window.score, 3)}` : "");
  return what ? `${who}: ${what}` : who;
}

function eventItem(event) {
  const item = el("li", { "data-testid": "event", "data-event-id": event.id, "data-type": event.type });
  item.dataset.key = eventKey(event);
  item.classList.add(event.type.replace(".", "-"));
  const when = new Date(event.time * 1000);
  const time = el("time", { datetime: when.toISOString() }, when.toLocaleTimeString());
  const type = el("strong", { class: "type" }, event.type);
  const text = el("span", { class: "detail" }, describe(event));
  item.append(time, " ", type, " ", text);
  const urls = event.evidence_urls;
  if (urls && urls.clip) item.dataset.clip = "true";
  if (urls && urls.frame) {
    const button = el("button", { type: "button", class: "thumb", "data-testid": "evidence-thumb" });
    button.setAttribute("aria-label", `Open the evidence of ${event.stream.name} at ${time.textContent}`);
    const img = el("img", { alt: `frame that scored highest on ${event.stream.name}`, width: "160" });
    button.append(img);
    button.addEventListener("click", () => openEvidence(urls));
    item.append(button);
    const cached = thumbs.get(event.id);
    if (cached) img.src = cached;
    else {
      blobUrl(urls.frame)
        .then((src) => {
          thumbs.set(event.id, src);
          img.src = src;
        })
        .catch((error) => img.replaceWith(el("span", { class: "error" }, error.message)));
    }
    item.append(reviewControls(event));
  }
  return item;
}

// A person's verdict on an alert: two buttons, and the verdict once given.
const VERDICTS = { confirmed: "Confirmed deepfake", false_positive: "False positive" };

function reviewControls(event) {
  const box = el("span", { class: "review", "data-testid": "event-review-controls" });
  const badge = el("span", { class: "verdict", "data-testid": "event-review" });
  const show = (review) => {
    badge.textContent = review ? `reviewed: ${VERDICTS[review.verdict]}` : "";
    badge.dataset.verdict = review ? review.verdict : "";
  };
  show(event.review);
  for (const [verdict, label] of Object.entries(VERDICTS)) {
    const button = el("button", { type: "button", "data-testid": `review-${verdict}` }, label);
    button.addEventListener("click", async () => {
      try {
        const response = await api(`/api/events/${encodeURIComponent(event.id)}/review`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ verdict }),
        });
        show((await response.json()).review);
        setStatus(`${event.stream.name}: ${label.toLowerCase()}, noted`);
      } catch (error) {
        setStatus(`could not review: ${error.message}`, true);
      }
    });
    box.append(button, " ");
  }
  box.append(badge);
  return box;
}

// An event's evidence is written after the event, and its clip seconds later: their
// links may come on a later poll; a review changes it too.
const eventKey = (event) => {
  const urls = event.evidence_urls;
  const review = event.review ? `+${event.review.verdict}` : "";
  return `${event.id}${urls ? "+evidence" : ""}${urls && urls.clip ? "+clip" : ""}${review}`;
};

function renderEvents(events) {
  const list = $("events");
  const shown = [...list.children].map((item) => item.dataset.key).join(" ");
  const ids = events.map((event) => event.id);
  $("no-events").hidden = events.length > 0;
  if (shown === events.map(eventKey).join(" ")) return;  // unchanged: keep the images
  list.replaceChildren(...events.map(eventItem));
  for (const [id, src] of thumbs) {
    if (!ids.includes(id)) {
      URL.revokeObjectURL(src);
      thumbs.delete(id);
    }
  }
}

async function openEvidence(urls) {
  const dialog = $("evidence");
  const images = [[$("evidence-crop"), urls.crop], [$("evidence-mask"), urls.mask]];
  for (const [img] of images) img.removeAttribute("src");
  const video = $("evidence-clip");
  video.removeAttribute("src");
  $("evidence-clip-figure").hidden = !urls.clip;
  dialog.showModal();
  try {
    for (const [img, url] of images) if (url) img.src = await blobUrl(url);
    if (urls.clip) {
      video.src = await blobUrl(urls.clip);
      await video.play().catch(() => {});  // autoplay may be refused: the controls remain
    }
  } catch (error) {
    setStatus(`could not load the evidence: ${error.message}`, true);
  }
}

function closeEvidence() {
  for (const media of [$("evidence-crop"), $("evidence-mask"), $("evidence-clip")]) {
    if (media.src.startsWith("blob:")) URL.revokeObjectURL(media.src);
    media.removeAttribute("src");
  }
  $("evidence-clip").load();  // let go of the clip
}

// ---- polling ---------------------------------------------------------------

async function refresh() {
  const streams = await (await api("/api/streams")).json();
  renderStreams(streams.streams);
  if (tick % EVENTS_EVERY === 0) {
    const events = await (await api("/api/events?limit=20")).json();
    renderEvents(events.events);
  }
  tick += 1;
  setStatus(`${streams.streams.length} stream(s); updated ${new Date().toLocaleTimeString()}`);
}

async function poll(mine) {
  try {
    await refresh();
  } catch (error) {
    setStatus(error.message, true);
  }
  if (mine === generation) timer = window.setTimeout(() => poll(mine), POLL_MS);
}

function restart() {
  window.clearTimeout(timer);
  generation += 1;
  tick = 0;
  poll(generation);
}

tokenForm($("token-form"), $("token"), restart);
$("add-form").addEventListener("submit", addStream);
$("evidence").addEventListener("close", closeEvidence);
restart();
