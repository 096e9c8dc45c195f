// The inkvoice page: record or upload speech, verify and enrol signatures. No build step, no library.

const MAX_RECORD_SECONDS = 8;   // the server refuses clips over 10 s
const WAV_RATE = 16000;         // recordings are sent as 16-bit mono WAV at this rate
const HISTORY_LENGTH = 12;
const HEALTH_SECONDS = 5;       // how often the header asks the server how it is

const $ = (selector) => document.querySelector(selector);

// --- talking to the API -------------------------------------------------------------------

async function api(path, options = {}) {
  const response = await reach(path, options);
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    body = null;
  }
  if (!response.ok) {
    const message = body && body.error ? body.error : `the server answered ${response.status}`;
    const failure = new Error(message);
    failure.status = response.status;
    throw failure;
  }
  return body;
}

async function reach(path, options) {
  try {
    return await fetch(path, options);
  } catch (error) {
    throw new Error("the server cannot be reached: is it still running?");
  }
}

// The token typed in the page, as the header that opens the writer list and the references.
function authorisation() {
  const token = $("#token").value.trim();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// A reference picture, fetched with the token (an <img> cannot send one), as a URL for an <img>.
async function picture(path) {
  const response = await reach(path, { headers: authorisation() });
  if (!response.ok) throw new Error(`the picture could not be loaded (${response.status})`);
  return URL.createObjectURL(await response.blob());
}

function upload(path, file, name, extra = {}) {
  const form = new FormData();
  form.append("file", file, name);
  return api(path, { method: "POST", body: form, ...extra });
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function showError(target, message) {
  target.replaceChildren(element("div", { class: "error", role: "alert", text: message }));
}

function showBusy(target, message) {
  target.replaceChildren(element("p", { class: "busy", text: message }));
}

const percent = (value) => `${(100 * value).toFixed(1)} %`;
const clock = () => new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });

// --- WAV encoding: what the browser records (webm/opus) becomes 16-bit PCM the server reads ---

async function toWav(blob) {
  const encoded = await blob.arrayBuffer();
  const context = new AudioContext();
  let decoded;
  try {
    decoded = await context.decodeAudioData(encoded);
  } finally {
    context.close();
  }
  const length = Math.max(1, Math.ceil(decoded.duration * WAV_RATE));
  const offline = new OfflineAudioContext(1, length, WAV_RATE);  // mixes down to mono and resamples
  const source = offline.createBufferSource();
  source.buffer = decoded;
  source.connect(offline.destination);
  source.start();
  const rendered = await offline.startRendering();
  return encodeWav(rendered.getChannelData(0), WAV_RATE);
}

function encodeWav(samples, rate) {
  const buffer = new ArrayBuffer(44 + 2 * samples.length);
  const view = new DataView(buffer);
  const text = (offset, value) => { for (let i = 0; i < value.length; i++) view.setUint8(offset + i, value.charCodeAt(i)); };
  text(0, "RIFF");
  view.setUint32(4, 36 + 2 * samples.length, true);
  text(8, "WAVE");
  text(12, "fmt ");
  view.setUint32(16, 16, true);          // size of the fmt chunk
  view.setUint16(20, 1, true);           // PCM
  view.setUint16(22, 1, true);           // mono
  view.setUint32(24, rate, true);
  view.setUint32(28, 2 * rate, true);    // bytes per second
  view.setUint16(32, 2, true);           // bytes per frame
  view.setUint16(34, 16, true);          // bits per sample
  text(36, "data");
  view.setUint32(40, 2 * samples.length, true);
  for (let i = 0; i < samples.length; i++) {
    const clipped = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(44 + 2 * i, clipped < 0 ? clipped * 0x8000 : clipped * 0x7fff, true);
  }
  return new Blob([buffer], { type: "audio/wav" });
}

// --- spoken digits ------------------------------------------------------------------------

const speech = {
  recorder: null,
  stream: null,
  cancelled: false,
  started: 0,
  timer: null,
  audioContext: null,
};

function speechMode() {
  return document.querySelector("input[name=speech-mode]:checked").value;
}

async function startRecording() {
  const result = $("#speech-result");
  if (!window.MediaRecorder || !navigator.mediaDevices) {
    showError(result, "this browser cannot record: choose an audio file instead");
    return;
  }
  try {
    speech.stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
  } catch (error) {
    showError(result, `the microphone is not available (${error.name}): allow it for this page, or choose an audio file`);
    return;
  }
  const chunks = [];
  speech.cancelled = false;
  speech.recorder = new MediaRecorder(speech.stream);
  speech.recorder.ondataavailable = (event) => { if (event.data.size) chunks.push(event.data); };
  speech.recorder.onstop = async () => {
    releaseMicrophone();
    if (speech.cancelled) {
      result.replaceChildren();
      return;
    }
    showBusy(result, "listening to the recording…");
    try {
      const wav = await toWav(new Blob(chunks, { type: speech.recorder.mimeType }));
      await sendSpeech(wav, "recording.wav", "recording");
    } catch (error) {
      showError(result, `the recording could not be read: ${error.message}`);
    }
  };
  speech.recorder.start();
  speech.started = performance.now();
  showLevel(speech.stream);
  const button = $("#record");
  button.classList.add("recording");
  button.querySelector(".label").textContent = "Stop";
  button.setAttribute("aria-pressed", "true");
  result.replaceChildren(element("p", { class: "busy", text: "recording… press R again when done, Esc to cancel" }));
}

function showLevel(stream) {
  const meter = $("#meter");
  meter.hidden = false;
  speech.audioContext = new AudioContext();
  const analyser = speech.audioContext.createAnalyser();
  analyser.fftSize = 1024;
  speech.audioContext.createMediaStreamSource(stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const draw = () => {
    if (!speech.recorder || speech.recorder.state !== "recording") return;
    analyser.getFloatTimeDomainData(samples);
    let peak = 0;
    for (const value of samples) peak = Math.max(peak, Math.abs(value));
    const seconds = (performance.now() - speech.started) / 1000;
    meter.querySelector(".level").style.width = `${Math.min(100, 100 * Math.sqrt(peak))}%`;
    meter.querySelector(".time").textContent = `${seconds.toFixed(1)} s`;
    if (seconds >= MAX_RECORD_SECONDS) stopRecording(false);
    else speech.timer = requestAnimationFrame(draw);
  };
  draw();
}

function stopRecording(cancel) {
  if (!speech.recorder || speech.recorder.state !== "recording") return;
  speech.cancelled = cancel;
  speech.recorder.stop();
  const button = $("#record");
  button.classList.remove("recording");
  button.querySelector(".label").textContent = "Record";
  button.setAttribute("aria-pressed", "false");
  $("#meter").hidden = true;
}

function releaseMicrophone() {
  if (speech.stream) speech.stream.getTracks().forEach((track) => track.stop());
  if (speech.audioContext) speech.audioContext.close();
  cancelAnimationFrame(speech.timer);
  speech.stream = null;
  speech.audioContext = null;
}

function toggleRecording() {
  if (speech.recorder && speech.recorder.state === "recording") stopRecording(false);
  else startRecording();
}

async function sendSpeech(file, name, source) {
  const result = $("#speech-result");
  const mode = speechMode();
  showBusy(result, mode === "transcribe" ? "reading the digits…" : "listening…");
  const started = performance.now();
  try {
    const answer = await upload(`/api/speech/${mode}`, file, name);
    const elapsed = performance.now() - started;
    if (mode === "transcribe") renderDigits(answer, elapsed, source);
    else renderPrediction(answer, elapsed, source);
  } catch (error) {
    showError(result, error.message);
  }
}

function renderPrediction(answer, elapsed, source) {
  const unknown = answer.label === "unknown";
  const guess = unknown && answer.top.length ? answer.top[0] : null;
  const unsure = unknown || answer.confidence < 0.6;
  const gauge = element("div", { class: "bar-gauge" }, element("div"));
  gauge.firstChild.style.width = percent(answer.confidence).replace(" ", "");
  const top = element("div", { class: "top" });
  for (const entry of answer.top.slice(1)) {
    top.append(element("span", {}, element("b", { text: entry.label }), ` ${percent(entry.probability)}`));
  }
  const facts = element("div", { class: "facts" });
  if (unknown) {
    facts.append(element("div", { class: "confidence", "data-testid": "guess",
      text: guess ? `Not sure it is a digit. Best guess: ${guess.label} (${percent(guess.probability)})`
        : "No digit heard" }));
    if (answer.reason) facts.append(element("div", { class: "detail", text: `Why: ${answer.reason}` }));
  } else {
    facts.append(element("div", { class: "confidence",
      text: `${percent(answer.confidence)} confident${unsure ? " — check it" : ""}` }));
  }
  if (!unknown || guess) facts.append(gauge);
  if (answer.top.length > 1) facts.append(element("div", { class: "detail" }, "next most likely: ", top));
  facts.append(element("div", { class: "detail", text: `${source === "recording" ? "recording" : answer.file} · answered in ${Math.round(elapsed)} ms` }));
  const value = unknown
    ? element("div", { class: "value guess", id: "speech-label", title: "unknown: the digit shown is a guess" },
      guess ? guess.label : "?", element("span", { class: "guess-mark", text: "?" }))
    : element("div", { class: "value", id: "speech-label", text: answer.label });
  const card = element("div", { class: `answer${unsure ? " unsure" : ""}`, "data-testid": "speech-answer" }, value, facts);
  $("#speech-result").replaceChildren(card);
  remember(unknown ? `${guess ? guess.label : ""}?` : answer.label, answer.confidence,
    source === "recording" ? "recording" : answer.file);
}

const ORDINALS = ["1st", "2nd", "3rd"];
const ordinal = (n) => ORDINALS[n - 1] || `${n}th`;

function renderDigits(answer, elapsed, source) {
  const found = answer.segments || [];
  const unread = found.map((segment, index) => segment.label === "unknown" ? index + 1 : 0).filter(Boolean);
  // Each stretch of speech in its place: a digit, or "?" where one could not be read.
  const value = element("div", { class: "value long", id: "speech-label" });
  if (!found.length) value.textContent = "—";
  for (const segment of found) {
    value.append(segment.label === "unknown" ? element("span", { class: "unread", text: "?" }) : segment.label);
  }
  const segments = element("div", { class: "segments" });
  for (const segment of found) {
    const label = segment.label === "unknown" ? "not read" : segment.label;
    segments.append(element("span", { class: segment.label === "unknown" ? "unread" : "",
      text: `${label} ${percent(segment.confidence)} · ${segment.start.toFixed(2)}–${segment.end.toFixed(2)} s`,
    }));
  }
  const facts = element("div", { class: "facts" });
  if (unread.length) {
    const which = unread.map(ordinal).join(", ");
    facts.append(element("div", { class: "confidence warning", "data-testid": "incomplete",
      text: `Incomplete: ${found.length} digits heard, the ${which} could not be read (shown as ?). ` +
        "Say the number again, or check it." }));
  } else {
    facts.append(element("div", { class: "confidence", text: `${found.length} digit${found.length === 1 ? "" : "s"}` }));
  }
  facts.append(element("div", { class: "detail",
    text: `${source === "recording" ? "recording" : answer.file} · answered in ${Math.round(elapsed)} ms` }));
  const card = element("div", { class: `answer${unread.length ? " unsure" : ""}`, "data-testid": "speech-answer" },
    value, facts, segments);
  $("#speech-result").replaceChildren(card);
  remember(value.textContent, null, source === "recording" ? "recording" : answer.file);
}

function remember(what, confidence, source) {
  addHistory($("#speech-history"),
    element("span", { class: "when", text: clock() }),
    element("span", { class: "what", text: what }),
    element("span", { class: "when", text: confidence === null ? "" : percent(confidence) }),
    element("span", { class: "source", text: source }));
}

function addHistory(list, ...cells) {
  list.prepend(element("li", {}, ...cells));
  while (list.children.length > HISTORY_LENGTH) list.lastChild.remove();
}

// --- signatures ---------------------------------------------------------------------------

let writers = [];

async function loadWriters() {
  writers = null;
  const list = $("#writer-list");
  if (!$("#token").value.trim()) {
    list.replaceChildren();
    describeWriter();
    return;
  }
  try {
    writers = await api("/api/signature/writers", { headers: authorisation() });
  } catch (error) {
    list.replaceChildren();
    $("#writer-info").textContent = `no list of writers: ${error.message}`;
    return;
  }
  list.replaceChildren(...writers.map((entry) =>
    element("option", { value: entry.writer, label: `${entry.references} references` })));
  describeWriter();
}

function describeWriter() {
  const name = $("#writer").value.trim();
  const info = $("#writer-info");
  if (writers === null) {  // the list is private: without the token, the name is typed
    info.textContent = name ? "" : "type the name (the token shows the list)";
    return;
  }
  const entry = writers.find((candidate) => candidate.writer === name);
  if (!name) info.textContent = writers.length ? `${writers.length} writer(s) enrolled` : "no writer enrolled yet";
  else if (entry) info.textContent = `${entry.references} references`;
  else info.textContent = "not enrolled";
}

async function verifySignature(file) {
  const result = $("#signature-result");
  const writer = $("#writer").value.trim();
  if (!writer) {
    showError(result, "pick the writer the signature claims to be from first");
    $("#writer").focus();
    return;
  }
  const explain = $("#explain").checked;
  showBusy(result, `checking against ${writer}'s references…`);
  const base = `/api/signature/writers/${encodeURIComponent(writer)}`;
  try {
    // The references are fetched alongside the verdict; the verdict does not wait for them to fail.
    const listing = $("#token").value.trim()
      ? api(`${base}/references`, { headers: authorisation() }).catch((error) => ({ error: error.message }))
      : Promise.resolve({ error: "enter the token to see them" });
    const [answer, references] = await Promise.all([
      upload(`${base}/verify${explain ? "?explain=1" : ""}`, file, file.name || "signature.png"), listing]);
    renderVerdict(answer, file, references);
  } catch (error) {
    showError(result, error.message);
  }
}

// The claimed writer's references: their pictures, or why there are none to show.
function referenceFigure(writer, listing) {
  const figure = element("figure", { class: "reference-set", "data-testid": "references" },
    element("figcaption", { text: `${writer}'s references` }));
  if (listing.error) {
    figure.append(element("p", { class: "hint", text: `the references cannot be shown: ${listing.error}` }));
    return figure;
  }
  const kept = listing.references.filter((reference) => reference.thumbnail);
  if (!kept.length) {
    figure.append(element("p", { class: "hint", "data-testid": "no-pictures",
      text: `No pictures are kept of ${writer}'s ${listing.references.length} references: they were enrolled before ` +
        "the store kept pictures. Enrol them again to see them here." }));
    return figure;
  }
  const grid = element("div", { class: "references" });
  for (const reference of listing.references) {
    const label = `reference ${reference.number}: ${reference.source}`;
    if (reference.thumbnail) {
      const image = element("img", { alt: label, title: label });
      picture(reference.thumbnail).then((url) => { image.src = url; })
        .catch((error) => image.replaceWith(element("span", { class: "missing", title: label, text: error.message })));
      grid.append(image);
    } else {
      grid.append(element("span", { class: "missing", title: label, text: "no picture" }));
    }
  }
  figure.append(grid);
  if (kept.length < listing.references.length) {
    figure.append(element("p", { class: "hint", text: "references enrolled before pictures were kept have none" }));
  }
  return figure;
}

function renderVerdict(answer, file, references) {
  const span = Math.max(4, Math.abs(answer.score - answer.threshold) * 1.3);
  const position = (value) => `${Math.max(0, Math.min(100, 50 + 50 * (value - answer.threshold) / span))}%`;
  const scale = element("div", { class: "scale", "aria-hidden": "true" },
    element("div", { class: "mark" }), element("div", { class: "point" }));
  scale.querySelector(".mark").style.left = "50%";
  scale.querySelector(".point").style.left = position(answer.score);
  const card = element("div", { class: `verdict ${answer.verdict}`, "data-testid": "verdict" },
    element("div", { class: "word", id: "verdict-word", text: answer.verdict }),
    element("div", { class: "detail" },
      element("span", { class: "score", "data-testid": "score",
        text: `score ${answer.score.toFixed(2)} (threshold ${answer.threshold.toFixed(2)})` }),
      " ", element("span", { class: "who", text: `${answer.writer}, ${answer.references} references` })),
    scale,
    element("div", { class: "scale-labels" }, element("span", { text: "forged" }), element("span", { text: "threshold" }),
      element("span", { text: "genuine" })),
  );
  const query = element("figure", {}, element("figcaption", { text: `checked: ${answer.file}` }),
    element("img", { src: URL.createObjectURL(file), alt: "the signature checked" }));
  const compare = element("div", { class: "compare" }, query, referenceFigure(answer.writer, references));
  const parts = [card, compare];
  if (answer.explanation) {
    const explanation = element("div", { class: "explanation", "data-testid": "explanation" });
    if (answer.explanation.image) {
      // At its own size in a box of its own, so that its labels stay readable on any screen.
      const image = element("img", { src: answer.explanation.image,
        alt: "the signature checked beside its nearest reference, the regions that depart most boxed on both" });
      explanation.append(
        element("p", { class: "summary", text: "Boxes: the regions that depart most from the references " +
          "(1 = most), on the signature checked and on its nearest reference." }),
        element("div", { class: "picture", tabindex: "0", role: "group",
          "aria-label": "explanation picture (scrolls sideways)" }, image));
    }
    if (answer.explanation.groups && answer.explanation.groups.length) {
      const list = element("ul");
      for (const group of answer.explanation.groups) {
        const effect = Number(group.effect);
        list.append(element("li", { text: `${group.description}${Number.isFinite(effect) ? ` (${effect > 0 ? "+" : ""}${effect.toFixed(2)})` : ""}` }));
      }
      explanation.append(element("p", { class: "detail", text: "what pulled the score towards forged:" }), list);
    }
    parts.push(explanation);
  }
  $("#signature-result").replaceChildren(...parts);
  addHistory($("#signature-history"),
    element("span", { class: "when", text: clock() }),
    element("span", { class: `what ${answer.verdict}`, text: answer.verdict }),
    element("span", { class: "when", text: answer.score.toFixed(2) }),
    element("span", { class: "source", text: `${answer.writer} · ${answer.file}` }));
}

async function enrol(event) {
  event.preventDefault();
  const message = $("#enrol-result");
  const writer = $("#enrol-writer").value.trim();
  const files = $("#enrol-files").files;
  const form = new FormData();
  for (const file of files) form.append("files", file, file.name);
  message.className = "message";
  message.textContent = `enrolling ${files.length} image(s)…`;
  try {
    const answer = await api(`/api/signature/writers/${encodeURIComponent(writer)}/references`, {
      method: "POST", body: form, headers: authorisation(),
    });
    message.className = "message ok";
    message.textContent = `${answer.writer}: ${answer.added} reference(s) added, ${answer.references} in total`;
    $("#enrol-files").value = "";
    await loadWriters();
    $("#writer").value = answer.writer;
    describeWriter();
  } catch (error) {
    message.className = "message bad";
    message.textContent = error.message;
  }
}

async function removeWriter() {
  const message = $("#enrol-result");
  const writer = $("#enrol-writer").value.trim() || $("#writer").value.trim();
  if (!writer) {
    message.className = "message bad";
    message.textContent = "type the writer to remove";
    return;
  }
  if (!confirm(`Remove ${writer} and all their references?`)) return;
  try {
    const answer = await api(`/api/signature/writers/${encodeURIComponent(writer)}`, {
      method: "DELETE", headers: authorisation(),
    });
    message.className = "message ok";
    message.textContent = `${answer.writer} removed (${answer.removed} references)`;
    await loadWriters();
  } catch (error) {
    message.className = "message bad";
    message.textContent = error.message;
  }
}

// --- drop zones, paste, keyboard ----------------------------------------------------------

function dropZone(zone, accept, handle) {
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const file = [...event.dataTransfer.files].find((candidate) => accept(candidate));
    if (file) handle(file);
  });
}

function typing(target) {
  return target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName)
    && !["radio", "checkbox", "button", "file"].includes(target.type);
}

function shortcuts(event) {
  if (event.key === "Escape") {
    stopRecording(true);
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
  const actions = {
    r: () => $("#speech .work").hidden || toggleRecording(),
    a: () => $("#audio-file").click(),
    t: () => {
      const other = speechMode() === "predict" ? "transcribe" : "predict";
      document.querySelector(`input[name=speech-mode][value=${other}]`).checked = true;
    },
    w: () => $("#writer").focus(),
    s: () => $("#signature-file").click(),
    e: () => { $("#enrol").open = true; $("#enrol-writer").focus(); },
    "?": () => toggleHelp(),
  };
  const action = actions[event.key.toLowerCase()];
  if (action) {
    event.preventDefault();
    action();
  }
}

function toggleHelp() {
  const help = $("#help");
  help.hidden = !help.hidden;
  $("#help-button").setAttribute("aria-expanded", String(!help.hidden));
}

// The header follows the server: its models when ready, "starting" while they load, and
// plainly "not reachable" (with no models listed) when it has gone away.
let serverState = null;

async function watchServer() {
  let health = null;
  let state = "gone";
  try {
    const response = await fetch("/healthz", { cache: "no-store" });
    health = await response.json();
    state = health && health.status === "ready" && response.ok ? "ready" : "starting";
  } catch (error) {
    state = "gone";
  }
  const status = $("#status");
  status.classList.toggle("down", state === "gone");
  status.classList.toggle("starting", state === "starting");
  status.classList.toggle("ready", state === "ready");
  if (state === "gone") {
    status.textContent = "Server not reachable: answers will fail until it is back.";
  } else if (state === "starting") {
    status.textContent = "Server starting: the models are loading…";
  } else {
    const names = Object.entries(health.models).map(([pipeline, model]) => `${pipeline}: ${model.name}`);
    status.textContent = `${names.join(" · ")} · inkvoice ${health.version}`;
  }
  if (health && state !== serverState) showModels(health);
  serverState = state;
  setTimeout(watchServer, HEALTH_SECONDS * 1000);
}

function showModels(health) {
  for (const pipeline of ["speech", "signature"]) {
    const available = pipeline in health.models;
    document.querySelector(`#${pipeline} .work`).hidden = !available;
    document.querySelector(`#${pipeline} .unavailable`).hidden = available;
  }
  const enrolment = health.enrolment !== false;
  $("#enrol-fields").disabled = !enrolment;
  $("#enrol-off").hidden = enrolment;
  if ("signature" in health.models) loadWriters();
}

$("#record").addEventListener("click", toggleRecording);
$("#audio-file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) sendSpeech(file, file.name, "file");
  event.target.value = "";
});
$("#audio-button").addEventListener("click", () => $("#audio-file").click());
dropZone($("#speech-drop"), (file) => file.type.startsWith("audio/") || /\.(wav|flac|ogg)$/i.test(file.name),
  (file) => sendSpeech(file, file.name, "file"));
$("#speech-drop").addEventListener("click", () => $("#audio-file").click());

const signatureDrop = $("#signature-drop");
dropZone(signatureDrop, (file) => file.type.startsWith("image/") || /\.(png|jpe?g|tiff?|bmp|gif)$/i.test(file.name),
  verifySignature);
signatureDrop.addEventListener("click", () => $("#signature-file").click());
signatureDrop.addEventListener("keydown", (event) => {
  if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    $("#signature-file").click();
  }
});
$("#signature-file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) verifySignature(file);
  event.target.value = "";
});
document.addEventListener("paste", (event) => {
  const item = [...(event.clipboardData ? event.clipboardData.items : [])].find((entry) => entry.type.startsWith("image/"));
  if (item) {
    event.preventDefault();
    verifySignature(item.getAsFile());
  }
});
$("#writer").addEventListener("input", describeWriter);
$("#writer").addEventListener("keydown", (event) => {
  if (event.key === "Enter") {  // writer typed: straight on to choosing the signature
    event.preventDefault();
    $("#signature-file").click();
  }
});
$("#enrol-form").addEventListener("submit", enrol);
$("#remove").addEventListener("click", removeWriter);
$("#token").value = sessionStorage.getItem("inkvoice-token") || "";
$("#token").addEventListener("change", () => {
  sessionStorage.setItem("inkvoice-token", $("#token").value.trim());
  loadWriters();
});
$("#help-button").addEventListener("click", toggleHelp);
document.addEventListener("keydown", shortcuts);
watchServer();
