// Assay's annotation page (keyboard-first grading, evidence from a text selection, drafts
// saved as you go) and the agreement charts. Our own code; htmx and Chart.js are vendored.
(function () {
  "use strict";

  const KEYS = { "1": "met", "2": "unmet", "3": "na" };

  function items() {
    return Array.from(document.querySelectorAll("#criteria li.check-item"));
  }

  function active() {
    return document.querySelector("#criteria li.check-item.active");
  }

  function activate(li) {
    if (!li) return;
    items().forEach(function (el) { el.classList.remove("active"); });
    li.classList.add("active");
    li.scrollIntoView({ block: "nearest" });
  }

  function move(step) {
    const all = items();
    const at = all.indexOf(active());
    activate(all[Math.max(0, Math.min(all.length - 1, at + step))]);
  }

  function isDecided(form) {
    return Boolean(form.querySelector(
      "input[name=outcome][type=radio]:checked, input[name=value]:checked, input[name=na]:checked"));
  }

  function save(li) {
    const form = li.querySelector("form");
    if (!isDecided(form)) return;  // nothing to save yet
    htmx.trigger(form, "save");
  }

  // After a decision the next undecided criterion (after this one, then from the top) becomes
  // active, so 15 criteria take 15 keys and a submit rather than a j between each.
  function advance(li) {
    const all = items();
    const at = all.indexOf(li);
    const order = all.slice(at + 1).concat(all.slice(0, at));
    const next = order.find(function (el) { return !isDecided(el.querySelector("form")); });
    if (next) activate(next);
  }

  function decide(li, outcome) {
    const radio = li.querySelector("input[name=outcome][value=" + outcome + "]");
    radio.checked = true;
    save(li);
    advance(li);
  }

  // A scale criterion: digits pick a level, x marks it not applicable.
  function decideScale(li, key) {
    const na = li.querySelector("input[name=na]");
    if (key === "x") {
      na.checked = !na.checked;
      if (na.checked) li.querySelectorAll("input[name=value]").forEach(function (r) { r.checked = false; });
    } else {
      const radio = li.querySelectorAll("input[name=value]")[Number(key) - 1];
      if (!radio) return;
      radio.checked = true;
      na.checked = false;
    }
    save(li);
    if (isDecided(li.querySelector("form"))) advance(li);
  }

  function quoteSelection(li) {
    const selection = window.getSelection();
    const response = document.getElementById("response-text");
    if (!selection || selection.isCollapsed || !response) return false;
    if (!response.contains(selection.anchorNode) || !response.contains(selection.focusNode)) {
      return false;
    }
    const text = selection.toString().trim();
    if (!text) return false;
    li.querySelector("input[name=evidence]").value = text;
    const quote = li.querySelector("blockquote.evidence");
    quote.textContent = text;
    quote.hidden = false;
    save(li);
    return true;
  }

  function submit() {
    const form = document.getElementById("submit-form");
    if (form) form.requestSubmit();
  }

  function onKey(event) {
    const page = document.getElementById("annotate");
    if (!page) return;
    const target = event.target;
    const typing = target.matches("textarea, input:not([type=radio]):not([type=hidden])");
    if (event.key === "q" && !typing && !event.altKey && !event.ctrlKey && !event.metaKey) {
      event.preventDefault();
      window.location.assign(page.dataset.queuesUrl);  // also from a submitted item
      return;
    }
    if (document.querySelector("#annotate fieldset[disabled]")) return;  // submitted or skipped
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      if (typing && target.closest(".check-item")) save(target.closest(".check-item"));
      submit();
      return;
    }
    if (typing) {
      if (event.key === "Escape") {
        target.blur();
        const li = target.closest(".check-item");
        if (li) activate(li);
      }
      return;
    }
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const li = active();
    if (event.key === "j") { move(1); event.preventDefault(); }
    else if (event.key === "k") { move(-1); event.preventDefault(); }
    else if (li && li.dataset.scale && /^[1-9x]$/.test(event.key)) { decideScale(li, event.key); event.preventDefault(); }
    else if (KEYS[event.key] && li) { decide(li, KEYS[event.key]); event.preventDefault(); }
    else if (event.key === "e" && li) { quoteSelection(li); event.preventDefault(); }
    else if (event.key === "r" && li) { li.querySelector("textarea").focus(); event.preventDefault(); }
    else if (event.key === "Enter") { event.preventDefault(); submit(); }
  }

  function decidedCount() {
    return items().filter(function (li) { return li.classList.contains("decided"); }).length;
  }

  document.addEventListener("keydown", onKey);

  document.addEventListener("click", function (event) {
    const li = event.target.closest && event.target.closest("#criteria li.check-item");
    if (li) activate(li);
  });

  // A rationale saves when the annotator leaves the box (the form's change event).
  document.addEventListener("htmx:afterRequest", function (event) {
    const li = event.target.closest && event.target.closest("li.check-item");
    if (!li) return;
    const mark = li.querySelector(".saved");
    if (event.detail.successful) {
      li.classList.add("decided");
      mark.textContent = "saved";
      mark.classList.remove("error");
    } else {
      let message = "not saved";
      try { message = JSON.parse(event.detail.xhr.responseText).error || message; } catch (e) { /* keep */ }
      mark.textContent = message;
      mark.classList.add("error");
    }
    const head = document.querySelector(".annotate-head h1 small");
    if (head) head.textContent = head.textContent.replace(/\d+\/(\d+) decided/, decidedCount() + "/$1 decided");
  });

  // Radios and the rationale trigger "change" on the form; only a decided criterion saves.
  document.addEventListener("htmx:confirm", function (event) {
    const form = event.target;
    if (form.classList && form.classList.contains("crit-form") && !isDecided(form)) {
      event.preventDefault();
    }
  });

  // --- Adjudication: 1/2/3 (a scale: 1-9, x) pick the gold verdict, n the note, Enter (in
  // the note Ctrl+Enter) records it and opens the next open disagreement. -----------------

  function recordAndNext(form) {
    const button = document.getElementById("record-next");
    if (button) form.requestSubmit(button);
  }

  function pickGold(form, key) {
    const scale = form.querySelector(".gold-choices.scale");
    if (!scale) {
      const radio = form.querySelector("input[name=outcome][value=" + KEYS[key] + "]");
      if (radio) radio.checked = true;
      return Boolean(radio);
    }
    const na = scale.querySelector("input[name=na]");
    if (key === "x") {
      na.checked = !na.checked;
      if (na.checked) scale.querySelectorAll("input[name=value]").forEach(function (r) { r.checked = false; });
      return true;
    }
    const radio = scale.querySelectorAll("input[name=value]")[Number(key) - 1];
    if (!radio) return false;
    radio.checked = true;
    na.checked = false;
    return true;
  }

  function onGoldKey(event) {
    const form = document.getElementById("gold-form");
    if (!form) return;
    const target = event.target;
    const typing = target.matches("textarea, input:not([type=radio]):not([type=checkbox]):not([type=hidden]), select");
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      recordAndNext(form);
      return;
    }
    if (typing) {
      if (event.key === "Escape") target.blur();
      return;
    }
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (/^[1-9x]$/.test(event.key) && pickGold(form, event.key)) event.preventDefault();
    else if (event.key === "n") { event.preventDefault(); document.getElementById("note").focus(); }
    else if (event.key === "Enter" && !target.matches("button, a")) { event.preventDefault(); recordAndNext(form); }
  }

  document.addEventListener("keydown", onGoldKey);

  // --- Charts ----------------------------------------------------------------------------

  function heat(value) {
    if (value === null || value === "") return "#f3f4f6";
    const v = Math.max(-1, Math.min(1, Number(value)));
    // red below 0, white near 0.4, green at 1
    if (v < 0.4) {
      const t = (v + 1) / 1.4;
      return "rgb(" + 248 + "," + Math.round(113 + t * 142) + "," + Math.round(113 + t * 142) + ")";
    }
    const t = (v - 0.4) / 0.6;
    return "rgb(" + Math.round(255 - t * 121) + "," + Math.round(255 - t * 16) + "," + Math.round(255 - t * 83) + ")";
  }

  function drawAgreement() {
    document.querySelectorAll("td[data-kappa]").forEach(function (td) {
      td.style.background = heat(td.dataset.kappa);
    });
    // Confusion matrices: a cell's shade is its share of the gold row.
    document.querySelectorAll("[data-share]").forEach(function (td) {
      td.style.background = "rgba(37, 99, 235, " + (0.08 + 0.72 * Number(td.dataset.share)) + ")";
      if (Number(td.dataset.share) > 0.5) td.style.color = "#fff";
    });
    const canvas = document.querySelector("canvas[data-annotation-chart=alpha]");
    if (!canvas || typeof Chart === "undefined" || canvas.dataset.drawn) return;
    const data = JSON.parse(document.getElementById(canvas.dataset.source).textContent);
    canvas.dataset.drawn = "1";
    new Chart(canvas, {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: [{ label: "Krippendorff's alpha", data: data.values,
                     backgroundColor: data.values.map(function (v) { return v !== null && v < data.threshold ? "#dc2626" : "#2563eb"; }) }],
      },
      options: { scales: { y: { min: -1, max: 1, title: { display: true, text: "alpha" } },
                           x: { title: { display: true, text: "criterion" } } },
                 plugins: { legend: { display: false },
                            title: { display: true, text: "Krippendorff's alpha per criterion (all raters)" } } },
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawAgreement();
    const first = items()[0];
    if (first) activate(first);
  });
})();
