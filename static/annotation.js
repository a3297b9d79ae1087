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
    else {
      const input = li.querySelector("input[name=evidence_anchor]");
      markPicked(input && input.value ? JSON.parse(input.value) : null);
    }
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
    showStepEvidence(li, cell);
    markPicked(cell.dataset.anchor ? JSON.parse(cell.dataset.anchor) : null);
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

  // The step's quote and where in a file it is.
  function showStepEvidence(li, cell) {
    const quote = li.querySelector(".step-detail blockquote.evidence");
    quote.textContent = cell.dataset.evidence;
    quote.hidden = !cell.dataset.evidence;
    showAnchor(li.querySelector(".step-detail"), cell.dataset.anchorLabel || "");
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
    data.append("evidence_anchor", cell.dataset.anchor || "");
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
    cell.dataset.anchor = "";  // a quote of text points at no file
    cell.dataset.anchorLabel = "";
    showStepEvidence(li, cell);
    markPicked(null);
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
    markPicked(null);
    const quote = li.querySelector("blockquote.evidence");
    quote.textContent = text;
    quote.hidden = false;
    save(li);
    return true;
  }

  // --- Evidence in a file a message carries (previews: rubrics/_file_preview.html) ---------
  // A click on a sheet's cell, a click on a PDF's page, or a box dragged (pointer events)
  // on an image or a PDF page anchors evidence there: the active criterion's on the
  // annotation page (a step criterion's: the step shown, from a file of that step or of its
  // tool results), the gold verdict's on the adjudication page. A click on an image without
  // a drag marks a box a fifth of its size centred on the click. A region is [x, y, width,
  // height] in fractions of the image or page. The server checks every anchor
  // (evidence.check_anchor). Anchors already made (data-anchor, on the adjudication and
  // score pages) are outlined in the previews.

  const CLICK_BOX = 0.2;

  function fileName(figure) { return figure.dataset.name; }

  function percent(v) { return Math.round(v * 100) + "%"; }

  // As evidence.anchor_label says it.
  function anchorWords(anchor, name) {
    const said = [name];
    if (anchor.sheet) said.push(anchor.sheet, anchor.cell);
    if (anchor.page) said.push("page " + anchor.page);
    if (anchor.region) {
      const r = anchor.region;
      said.push("region " + percent(r[0]) + "–" + percent(r[0] + r[2]) + " across, " +
                percent(r[1]) + "–" + percent(r[1] + r[3]) + " down");
    }
    return said.join(" › ");
  }

  // Where a pick goes: the gold form, or the annotation page's active criterion.
  function pickTarget() {
    const gold = document.getElementById("gold-form");
    if (gold) return gold.querySelector("input[name=evidence_anchor]") ? gold : null;
    if (!document.getElementById("annotate") || document.querySelector("#annotate fieldset[disabled]")) return null;
    return active();
  }

  function cellAnchor(target) {
    const figure = target.closest(".trajectory .file-preview");
    const row = target.closest(".trajectory li.msg");
    const cell = target.closest("table.sheet td[data-cell]");
    if (!figure || !row || !cell) return null;
    const anchor = { file: figure.dataset.file, sheet: cell.closest("table.sheet").dataset.sheet, cell: cell.dataset.cell };
    return { row: row, figure: figure, quote: cell.textContent.trim(), anchor: anchor };
  }

  function clearPicked() {
    document.querySelectorAll(".trajectory .anchored").forEach(function (el) { el.classList.remove("anchored"); });
    document.querySelectorAll(".trajectory .region-box.picked").forEach(function (el) { el.remove(); });
  }

  function placeBox(box, region) {
    box.style.left = (region[0] * 100) + "%";
    box.style.top = (region[1] * 100) + "%";
    box.style.width = (region[2] * 100) + "%";
    box.style.height = (region[3] * 100) + "%";
  }

  function sameSheet(figure, sheet) {
    return Array.from(figure.querySelectorAll("table.sheet")).find(function (t) { return t.dataset.sheet === sheet; });
  }

  // Outline `anchor` in one preview: "anchored" for the pick being made, "anchor-shown" for a
  // verdict's or the gold's (named by `who`).
  function outline(figure, anchor, how, who) {
    if (anchor.cell) {
      const table = sameSheet(figure, anchor.sheet);
      if (!table) {  // another sheet is shown: open the anchor's once
        const tab = Array.from(figure.querySelectorAll(".sheet-tabs a.tab")).find(function (a) { return a.textContent === anchor.sheet; });
        const body = figure.querySelector(".file-body");
        if (tab && body && !body.dataset.opened && typeof htmx !== "undefined") {
          body.dataset.opened = "1";
          htmx.ajax("GET", tab.getAttribute("hx-get"), { target: body, swap: "innerHTML" });
        }
        return null;
      }
      const td = table.querySelector('td[data-cell="' + CSS.escape(anchor.cell) + '"]');
      if (td) { td.classList.add(how); if (who) td.title = anchor.cell + " · evidence of " + who; }
      return td;
    }
    const img = anchor.page
      ? figure.querySelector('img.pdf-page[data-page="' + Number(anchor.page) + '"]')
      : figure.querySelector("img.file-image");
    if (!img) return null;
    if (!anchor.region) { img.classList.add(how); return img; }
    const frame = img.parentElement;
    const key = how + ":" + JSON.stringify(anchor.region) + ":" + (who || "");
    const had = Array.from(frame.querySelectorAll(".region-box")).find(function (b) { return b.dataset.key === key; });
    if (had) return had;
    const box = document.createElement("span");
    box.className = "region-box " + (how === "anchored" ? "picked" : "shown");
    box.dataset.key = key;
    box.dataset.testid = how === "anchored" ? "region-picked" : "region-shown";
    if (who) box.title = "evidence of " + who;
    placeBox(box, anchor.region);
    frame.appendChild(box);
    return box;
  }

  function figuresOf(anchor) {
    return document.querySelectorAll('.trajectory .file-preview[data-file="' + CSS.escape(anchor.file) + '"]');
  }

  let picked = null;  // the anchor of the criterion, step or gold being decided, outlined

  function markPicked(anchor) {
    clearPicked();
    picked = anchor || null;
    if (!picked) return;
    figuresOf(picked).forEach(function (figure) { outline(figure, picked, "anchored"); });
  }

  function showAnchors() {
    document.querySelectorAll("[data-anchor]").forEach(function (el) {
      let anchor;
      try { anchor = JSON.parse(el.dataset.anchor); } catch (e) { return; }
      if (!anchor || !anchor.file) return;
      figuresOf(anchor).forEach(function (figure) { outline(figure, anchor, "anchor-shown", el.dataset.who || ""); });
    });
    if (picked) markPicked(picked);
  }

  function showAnchor(li, label) {
    const shown = li.querySelector(".evidence-anchor");
    if (!shown) return;
    shown.textContent = label ? "Evidence at " + label : "";
    shown.hidden = !label;
  }

  // A pick: `found` = {row, figure, quote, anchor}.
  function applyAnchor(target, found) {
    const label = anchorWords(found.anchor, fileName(found.figure));
    if (target.id === "gold-form") {
      target.querySelector("input[name=evidence_anchor]").value = JSON.stringify(found.anchor);
      showAnchor(target, label);
      target.querySelector(".anchor-hint").hidden = true;
      target.querySelector(".anchor-clear").hidden = false;
      markPicked(found.anchor);
      return;
    }
    const li = target;
    if (li.classList.contains("step-crit")) {
      const cell = focusedCell(li);
      if (!cell) return;
      const step = cell.dataset.step;
      const mark = li.querySelector(".step-detail .saved");
      if (found.row.dataset.index !== step && found.row.dataset.answers !== step) {
        mark.textContent = "That file is not in step #" + (Number(step) + 1) + " or its tool results.";
        mark.classList.add("error");
        return;
      }
      cell.dataset.anchor = JSON.stringify(found.anchor);
      cell.dataset.anchorLabel = label;
      cell.dataset.evidence = found.quote;
      showStepEvidence(li, cell);
      markPicked(found.anchor);
      if (cell.dataset.outcome) saveStep(li, cell);
      else { mark.textContent = "decide this step to save its evidence"; mark.classList.remove("error"); }
      return;
    }
    li.querySelector("input[name=evidence]").value = found.quote;
    li.querySelector("input[name=evidence_step]").value = found.row.dataset.index;
    li.querySelector("input[name=evidence_anchor]").value = JSON.stringify(found.anchor);
    const quote = li.querySelector("blockquote.evidence");
    quote.textContent = found.quote;
    quote.hidden = !found.quote;
    showAnchor(li, label);
    markPicked(found.anchor);
    save(li);
  }

  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest(".anchor-clear")) {
      const form = event.target.closest("#gold-form");
      if (!form) return;
      form.querySelector("input[name=evidence_anchor]").value = "";
      showAnchor(form, "");
      form.querySelector(".anchor-hint").hidden = false;
      event.target.hidden = true;
      markPicked(null);
      return;
    }
    const go = event.target.closest && event.target.closest(".anchor-go");
    if (go) {
      event.preventDefault();
      let anchor;
      try { anchor = JSON.parse(go.closest("[data-anchor]").dataset.anchor); } catch (e) { return; }
      const figure = figuresOf(anchor)[0];
      if (!figure) return;
      const shown = outline(figure, anchor, "anchor-shown", go.closest("[data-anchor]").dataset.who || "");
      (shown || figure).scrollIntoView({ block: "center" });
      return;
    }
    const found = event.target.closest && cellAnchor(event.target);
    const target = found && pickTarget();
    if (target) applyAnchor(target, found);
  });

  // A box dragged on an image or a PDF page.
  let drag = null;

  function fraction(value, start, size) {
    return Math.max(0, Math.min(1, (value - start) / size));
  }

  function dragRegion(event) {
    const r = drag.rect;
    const x1 = fraction(event.clientX, r.left, r.width), y1 = fraction(event.clientY, r.top, r.height);
    const round = function (v) { return Math.round(v * 10000) / 10000; };
    const x = round(Math.min(drag.x0, x1)), y = round(Math.min(drag.y0, y1));
    return [x, y, round(Math.min(Math.abs(x1 - drag.x0), 1 - x)), round(Math.min(Math.abs(y1 - drag.y0), 1 - y))];
  }

  document.addEventListener("pointerdown", function (event) {
    const img = event.target.closest && event.target.closest(".trajectory .region-frame > img");
    if (!img || event.button !== 0 || !pickTarget()) return;
    event.preventDefault();  // no native image drag, no text selection
    img.setPointerCapture(event.pointerId);
    const rect = img.getBoundingClientRect();
    drag = { img: img, rect: rect, px: event.clientX, py: event.clientY, box: null,
             x0: fraction(event.clientX, rect.left, rect.width), y0: fraction(event.clientY, rect.top, rect.height) };
  });

  document.addEventListener("pointermove", function (event) {
    if (!drag) return;
    if (!drag.box && Math.abs(event.clientX - drag.px) + Math.abs(event.clientY - drag.py) < 6) return;
    if (!drag.box) {
      drag.box = document.createElement("span");
      drag.box.className = "region-box drawing";
      drag.img.parentElement.appendChild(drag.box);
    }
    placeBox(drag.box, dragRegion(event));
  });

  function endDrag() {
    if (drag && drag.box) drag.box.remove();
    drag = null;
  }

  document.addEventListener("pointercancel", endDrag);

  document.addEventListener("pointerup", function (event) {
    if (!drag) return;
    const img = drag.img;
    let region = drag.box ? dragRegion(event) : null;
    const x0 = drag.x0, y0 = drag.y0;
    endDrag();
    const figure = img.closest(".file-preview"), row = img.closest("li.msg"), target = pickTarget();
    if (!figure || !row || !target) return;
    const isPage = img.classList.contains("pdf-page");
    if (region && (region[2] < 0.005 || region[3] < 0.005)) region = null;
    if (!region && !isPage) {  // a click on an image: a box a fifth of its size around it
      const h = CLICK_BOX / 2;
      const x = Math.max(0, Math.min(1 - CLICK_BOX, x0 - h)), y = Math.max(0, Math.min(1 - CLICK_BOX, y0 - h));
      region = [Math.round(x * 10000) / 10000, Math.round(y * 10000) / 10000, CLICK_BOX, CLICK_BOX];
    }
    const anchor = { file: figure.dataset.file };
    if (isPage) anchor.page = Number(img.dataset.page);
    if (region) anchor.region = region;
    applyAnchor(target, { row: row, figure: figure, quote: "", anchor: anchor });
  });

  // A preview's body arrives (htmx, when it comes into view): outline the anchors in it.
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.target.closest && event.target.closest(".file-preview")) showAnchors();
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
  // evidence, anchor, anchor in words] rows the page carries as JSON; a cell's label is its message's number.
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
        cell.dataset.anchor = row[4] ? JSON.stringify(row[4]) : "";
        cell.dataset.anchorLabel = row[5] || "";
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
    const gold = document.querySelector("#gold-form input[name=evidence_anchor]");
    if (gold && gold.value) picked = JSON.parse(gold.value);
    if (pickTarget()) document.body.classList.add("anchoring");
    showAnchors();
    const first = items()[0];
    if (first) activate(first);
  });
})();
