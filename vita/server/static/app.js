// The vita voice page: mic -> /v1/realtime (16 kHz pcm16), live transcript, streamed playback, barge-in, a mic
// level meter, per-reply latency, typed questions, and a picked image or the camera frame with the next question.
//
// Test hooks on `window`: vitaState ("idle" | "connecting" | "listening" | "thinking" | "speaking" | "closed" |
// "error"), vitaReady (true once the session is created and the mic streams), transcript ([{role, id, text,
// status, image, latencyMs}]), playback (Player stats: chunksPlayed, stoppedAt, stops, ...), vitaEvents ([{type,
// t, ...}]: server events with performance.now() times), micLevels (RMS per 40 ms block), vitaLatencies
// ([{response_id, ms, from}]: end of the user's turn -> first sample of the reply played, from "speech_stopped" |
// "committed" | "typed"), vitaErrors, vitaSendText(text, withFrame).
//
// The server has no speech recognizer (the model hears the audio itself), so a spoken turn is shown as "(spoken)".
// Latency of a spoken turn starts when input_audio_buffer.speech_stopped arrives: the server VAD's silence before
// it (turn_detection.silence_duration_ms, shorter when the turn was speculated on) is not counted.
// Images go as conversation items that wait on the server for the next user turn, typed (response.create) or spoken
// (committed by the server VAD), as in OpenAI's Realtime API. A picked image is sent at once (or when the session
// starts) and goes with the next question, spoken or typed; removed or replaced before that, it is deleted
// (conversation.item.delete). With the camera on and "attach camera frame" checked, the current frame goes with
// each spoken turn (sent at speech_started; a frame no turn took is replaced by the next) unless an image is
// picked; a typed question carries its frame itself. `input_audio_buffer.committed` names the items the spoken
// turn took (`vita_items`): its transcript entry shows "[image: NAME]" (or "[camera frame]") and the picked image is
// cleared then. A question typed while a reply is in progress interrupts it like a barge-in: playback stops, the
// page sends response.cancel then the question (the server applies them in order), and the cut reply keeps the text
// that was heard. The server's errors that only mean such a race was lost (nothing left to cancel, an item already
// taken by a turn) are not shown.

import { b64FromBytes, INPUT_RATE, int16FromB64, Mic, Player } from "./audio.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// the key comes in the fragment (never sent to the server, so never logged); an older ?api_key= link still works
const fragment = new URLSearchParams(location.hash.slice(1));

window.vitaState = "idle";
window.vitaReady = false;
window.transcript = [];
window.vitaEvents = [];
window.vitaErrors = [];
window.micLevels = [];
window.vitaLatencies = [];

let ws = null;
let mic = null;
let videoStream = null;
let thinkingTimer = null;
let turnEnd = null; // {t, from}: the end of the user's latest turn, for the next response's latency
let picked = null; // {url, name, itemId}: the image file picked for the next question (itemId: sent, waiting)
let cameraItem = null; // the id of the camera frame sent for a spoken turn that no turn has taken yet
let typedPending = false; // a typed question was sent and its response has not started yet
let nextId = 0;
const waiting = new Map(); // id of an item sent and not yet taken by a turn -> {label, image: "picked" | "camera"}
const quiet = new Map(); // event id -> the error code that only means a race was lost (not shown)
let meterLevel = 0; // percent shown by the mic meter
const responses = new Map(); // response id -> {entry, done, status, audio, since}
const dropped = new Set(); // cancelled responses: late deltas are ignored
const player = new Player(onPlaybackIdle, onFirstAudio);
window.playback = player.stats;

function setState(state) {
  window.vitaState = state;
  const el = $("state");
  el.textContent = state;
  el.className = `state ${state}`;
  if (thinkingTimer && state !== "thinking") {
    clearTimeout(thinkingTimer);
    thinkingTimer = null;
  }
}

function render() {
  const box = $("transcript");
  box.replaceChildren(...window.transcript.map((m) => {
    const row = document.createElement("div");
    row.className = `msg ${m.role} ${m.status || ""}`;
    const who = span("who", m.role === "user" ? "You:" : "vita:");
    const parts = [who, " ", span("text", m.text)];
    if (m.latencyMs != null) {
      const badge = span("latency", `${m.latencyMs} ms`);
      badge.title = `${m.latencyMs} ms from the end of your turn to the first sound of this reply`;
      parts.push(" ", badge);
    }
    row.replaceChildren(...parts);
    return row;
  }));
  box.scrollTop = box.scrollHeight;
}

function span(className, text) {
  const el = document.createElement("span");
  el.className = className;
  el.textContent = text;
  return el;
}

// The mic meter: RMS -> -60..0 dBFS -> 0..100 %, with a peak meter's release (6 points per 40 ms block)
function showLevel(rms) {
  const db = 20 * Math.log10(Math.max(rms, 1e-6));
  const pct = Math.max(0, Math.min(100, ((db + 60) * 100) / 60));
  meterLevel = Math.max(pct, meterLevel - 6);
  $("meter-fill").style.width = `${meterLevel.toFixed(1)}%`;
  $("meter").setAttribute("aria-valuenow", String(Math.round(meterLevel)));
}

function addEntry(entry) {
  window.transcript.push(entry);
  render();
  return entry;
}

function send(event) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(event));
}

function log(type, extra = {}) {
  window.vitaEvents.push({ type, t: performance.now(), ...extra });
}

// ---- server events ---------------------------------------------------------------------------------------------
function onEvent(e) {
  log(e.type, { response_id: e.response_id || (e.response && e.response.id), status: e.response && e.response.status });
  switch (e.type) {
    case "session.created":
      send({ type: "session.update", session: { input_audio_format: { type: "audio/pcm", rate: INPUT_RATE } } });
      break;
    case "session.updated":
      window.vitaSession = e.session;
      break;
    case "input_audio_buffer.speech_started":
      // barge-in: the user talks over the answer -> silence it now (the server pauses its audio too)
      if (player.playing || player.active) player.stop("speech_started");
      setState("listening");
      $("talking").hidden = false;
      sendCameraFrame();
      break;
    case "input_audio_buffer.speech_stopped":
      $("talking").hidden = true;
      turnEnd = { t: performance.now(), from: "speech_stopped" };
      break;
    case "input_audio_buffer.committed": {
      if (!turnEnd) turnEnd = { t: performance.now(), from: "committed" };
      const taken = (e.vita_items || []).map(takeItem).filter(Boolean);
      const image = taken.some((x) => x.image === "picked") ? "picked" : taken.length ? "camera" : null;
      addEntry({ role: "user", id: e.item_id, text: "(spoken)" + taken.map((x) => x.label).join(""), status: "done",
        image });
      think();
      break;
    }
    case "conversation.item.deleted":
      waiting.delete(e.item_id);
      break;
    case "response.created": {
      typedPending = false;
      const entry = addEntry({ role: "assistant", id: e.response.id, text: "", status: "in_progress" });
      responses.set(e.response.id, { entry, done: false, audio: false, since: turnEnd });
      turnEnd = null;
      think();
      break;
    }
    case "response.text.delta":
    case "response.audio_transcript.delta": {
      const r = responses.get(e.response_id);
      if (!r || dropped.has(e.response_id)) break;
      r.entry.text += e.delta;
      if (e.type === "response.text.delta") setState("speaking");
      render();
      break;
    }
    case "response.audio.delta": {
      const r = responses.get(e.response_id);
      if (!r || dropped.has(e.response_id)) break;
      r.audio = true;
      player.play(int16FromB64(e.delta), e.response_id);
      setState("speaking");
      break;
    }
    case "response.done": {
      const id = e.response.id;
      const r = responses.get(id);
      const status = e.response.status;
      if (r) {
        r.done = true;
        r.entry.status = status;
        const content = (e.response.output[0] || { content: [] }).content[0] || {};
        const text = content.transcript ?? content.text;
        if (typeof text === "string" && status === "completed") r.entry.text = text;
        // cut: what was heard of it (the text deltas run ahead of the audio), else what had come
        if (status === "cancelled") r.entry.text = `${text || r.entry.text} …`;
        render();
      }
      if (status === "cancelled") {
        dropped.add(id);
        if (player.active === id || player.playing) player.stop(`cancelled:${e.response.status_details?.reason}`);
      }
      if (!player.playing) {
        if (player.active === id) player.active = null;
        setState("listening");
      }
      break;
    }
    case "error": {
      const eid = e.error.event_id;
      if (eid && quiet.get(eid) === e.error.code) {
        quiet.delete(eid); // a race lost, nothing wrong: the reply had ended, a turn had taken the item
        break;
      }
      if (picked && eid === `ev_${picked.itemId}`) { // the picked image was refused: it goes with nothing
        waiting.delete(picked.itemId);
        clearImage();
      }
      if (eid === "ev_typed") typedPending = false;
      window.vitaErrors.push(e.error);
      $("error").textContent = `${e.error.code}: ${e.error.message}`;
      break;
    }
    default:
      break;
  }
}

function think() {
  setState("thinking");
  clearTimeout(thinkingTimer);
  // a spoken utterance that is not a query gets no response: fall back to listening
  thinkingTimer = setTimeout(() => window.vitaState === "thinking" && setState("listening"), 5000);
}

// the first sample of a response is being played: its latency (end of the user's turn -> now)
function onFirstAudio(responseId, at) {
  const r = responses.get(responseId);
  if (!r || !r.since || r.entry.latencyMs != null) return;
  const ms = Math.max(0, Math.round(at - r.since.t));
  r.entry.latencyMs = ms;
  window.vitaLatencies.push({ response_id: responseId, ms, from: r.since.from });
  render();
}

function onPlaybackIdle(responseId) {
  const r = responses.get(responseId);
  if (r && r.done) {
    player.active = null;
    setState("listening");
  }
}

// ---- connect / disconnect --------------------------------------------------------------------------------------
function apiKey() {
  return $("key").value.trim() || fragment.get("api_key") || params.get("api_key") || "";
}

async function start() {
  $("start").disabled = true;
  $("error").textContent = "";
  setState("connecting");
  try {
    const camera = $("camera").checked;
    await player.ensure(); // created in the click: browsers allow audio output after a gesture
    mic = new Mic((pcm, rms) => {
      window.micLevels.push(rms);
      showLevel(rms);
      if (window.vitaReady) send({ type: "input_audio_buffer.append", audio: b64FromBytes(pcm) });
    });
    videoStream = await mic.start({ camera });
    if (camera) $("video").srcObject = videoStream;
    await connect();
    $("stop").disabled = false;
  } catch (err) {
    fail(err);
  }
}

function connect() {
  return new Promise((resolve, reject) => {
    const key = apiKey();
    const protocols = key ? ["realtime", `openai-insecure-api-key.${key}`] : ["realtime"];
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/realtime`;
    ws = new WebSocket(url, protocols);
    ws.onmessage = (msg) => {
      const e = JSON.parse(msg.data);
      onEvent(e);
      if (e.type === "session.created") {
        window.vitaReady = true;
        setState("listening");
        sendPicked(); // picked before the session started
        resolve();
      }
    };
    ws.onclose = (c) => {
      log("close", { code: c.code });
      window.vitaReady = false;
      forgetItems();
      player.stop("closed");
      if (window.vitaState === "connecting") reject(new Error(`connection refused (close ${c.code} ${c.reason})`));
      else setState("closed");
      $("start").disabled = false;
      $("stop").disabled = true;
    };
  });
}

async function stop() {
  window.vitaReady = false;
  forgetItems();
  if (ws) ws.close();
  ws = null;
  player.stop("user");
  if (mic) await mic.stop();
  mic = null;
  meterLevel = 0;
  showLevel(0);
  setState("closed");
}

function fail(err) {
  console.error(err);
  window.vitaErrors.push({ code: "client", message: String(err) });
  $("error").textContent = String(err.message || err);
  setState("error");
  $("start").disabled = false;
}

// ---- images as waiting conversation items: a picked file, or the camera frame of a spoken turn -------------------
function sendItem(id, url, label, image) {
  send({ type: "conversation.item.create", event_id: `ev_${id}`,
    item: { id, type: "message", role: "user", content: [{ type: "input_image", image_url: url }] } });
  waiting.set(id, { label, image });
}

function deleteItem(id) {
  if (!waiting.delete(id)) return;
  const eventId = `del_${id}`;
  quiet.set(eventId, "item_not_found"); // a turn took it meanwhile
  send({ type: "conversation.item.delete", event_id: eventId, item_id: id });
}

// the item `id` was taken by a turn: its transcript label (the picked image is cleared then)
function takeItem(id) {
  const item = waiting.get(id);
  waiting.delete(id);
  if (picked && picked.itemId === id) clearImage();
  if (cameraItem === id) cameraItem = null;
  return item;
}

function forgetItems() { // the session is gone, and what waited in it: a picked image is sent again to the next
  waiting.clear();
  cameraItem = null;
  typedPending = false;
  if (picked) picked.itemId = null;
}

function sendPicked() {
  if (!picked || picked.itemId || !window.vitaReady) return;
  picked.itemId = `img_${++nextId}`;
  sendItem(picked.itemId, picked.url, ` [image: ${picked.name}]`, "picked");
}

// a spoken turn starts: the current camera frame goes with it (unless an image is picked), replacing one no turn took
function sendCameraFrame() {
  if (picked || !$("attach").checked) return;
  const url = frame();
  if (!url) return;
  if (cameraItem) deleteItem(cameraItem);
  cameraItem = `cam_${++nextId}`;
  sendItem(cameraItem, url, " [camera frame]", "camera");
}

// ---- typed questions, with a picked image file or else (optionally) the current camera frame --------------------
function frame() {
  const video = $("video");
  if (!videoStream || !video.videoWidth) return null;
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  return canvas.toDataURL("image/jpeg", 0.8);
}

// Sent as the file's own bytes when the server decodes the format and the image is not large; else re-encoded as
// JPEG (at most MAX_SIDE pixels a side) by the browser, which decodes more formats than the server does.
const SENT_AS_IS = ["image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp"];
const MAX_SIDE = 2048;
const MAX_BYTES = 4 << 20;

function readDataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

async function imageUrl(file) {
  const bitmap = await createImageBitmap(file); // throws when the browser cannot decode the file
  try {
    const side = Math.max(bitmap.width, bitmap.height);
    if (SENT_AS_IS.includes(file.type) && file.size <= MAX_BYTES && side <= MAX_SIDE) return await readDataUrl(file);
    const scale = Math.min(1, MAX_SIDE / side);
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(bitmap.width * scale));
    canvas.height = Math.max(1, Math.round(bitmap.height * scale));
    canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    return canvas.toDataURL("image/jpeg", 0.9);
  } finally {
    bitmap.close();
  }
}

async function pickImage() {
  const file = $("image").files[0];
  if (!file) return removeImage();
  try {
    const url = await imageUrl(file);
    removeImage(); // a replaced picture waits no more
    picked = { url, name: file.name, itemId: null };
    $("thumb").src = picked.url;
    $("preview").hidden = false;
    $("error").textContent = "";
    sendPicked();
  } catch (err) {
    removeImage();
    $("error").textContent = `${file.name}: not an image this browser can read`;
  }
}

function clearImage() {
  picked = null;
  $("image").value = "";
  $("thumb").removeAttribute("src");
  $("preview").hidden = true;
}

function removeImage() { // the user takes the picture back: it goes with no turn
  if (picked && picked.itemId) deleteItem(picked.itemId);
  clearImage();
}

// A reply is in progress (or a typed question's is about to start): a question typed now interrupts it.
function interrupt() {
  const live = [...responses.entries()].filter(([, r]) => !r.done);
  if (!live.length && !typedPending && !player.playing) return;
  player.stop("typed");
  for (const [id] of live) dropped.add(id); // its deltas in flight are not played or shown
  const eventId = `cancel_${++nextId}`;
  quiet.set(eventId, "response_cancel_not_active"); // it had just ended
  send({ type: "response.cancel", event_id: eventId });
}

// the picked image (then cleared) goes with the question, else the camera frame when `withFrame`
window.vitaSendText = (text, withFrame = false) => {
  interrupt();
  if (cameraItem) deleteItem(cameraItem); // a spoken turn's frame that no turn took: not this question's
  const content = [{ type: "input_text", text }];
  const source = picked ? "picked" : withFrame ? "camera" : null;
  const sent = picked && picked.itemId && waiting.has(picked.itemId); // waiting on the server already
  const image = picked ? picked.url : withFrame ? frame() : null;
  if (image && !sent) content.push({ type: "input_image", image_url: image });
  send({ type: "conversation.item.create", item: { type: "message", role: "user", content } });
  send({ type: "response.create", event_id: "ev_typed" });
  typedPending = true;
  turnEnd = { t: performance.now(), from: "typed" };
  const label = !image ? "" : source === "picked" ? ` [image: ${picked.name}]` : " [camera frame]";
  addEntry({ role: "user", id: null, text: text + label, status: "done", image: image ? source : null });
  if (sent) waiting.delete(picked.itemId);
  if (picked) clearImage();
  think();
  return Boolean(image);
};

$("start").onclick = start;
$("stop").onclick = stop;
$("image").onchange = pickImage;
$("clear-image").onclick = removeImage;
$("ask").onsubmit = (ev) => {
  ev.preventDefault();
  const text = $("text").value.trim() || "What do you see?";
  window.vitaSendText(text, $("attach").checked);
  $("text").value = "";
};
if (fragment.get("api_key") || params.get("api_key")) $("key").value = fragment.get("api_key") || params.get("api_key");
if (params.get("camera") === "1") $("camera").checked = true;
if (params.get("autostart") === "1") start();
