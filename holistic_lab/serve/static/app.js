// The page of `holistic-lab serve`: send an image to POST /predict (or video frames over
// /ws/video) and draw the 543 points it gets back, with the colours and edges of
// holistic_lab.viz, read from GET /api/v1/topology so the page and the notebooks draw alike.
// Tests read `window.lastResult` and wait for `document.body.dataset.state === "drawn"`.
"use strict";

const PARTS = ["pose", "face", "left_hand", "right_hand"];
const PART_TITLES = {pose: "body", face: "face", left_hand: "left hand", right_hand: "right hand"};
const VIDEO_MAX_SIDE = 640;  // frames are downscaled before they are sent: tracking needs no more
const JPEG_QUALITY = 0.8;

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const context = canvas.getContext("2d");
let topology = null;
let shown = {source: null, result: null};  // what is on the canvas, redrawn when a toggle changes
let stream = null;  // the running video: {socket, stop()}

function setState(state, message, isError = false) {
  document.body.dataset.state = state;
  if (message !== undefined) {
    $("status").textContent = message;
    $("status").classList.toggle("error", isError);
  }
}

function rgb(group) {
  const [r, g, b] = topology.colors[group];
  return `rgb(${r}, ${g}, ${b})`;
}

function toggled() {
  const boxes = Object.fromEntries([...document.querySelectorAll("#toggles input")].map((b) => [b.name, b.checked]));
  return {parts: PARTS.filter((p) => boxes[p]), mesh: boxes.mesh};
}

// --- drawing -------------------------------------------------------------------------------
function drawSkeleton(result, scale) {
  const {parts, mesh} = toggled();
  const px = result.pixels;
  const lineWidth = Math.max(1.5, Math.max(canvas.width, canvas.height) / 400);
  context.lineCap = "round";
  for (const part of parts) {
    if (!result.present[part]) continue;
    const edgeSet = part === "face" ? (mesh ? "face_mesh" : "face_contours") : part;
    const byGroup = {};
    for (const [a, b, group] of topology.edges[edgeSet]) {
      if (px[a] && px[b]) (byGroup[group] ||= []).push([px[a], px[b]]);
    }
    for (const [group, segments] of Object.entries(byGroup)) {
      context.strokeStyle = rgb(group);
      context.lineWidth = part === "face" && mesh ? lineWidth * 0.4 : lineWidth;
      context.beginPath();
      for (const [p, q] of segments) {
        context.moveTo(p[0] * scale, p[1] * scale);
        context.lineTo(q[0] * scale, q[1] * scale);
      }
      context.stroke();
    }
    if (part === "face") continue;  // the face reads better as lines alone (as in viz.draw)
    const [start, stop] = topology.parts[part];
    for (let i = start; i < stop; i++) {
      if (!px[i]) continue;
      context.fillStyle = rgb(topology.point_groups[i]);
      context.beginPath();
      context.arc(px[i][0] * scale, px[i][1] * scale, lineWidth * 1.6, 0, 2 * Math.PI);
      context.fill();
    }
  }
}

function draw(source, result) {
  const width = result.width, height = result.height;
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  context.drawImage(source, 0, 0, width, height);
  drawSkeleton(result, 1);
  shown = {source, result};
}

// --- the tables beside the picture ---------------------------------------------------------
function fillTable(id, rows) {
  const body = $(id).tBodies[0];
  body.replaceChildren(...rows.map(([cells, className]) => {
    const row = document.createElement("tr");
    if (className) row.className = className;
    for (const cell of cells) {
      const td = document.createElement("td");
      if (typeof cell === "number") {
        td.className = "number";
        td.textContent = cell.toFixed(1);
      } else if (cell instanceof Node) {
        td.append(cell);
      } else {
        td.textContent = cell;
      }
      row.append(td);
    }
    return row;
  }));
}

function mark(yes) {
  const span = document.createElement("span");
  span.className = yes ? "yes" : "no";
  span.textContent = yes ? "found" : "not found";
  return span;
}

function showDetails(result, extraTimings) {
  fillTable("presence", PARTS.map((p) => [[PART_TITLES[p], mark(result.present[p])]]));
  const gestures = result.gestures;
  fillTable("gestures", gestures === null
    ? [[["(no gesture head in this variant)"]]]
    : ["left_hand", "right_hand"].map((hand) => {
      const g = gestures[hand];
      return [[PART_TITLES[hand], g ? `${g.label} (${(100 * g.score).toFixed(0)}%)` : "-"]];
    }));
  const timings = Object.entries(result.timings_ms).map(([name, ms]) => [[name, ms], name === "total" ? "total" : ""]);
  for (const [name, ms] of Object.entries(extraTimings)) timings.push([[name, ms], ""]);
  fillTable("timings", timings);
  $("meta").textContent = `variant ${result.variant}, ${result.width}x${result.height}` +
    (result.image_sha256 ? `, sha256 ${result.image_sha256.slice(0, 12)}...` : "");
}

function showResult(source, result, extraTimings) {
  draw(source, result);
  showDetails(result, extraTimings);
  window.lastResult = result;
  setState("drawn");
}

// --- one image: POST /predict -------------------------------------------------------------
async function errorText(response) {
  try {
    const body = await response.json();
    return `${body.error} (${body.code}, HTTP ${response.status})`;
  } catch {
    return `HTTP ${response.status} ${response.statusText}`;
  }
}

async function predict(blob, name) {
  stopVideo();
  setState("loading", `Tracking ${name}...`);
  const picture = new Image();
  const url = URL.createObjectURL(blob);
  try {
    const form = new FormData();
    form.append("image", blob, name);
    const start = performance.now();
    const response = await fetch("/predict", {method: "POST", body: form});
    const roundTripMs = performance.now() - start;
    if (!response.ok) {
      setState("error", await errorText(response), true);
      return;
    }
    const result = await response.json();
    picture.src = url;
    await picture.decode();
    showResult(picture, result, {"round trip (browser)": roundTripMs});
    const found = PARTS.filter((p) => result.present[p]).map((p) => PART_TITLES[p]);
    setState("drawn", `${name}: ${found.length ? found.join(", ") : "nothing"} found.`);
  } catch (error) {
    setState("error", `${name}: ${error.message}`, true);
  } finally {
    URL.revokeObjectURL(url);
  }
}

async function pickSample(name) {
  if (!name) return;
  const response = await fetch(`/samples/${encodeURIComponent(name)}`);
  if (!response.ok) {
    setState("error", await errorText(response), true);
    return;
  }
  await predict(await response.blob(), name);
}

// --- video: frames over /ws/video -----------------------------------------------------------
function grabFrame(video) {
  const scale = Math.min(1, VIDEO_MAX_SIDE / Math.max(video.videoWidth, video.videoHeight));
  const frame = document.createElement("canvas");
  frame.width = Math.round(video.videoWidth * scale);
  frame.height = Math.round(video.videoHeight * scale);
  frame.getContext("2d").drawImage(video, 0, 0, frame.width, frame.height);
  return frame;
}

function startVideo(video, label) {
  stopVideo();
  const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/video`);
  socket.binaryType = "arraybuffer";
  let sent = null;  // the frame on its way: one at a time, so the skeleton never lags the picture
  let running = true;
  const replies = [];
  const loop = () => {
    if (!running) return;
    if (socket.readyState === WebSocket.OPEN && !sent && video.readyState >= 2 && video.videoWidth) {
      sent = grabFrame(video);
      sent.toBlob((blob) => socket.send(blob), "image/jpeg", JPEG_QUALITY);
    }
    if (video.ended) stopVideo(`${label}: ended.`);
    else requestAnimationFrame(loop);
  };
  socket.onopen = () => {
    setState("streaming", `${label}: tracking...`);
    requestAnimationFrame(loop);
  };
  socket.onmessage = (event) => {
    const reply = JSON.parse(event.data);
    const frame = sent;
    sent = null;
    if (reply.error) {
      setState("error", `${reply.error} (${reply.code})`, true);
      return;
    }
    const now = performance.now();
    replies.push(now);
    while (replies.length && now - replies[0] > 2000) replies.shift();
    const fps = replies.length > 1 ? (replies.length - 1) / ((now - replies[0]) / 1000) : 0;
    $("fps").textContent = `${fps.toFixed(1)} fps`;
    if (frame) showResult(frame, reply, {"server (decode + track)": reply.server_ms});
  };
  socket.onclose = (event) => {
    if (running && event.code !== 1000) stopVideo(`${label}: the connection closed (${event.code} ${event.reason})`);
  };
  stream = {
    socket,
    stop() {
      running = false;
      socket.close(1000);
      video.pause();
      if (video.srcObject) video.srcObject.getTracks().forEach((t) => t.stop());
      video.srcObject = null;
      if (video.src) URL.revokeObjectURL(video.src);
      video.removeAttribute("src");
    },
  };
  $("stop").disabled = false;
}

function stopVideo(message) {
  if (!stream) return;
  stream.stop();
  stream = null;
  $("stop").disabled = true;
  $("fps").textContent = "";
  if (message) setState(document.body.dataset.state, message);
}

async function playClip(file) {
  const video = $("video");
  stopVideo();
  video.srcObject = null;
  video.src = URL.createObjectURL(file);
  video.loop = false;
  try {
    await video.play();
  } catch (error) {
    setState("error", `${file.name}: the browser cannot play it (${error.message})`, true);
    return;
  }
  startVideo(video, file.name);
}

async function useWebcam() {
  const video = $("video");
  stopVideo();
  try {
    video.srcObject = await navigator.mediaDevices.getUserMedia({video: true, audio: false});
    await video.play();
  } catch (error) {
    setState("error", `webcam: ${error.message}`, true);
    return;
  }
  startVideo(video, "webcam");
}

// --- wiring ---------------------------------------------------------------------------------
function fillLegend() {
  $("legend").replaceChildren(...Object.entries(topology.labels).map(([group, label]) => {
    const item = document.createElement("li");
    const dot = document.createElement("span");
    dot.style.background = rgb(group);
    item.append(dot, label);
    return item;
  }));
}

async function fillSamples() {
  const response = await fetch("/api/v1/samples");
  for (const sample of await response.json()) {
    $("sample").append(new Option(sample.name, sample.name));
  }
}

function wire() {
  $("file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) predict(file, file.name);
    event.target.value = "";
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) predict(file, file.name);
  });
  $("sample").addEventListener("change", (event) => pickSample(event.target.value));
  $("clip").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) playClip(file);
    event.target.value = "";
  });
  $("webcam").addEventListener("click", useWebcam);
  $("stop").addEventListener("click", () => stopVideo("Stopped."));
  $("toggles").addEventListener("change", () => {
    if (shown.result) {
      draw(shown.source, shown.result);
      setState("drawn");
    }
  });
}

async function main() {
  wire();
  try {
    topology = await (await fetch("/api/v1/topology")).json();
    fillLegend();
    await fillSamples();
    setState("ready");
  } catch (error) {
    setState("error", `the server did not answer: ${error.message}`, true);
  }
}

main();
