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
    if (li.classList.contains("step-crit")) focusStep(li);
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

  // A criterion is decided when its choice is made, or (decided at each step) at every step.
  function liDecided(li) {
    if (li.classList.contains("step-crit")) {
      return !li.querySelector(".step-grid .cell[data-outcome='']");
    }
    return isDecided(li.querySelector("form"));
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
    const next = order.find(function (el) { return !liDecided(el); });
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

  // --- Step criteria: a decision at each step. One cell per step holds its decision,
  // rationale and evidence; the step shown is highlighted in the trajectory. Saves go out
  // one after another (in the order made), so quick keys never overtake each other, and
  // submit waits for them. -------------------------------------------------------------

  let saving = Promise.resolve();

  function focusedCell(li) {
    return li.querySelector(".step-grid .cell.focused");
  }

  function showStep(li, cell) {
    li.querySelectorAll(".step-grid .cell.focused").forEach(function (c) { c.classList.remove("focused"); });
    cell.classList.add("focused");
    cell.scrollIntoView({ block: "nearest" });
    li.querySelector(".step-label").textContent = cell.textContent;
    li.querySelectorAll(".step-choice").forEach(function (c) {
      c.classList.toggle("picked", c.dataset.outcome === cell.dataset.outcome);
    });
    li.querySelector(".step-detail textarea").value = cell.dataset.explanation;
    const quote = li.querySelector(".step-detail blockquote.evidence");
    quote.textContent = cell.dataset.evidence;
    quote.hidden = !cell.dataset.evidence;
    const mark = li.querySelector(".step-detail .saved");
    mark.textContent = cell.dataset.outcome ? "saved" : "";
    mark.classList.remove("error");
    document.querySelectorAll(".trajectory li.msg.focused").forEach(function (m) { m.classList.remove("focused"); });
    const row = document.getElementById("msg-" + cell.dataset.step);
    if (row) {
      row.classList.add("focused");
      row.scrollIntoView({ block: "nearest" });
    }
  }

  function focusStep(li) {
    const cells = Array.from(li.querySelectorAll(".step-grid .cell"));
    if (!cells.length) return;
    const cell = focusedCell(li) || cells.find(function (c) { return !c.dataset.outcome; }) || cells[0];
    showStep(li, cell);
  }

  function moveStep(li, by) {
    const cells = Array.from(li.querySelectorAll(".step-grid .cell"));
    if (!cells.length) return;
    const at = cells.indexOf(focusedCell(li));
    showStep(li, cells[Math.max(0, Math.min(cells.length - 1, at + by))]);
  }

  function saveStep(li, cell) {
    if (!cell.dataset.outcome) return;
    const page = document.getElementById("annotate");
    const data = new FormData();
    const form = li.querySelector("form");
    data.append("csrfmiddlewaretoken", form.querySelector("input[name=csrfmiddlewaretoken]").value);
    data.append("criterion", form.querySelector("input[name=criterion]").value);
    data.append("step", cell.dataset.step);
    data.append("outcome", cell.dataset.outcome);
    data.append("explanation", cell.dataset.explanation);
    data.append("evidence", cell.dataset.evidence);
    const mark = li.querySelector(".step-detail .saved");
    saving = saving.then(function () {
      return fetch(page.dataset.draftUrl, {
        method: "POST", body: data, credentials: "same-origin",
        headers: { Accept: "application/json" },
      }).then(function (reply) {
        return reply.json().then(function (body) {
          const shown = focusedCell(li) === cell;
          if (reply.ok) {
            cell.classList.remove("unsaved");
            if (shown) { mark.textContent = "saved"; mark.classList.remove("error"); }
          } else {
            cell.classList.add("unsaved");
            if (shown) { mark.textContent = body.error || "not saved"; mark.classList.add("error"); }
          }
        });
      }).catch(function () {
        cell.classList.add("unsaved");
        mark.textContent = "not saved";
        mark.classList.add("error");
      });
    });
  }

  function decideStep(li, outcome) {
    const cell = focusedCell(li);
    if (!cell) return;
    cell.dataset.outcome = outcome;
    cell.classList.remove("met", "unmet", "na");
    cell.classList.add(outcome);
    saveStep(li, cell);
    li.classList.toggle("decided", liDecided(li));
    updateCount();
    // On to the next undecided step of this criterion; when none is left, the next criterion.
    const cells = Array.from(li.querySelectorAll(".step-grid .cell"));
    const at = cells.indexOf(cell);
    const next = cells.slice(at + 1).concat(cells.slice(0, at)).find(function (c) { return !c.dataset.outcome; });
    if (next) showStep(li, next);
    else { showStep(li, cell); advance(li); }
  }

  function selectionIn(element) {
    const selection = window.getSelection();
    if (!selection || selection.isCollapsed || !element) return "";
    if (!element.contains(selection.anchorNode) || !element.contains(selection.focusNode)) return "";
    return selection.toString().trim();
  }

  function quoteStep(li) {
    const cell = focusedCell(li);
    if (!cell) return false;
    const text = selectionIn(document.getElementById("msg-" + cell.dataset.step));
    if (!text) return false;
    cell.dataset.evidence = text;
    const quote = li.querySelector(".step-detail blockquote.evidence");
    quote.textContent = text;
    quote.hidden = false;
    saveStep(li, cell);
    return true;
  }

  // Evidence for a criterion on the whole response: from the final answer, or (an episode)
  // from any message, anchored to it.
  function quoteSelection(li) {
    let text = selectionIn(document.getElementById("response-text"));
    let at = "";
    if (!text) {
      const selection = window.getSelection();
      const node = selection && selection.anchorNode;
      const row = node && (node.nodeType === 1 ? node : node.parentElement).closest(".trajectory li.msg");
      if (!row) return false;
      text = selectionIn(row);
      at = row.dataset.index;
    }
    if (!text) return false;
    li.querySelector("input[name=evidence]").value = text;
    li.querySelector("input[name=evidence_step]").value = at;
    li.querySelector("input[name=evidence_anchor]").value = "";
    showAnchor(li, "");
    const quote = li.querySelector("blockquote.evidence");
    quote.textContent = text;
    quote.hidden = false;
    save(li);
    return true;
  }

  // Evidence in a file a message carries: a click on a sheet's cell or a PDF's page (in the
  // previews, rubrics/_file_preview.html) anchors the active criterion's evidence there; a
  // cell's value becomes the quote. The server checks the anchor (evidence.check_anchor).
  function fileAnchor(target) {
    const figure = target.closest(".trajectory .file-preview");
    const row = target.closest(".trajectory li.msg");
    if (!figure || !row) return null;
    const name = figure.dataset.name;
    const cell = target.closest("table.sheet td[data-cell]");
    if (cell) {
      const sheet = cell.closest("table.sheet").dataset.sheet;
      return { at: row.dataset.index, element: cell, quote: cell.textContent.trim(),
               anchor: { file: figure.dataset.file, sheet: sheet, cell: cell.dataset.cell },
               label: name + " › " + sheet + " › " + cell.dataset.cell };
    }
    const page = target.closest("img.pdf-page");
    if (page) {
      return { at: row.dataset.index, element: page, quote: "",
               anchor: { file: figure.dataset.file, page: Number(page.dataset.page) },
               label: name + " › page " + page.dataset.page };
    }
    return null;
  }

  function showAnchor(li, label) {
    const shown = li.querySelector(".evidence-anchor");
    if (!shown) return;
    shown.textContent = label ? "Evidence at " + label : "";
    shown.hidden = !label;
  }

  document.addEventListener("click", function (event) {
    const found = event.target.closest && fileAnchor(event.target);
    if (!found || document.querySelector("#annotate fieldset[disabled]")) return;
    const li = active();
    if (!li || li.classList.contains("step-crit")) return;
    li.querySelector("input[name=evidence]").value = found.quote;
    li.querySelector("input[name=evidence_step]").value = found.at;
    li.querySelector("input[name=evidence_anchor]").value = JSON.stringify(found.anchor);
    const quote = li.querySelector("blockquote.evidence");
    quote.textContent = found.quote;
    quote.hidden = !found.quote;
    showAnchor(li, found.label);
    document.querySelectorAll(".trajectory .anchored").forEach(function (el) { el.classList.remove("anchored"); });
    found.element.classList.add("anchored");
    save(li);
  });

  function submit() {
    const form = document.getElementById("submit-form");
    if (form) saving.then(function () { form.requestSubmit(); });
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
    else if (li && li.classList.contains("step-crit")) { onStepKey(event, li); }
    else if (li && li.dataset.scale && /^[1-9x]$/.test(event.key)) { decideScale(li, event.key); event.preventDefault(); }
    else if (KEYS[event.key] && li) { decide(li, KEYS[event.key]); event.preventDefault(); }
    else if (event.key === "e" && li) { quoteSelection(li); event.preventDefault(); }
    else if (event.key === "r" && li) { li.querySelector("textarea").focus(); event.preventDefault(); }
    else if (event.key === "Enter") { event.preventDefault(); submit(); }
  }

  function onStepKey(event, li) {
    if (event.key === "l" || event.key === "ArrowRight") { moveStep(li, 1); event.preventDefault(); }
    else if (event.key === "h" || event.key === "ArrowLeft") { moveStep(li, -1); event.preventDefault(); }
    else if (KEYS[event.key]) { decideStep(li, KEYS[event.key]); event.preventDefault(); }
    else if (event.key === "e") { quoteStep(li); event.preventDefault(); }
    else if (event.key === "r") { li.querySelector(".step-detail textarea").focus(); event.preventDefault(); }
    else if (event.key === "Enter") { event.preventDefault(); submit(); }
  }

  function decidedCount() {
    return items().filter(function (li) { return li.classList.contains("decided"); }).length;
  }

  function updateCount() {
    const head = document.querySelector(".annotate-head h1 small");
    if (head) head.textContent = head.textContent.replace(/\d+\/(\d+) decided/, decidedCount() + "/$1 decided");
  }

  // A step's rationale saves when the annotator leaves the box, if the step is decided.
  document.addEventListener("change", function (event) {
    const box = event.target.closest && event.target.closest(".step-detail textarea");
    if (!box) return;
    const li = box.closest("li.check-item");
    const cell = focusedCell(li);
    if (!cell) return;
    cell.dataset.explanation = box.value;
    saveStep(li, cell);
  });

  // Clicking a step's cell shows it; clicking a choice decides the step shown.
  document.addEventListener("click", function (event) {
    const cell = event.target.closest && event.target.closest(".step-grid .cell");
    const choice = event.target.closest && event.target.closest(".step-choice");
    const li = (cell || choice) && (cell || choice).closest("li.check-item");
    if (!li || document.querySelector("#annotate fieldset[disabled]")) return;
    if (cell) showStep(li, cell);
    if (choice) decideStep(li, choice.dataset.outcome);
  });

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
    updateCount();
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

  // A step criterion's grid: one cell per step, drawn from [index, outcome, rationale,
  // evidence] rows the page carries as JSON; a cell's label is its message's number.
  function drawStepGrids() {
    document.querySelectorAll(".step-grid[data-source]").forEach(function (grid) {
      const rows = JSON.parse(document.getElementById(grid.dataset.source).textContent);
      const fragment = document.createDocumentFragment();
      rows.forEach(function (row) {
        const cell = document.createElement("button");
        cell.type = "button";
        cell.tabIndex = -1;
        cell.className = "cell" + (row[1] ? " " + row[1] : "");
        cell.dataset.step = row[0];
        cell.dataset.outcome = row[1] || "";
        cell.dataset.explanation = row[2] || "";
        cell.dataset.evidence = row[3] || "";
        cell.textContent = "#" + (row[0] + 1);
        cell.title = "The step at message #" + (row[0] + 1);
        fragment.appendChild(cell);
      });
      grid.appendChild(fragment);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawStepGrids();
    drawAgreement();
    const first = items()[0];
    if (first) activate(first);
  });
})();
