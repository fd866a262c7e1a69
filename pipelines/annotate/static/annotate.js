// The annotation page: keyboard-first answers, posted as JSON to /api/*; a stored answer loads the next clip.
(function () {
  "use strict";
  const held = JSON.parse(document.getElementById("assignment").textContent);
  const video = document.getElementById("clip");
  const status = document.getElementById("status");
  const editor = document.getElementById("corrected");
  const shownAt = performance.now();
  const FPS = held.fps || 25;  // the clip's own frame rate (index: num_frames / duration)
  let busy = false;
  let choice = held.prefill;  // correction mode: the candidate the editor started from

  function newId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return "s-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
  }
  const submissionId = newId();  // one per shown clip: a retried post is stored once

  function say(text, isError) {
    status.textContent = text;
    status.className = "status" + (isError ? " error" : "");
  }

  async function post(path, payload) {
    if (busy) return null;
    busy = true;
    try {
      const response = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
                                          body: JSON.stringify(payload), credentials: "same-origin"});
      const answer = await response.json().catch(() => ({error: response.statusText}));
      if (!response.ok) { say(answer.error || ("HTTP " + response.status), true); return null; }
      return answer;
    } catch (err) {
      say("could not reach the server: " + err, true);
      return null;
    } finally {
      busy = false;
    }
  }

  async function submit(extra) {
    const payload = Object.assign({assignment: held.assignment, shown: held.shown, submission_id: submissionId,
                                   seconds: (performance.now() - shownAt) / 1000}, extra);
    say("saving…");
    if (await post("/api/submit", payload)) { say("saved"); location.reload(); }
  }

  function marked() {
    return Array.from(document.querySelectorAll("input.acceptable:checked")).map((box) => Number(box.value));
  }
  function bestMarked() {
    const radio = document.querySelector("input.best:checked");
    return radio ? Number(radio.value) : null;
  }
  function submitAcceptable() {
    const acceptable = marked();
    let best = bestMarked();
    if (acceptable.length && (best === null || !acceptable.includes(best))) best = acceptable[0];
    submit({choice: acceptable.length ? best : -1, acceptable: acceptable});
  }
  function submitCorrection() {
    const text = editor.value.trim();
    if (!text) { say("the corrected caption is empty", true); return; }
    submit({choice: choice, corrected: text});
  }
  function startFrom(index) {
    choice = index;
    editor.value = held.candidates[index];
    document.getElementById("startfrom").textContent = String(index + 1);
  }

  function candidate(index, shift) {
    if (index >= held.candidates.length) { say("there is no candidate " + (index + 1), true); return; }
    if (held.mode === "best") submit({choice: index});
    else if (held.mode === "correct") startFrom(index);
    else if (shift) {
      document.querySelectorAll("input.best")[index].checked = true;
      document.querySelectorAll("input.acceptable")[index].checked = true;
    } else {
      const box = document.querySelectorAll("input.acceptable")[index];
      box.checked = !box.checked;
    }
  }

  async function skip() {
    if (await post("/api/skip", {assignment: held.assignment})) location.reload();
  }
  async function undo() {
    const answer = await post("/api/undo", {});
    if (answer) { say("took back your answer for " + answer.undone); location.reload(); }
  }

  function setRate(rate) {
    video.playbackRate = rate;
    document.querySelectorAll("button.rate").forEach((b) => b.classList.toggle("current", Number(b.dataset.rate) === rate));
  }
  function step(frames) {
    video.pause();
    video.currentTime = Math.max(0, Math.min(video.duration || 0, video.currentTime + frames / FPS));
  }
  const RATES = [0.5, 0.75, 1, 1.5, 2];
  function nudgeRate(direction) {
    const at = RATES.indexOf(video.playbackRate);
    setRate(RATES[Math.max(0, Math.min(RATES.length - 1, (at < 0 ? 2 : at) + direction))]);
  }

  document.querySelectorAll("button.rate").forEach((b) => b.addEventListener("click", () => setRate(Number(b.dataset.rate))));
  document.getElementById("back").addEventListener("click", () => step(-1));
  document.getElementById("forward").addEventListener("click", () => step(1));
  document.querySelectorAll("#candidates li").forEach((item) => item.addEventListener("click", (event) => {
    if (event.target.tagName === "INPUT") return;
    if (held.mode !== "acceptable") candidate(Number(item.dataset.index), false);
  }));
  const bind = (id, fn) => { const el = document.getElementById(id); if (el) el.addEventListener("click", fn); };
  bind("allbad", () => submit({choice: -1}));
  bind("nonegood", () => submit({choice: -1, acceptable: []}));
  bind("submit", () => (held.mode === "correct" ? submitCorrection() : submitAcceptable()));
  bind("skip", skip);
  bind("undo", undo);

  document.addEventListener("keydown", (event) => {
    if (event.target === editor) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); submitCorrection(); }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const digit = /^Digit([0-9])$/.exec(event.code);
    if (digit) {
      event.preventDefault();
      const number = Number(digit[1]);
      if (number === 0) {
        if (held.mode === "best") submit({choice: -1});
        else if (held.mode === "acceptable") submit({choice: -1, acceptable: []});
      } else candidate(number - 1, event.shiftKey);
      return;
    }
    switch (event.key) {
      case " ": event.preventDefault(); if (video.paused) video.play(); else video.pause(); break;
      case "n": skip(); break;
      case "u": undo(); break;
      case ",": step(-1); break;
      case ".": step(1); break;
      case "[": nudgeRate(-1); break;
      case "]": nudgeRate(1); break;
      case "Enter":
        if (held.mode === "acceptable") { event.preventDefault(); submitAcceptable(); }
        else if (held.mode === "correct") { event.preventDefault(); submitCorrection(); }
        break;
      default: break;
    }
  });
})();
