// Assay's own front-end code: live points total in the rubric editor, and charts.
(function () {
  "use strict";

  function updatePointsTotal() {
    const total = document.getElementById("points-total");
    const inputs = document.querySelectorAll("#criteria input.points");
    if (!total || inputs.length === 0) return;  // read-only versions keep the server's total
    let sum = 0;
    inputs.forEach(function (input) {
      const value = parseFloat(input.value);
      if (!Number.isNaN(value) && value > 0) sum += value;
    });
    total.textContent = String(Math.round(sum * 100) / 100);
  }

  document.addEventListener("input", function (event) {
    if (event.target.matches && event.target.matches("#criteria input.points")) {
      updatePointsTotal();
    }
  });

  // A control marked data-autosubmit submits its form when changed (no inline handlers: the
  // Content-Security-Policy refuses them).
  document.addEventListener("change", function (event) {
    const control = event.target;
    if (control.matches && control.matches("[data-autosubmit]") && control.form) {
      // A form that names the draft revision sends the current one: autosaves since the
      // page loaded have moved it on, and a stale revision would be refused.
      const current = document.getElementById("draft-revision");
      const sent = control.form.querySelector('input[name="revision"]');
      if (current && sent && sent !== current) sent.value = current.value;
      control.form.requestSubmit();
    }
  });

  // A button marked data-copy copies its value (a full hash beside its short form).
  document.addEventListener("click", function (event) {
    const button = event.target.closest && event.target.closest("button[data-copy]");
    if (!button) return;
    const done = function (label) {
      button.textContent = label;
      setTimeout(function () { button.textContent = "Copy"; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(button.dataset.copy).then(
        function () { done("Copied"); },
        function () { done("Copy failed"); }
      );
    } else {  // plain http on a LAN: select the text so Ctrl+C copies it
      const code = button.previousElementSibling;
      if (code) {
        code.textContent = button.dataset.copy;
        window.getSelection().selectAllChildren(code);
      }
      done("Press Ctrl+C");
    }
  });

  // A filter box over a list of choices (the suite forms' task checkboxes): hides the ones
  // whose text does not hold what is typed; checked ones stay checked, hidden or not.
  document.addEventListener("input", function (event) {
    const box = event.target;
    if (!box.matches || !box.matches("input[data-filter-list]")) return;
    const list = document.getElementById(box.dataset.filterList);
    if (!list) return;
    const wanted = box.value.trim().toLowerCase();
    list.querySelectorAll("[data-filter-text]").forEach(function (item) {
      item.hidden = Boolean(wanted) && item.dataset.filterText.indexOf(wanted) === -1;
    });
  });

  // Upload progress for forms marked data-upload-progress (htmx reports the bytes sent).
  document.addEventListener("htmx:xhr:progress", function (event) {
    const form = event.target.closest && event.target.closest("form[data-upload-progress]");
    if (!form || !event.detail.lengthComputable) return;
    const bar = form.querySelector("progress.upload-progress");
    if (!bar) return;
    bar.hidden = false;
    bar.value = Math.round((100 * event.detail.loaded) / event.detail.total);
  });

  const palette = ["#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2"];

  function drawCharts(root) {
    if (typeof Chart === "undefined") return;
    // The heatmap is not Chart.js's: drawHeatmaps paints it.
    root.querySelectorAll("canvas[data-chart]:not([data-chart='heatmap'])").forEach(function (canvas) {
      const source = document.getElementById(canvas.dataset.source);
      if (!source || canvas.dataset.drawn) return;
      // Data comes in a data-json attribute: htmx drops the <script> elements it swaps in.
      const data = JSON.parse(source.dataset.json || source.textContent);
      canvas.dataset.drawn = "1";
      if (canvas.dataset.chart === "means") {
        new Chart(canvas, {
          type: "bar",
          data: {
            labels: data.models,
            datasets: [{ label: "Mean score (clipped to [0, 1])", data: data.means,
                         backgroundColor: data.models.map(function (_, i) { return palette[i % palette.length]; }) }],
          },
          options: { indexAxis: "y", scales: { x: { min: 0, max: 1 } }, plugins: { legend: { display: false },
                     title: { display: true, text: "Mean score per model" } } },
        });
      } else if (canvas.dataset.chart === "criteria" && data.criteria) {
        new Chart(canvas, {
          type: "bar",
          data: {
            labels: data.criteria.map(function (c) { return c.label; }),
            datasets: [{ label: "Met rate", data: data.criteria.map(function (c) { return c.rate; }),
                         backgroundColor: palette[0] }],
          },
          options: { indexAxis: "y", scales: { x: { min: 0, max: 1 } }, plugins: { legend: { display: false },
                     title: { display: true, text: "Met rate per criterion (lead judge)" } } },
        });
      } else if (canvas.dataset.chart === "compare-pairs") {
        // Each model pair: its 95% paired interval as a floating bar, its delta as a point.
        const title = "Mean score: " + data.b + " minus " + data.a + " (95% paired interval)";
        new Chart(canvas, {
          type: "bar",
          data: {
            labels: data.pairs.map(function (p) { return p.label; }),
            datasets: [
              { type: "line", label: "Delta", data: data.pairs.map(function (p) { return p.delta; }),
                showLine: false, pointRadius: 6, pointStyle: "rectRot", borderColor: "#111827",
                backgroundColor: "#111827" },
              { label: "95% paired interval", data: data.pairs.map(function (p) {
                  return p.low === null ? null : [p.low, p.high]; }),
                backgroundColor: "rgba(37, 99, 235, 0.35)", barPercentage: 0.4 },
            ],
          },
          options: { indexAxis: "y", scales: { x: { min: -1, max: 1 } },
                     plugins: { title: { display: true, text: title } } },
        });
      } else if (canvas.dataset.chart === "compare-tasks") {
        const values = data.tasks.map(function (t) { return t.delta; });
        new Chart(canvas, {
          type: "bar",
          data: {
            labels: data.tasks.map(function (t) { return t.label; }),
            datasets: [{ label: data.b + " minus " + data.a, data: values,
                         backgroundColor: values.map(function (v) { return v < 0 ? "#dc2626" : "#059669"; }) }],
          },
          options: { indexAxis: "y", scales: { x: { min: -1, max: 1 } }, plugins: { legend: { display: false },
                     title: { display: true, text: "Mean score per task (largest changes): " + data.b + " minus " + data.a } } },
        });
      } else if (canvas.dataset.chart === "queue-progress") {
        const parts = [["Submitted", data.submitted, "#059669"], ["In progress", data.active, "#d97706"],
                       ["Remaining", data.remaining, "#cbd5e1"]];
        new Chart(canvas, {
          type: "bar",
          data: {
            labels: data.annotators,
            datasets: parts.map(function (p) { return { label: p[0], data: p[1], backgroundColor: p[2] }; }),
          },
          options: { indexAxis: "y", maintainAspectRatio: false,
                     scales: { x: { stacked: true, ticks: { precision: 0 }, title: { display: true, text: "items" } },
                               y: { stacked: true } },
                     plugins: { title: { display: true, text: "Progress per annotator (remaining: items still open to them)" } } },
        });
      } else if (canvas.dataset.chart === "suite-runs") {
        new Chart(canvas, {
          type: "line",
          data: {
            labels: data.labels,
            datasets: data.models.map(function (model, i) {
              return { label: model, data: data.series[i], spanGaps: true,
                       borderColor: palette[i % palette.length], backgroundColor: palette[i % palette.length] };
            }),
          },
          options: { scales: { y: { min: 0, max: 1, title: { display: true, text: "mean score (clipped)" } },
                               x: { title: { display: true, text: "run (oldest first)" } } },
                     plugins: { title: { display: true, text: "Mean score per model, run by run" } } },
        });
      } else if (canvas.dataset.chart === "histogram") {
        new Chart(canvas, {
          type: "bar",
          data: {
            labels: data.bins,
            datasets: data.models.map(function (model, i) {
              return { label: model, data: data.histograms[i], backgroundColor: palette[i % palette.length] };
            }),
          },
          options: { scales: { x: { title: { display: true, text: "score (bin start)" } },
                               y: { title: { display: true, text: "responses" }, ticks: { precision: 0 } } },
                     plugins: { title: { display: true, text: "Score distribution per model" } } },
        });
      }
    });
  }

  // A leaderboard's models x tasks (or groups of tasks): one cell per model and column, darker
  // for a higher mean, grey where the model has no scored response; a cell's value, column
  // and n show on hover (the canvas's title). Drawn by hand: Chart.js has no heatmap.
  function heatColor(v) {
    const from = [241, 245, 249], to = [29, 78, 216];
    const c = from.map(function (f, i) { return Math.round(f + (to[i] - f) * v); });
    return "rgb(" + c.join(",") + ")";
  }

  function drawHeatmaps(root) {
    root.querySelectorAll("canvas[data-chart='heatmap']").forEach(function (canvas) {
      const source = document.getElementById(canvas.dataset.source);
      if (!source || canvas.dataset.drawn) return;
      const data = JSON.parse(source.dataset.json);
      canvas.dataset.drawn = "1";
      const rows = data.models.length, cols = data.columns.length;
      if (!rows || !cols) return;
      const left = 150, top = 6, bottom = 124, rowH = 26;
      const room = (canvas.parentElement.clientWidth || 640) - left - 10;
      const cell = Math.max(6, Math.min(48, Math.floor(room / cols)));
      const width = Math.max(left + cell * cols + 10, left + 400), height = top + rowH * rows + bottom;
      const ratio = window.devicePixelRatio || 1;
      canvas.width = width * ratio;
      canvas.height = height * ratio;
      canvas.style.width = width + "px";
      canvas.style.height = height + "px";
      const ctx = canvas.getContext("2d");
      ctx.scale(ratio, ratio);
      ctx.font = "12px system-ui, sans-serif";
      ctx.textBaseline = "middle";
      data.models.forEach(function (model, r) {
        ctx.fillStyle = "#111827";
        ctx.textAlign = "right";
        ctx.fillText(model.length > 22 ? model.slice(0, 21) + "…" : model, left - 6, top + r * rowH + rowH / 2);
        data.values[r].forEach(function (v, c) {
          ctx.fillStyle = v === null ? "#d1d5db" : heatColor(Math.max(0, Math.min(1, v)));
          ctx.fillRect(left + c * cell, top + r * rowH, cell - 1, rowH - 1);
        });
      });
      // Column labels, turned; when columns are narrow, every few.
      const every = Math.max(1, Math.ceil(14 / cell));
      ctx.fillStyle = "#374151";
      ctx.textAlign = "right";
      data.columns.forEach(function (label, c) {
        if (c % every) return;
        ctx.save();
        ctx.translate(left + c * cell + cell / 2, top + rows * rowH + 6);
        ctx.rotate(-Math.PI / 3);
        ctx.fillText(label.length > 18 ? label.slice(0, 17) + "…" : label, 0, 0);
        ctx.restore();
      });
      // The legend: mean 0 to 1, and the grey of no scored response.
      const legendY = height - 16;
      const gradient = ctx.createLinearGradient(left, 0, left + 120, 0);
      gradient.addColorStop(0, heatColor(0));
      gradient.addColorStop(1, heatColor(1));
      ctx.fillStyle = gradient;
      ctx.fillRect(left, legendY - 5, 120, 10);
      ctx.fillStyle = "#d1d5db";
      ctx.fillRect(left + 250, legendY - 5, 10, 10);
      ctx.fillStyle = "#374151";
      ctx.textAlign = "right";
      ctx.fillText("mean 0", left - 4, legendY);
      ctx.textAlign = "left";
      ctx.fillText("1", left + 124, legendY);
      ctx.fillText("no scored response", left + 264, legendY);
      canvas.addEventListener("mousemove", function (event) {
        const box = canvas.getBoundingClientRect();
        const c = Math.floor((event.clientX - box.left - left) / cell);
        const r = Math.floor((event.clientY - box.top - top) / rowH);
        if (c < 0 || c >= cols || r < 0 || r >= rows) { canvas.title = ""; return; }
        const v = data.values[r][c];
        canvas.title = data.models[r] + " · " + data.columns[c] + ": " +
          (v === null ? "no scored response" : v.toFixed(2) + " (n=" + data.n[r][c] + ")");
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawCharts(document);
    drawHeatmaps(document);
    if (window.htmx) htmx.onLoad(function (el) { drawCharts(el); drawHeatmaps(el); updatePointsTotal(); });
  });
})();

// The rubric editor's keyboard: Alt+N new criterion, Enter adds it, Alt+Up/Down moves the
// criterion being edited, Alt+Right/Left moves it into / out of a group. After a swap, focus
// returns to where the author was. Unsaved typing is sent when the tab closes.
//
// Typing is never lost to a swap: the list is morphed (idiomorph), not replaced, so its
// elements, pending autosaves and focus stay; a field typed in and not yet saved keeps what
// the author typed whatever the server renders, until a save of that very value comes back.
// The add form belongs to the author: it is cleared when an add is sent (so the next
// criterion can be typed at once) and the server never overwrites it.
(function () {
  "use strict";

  function editor() { return document.querySelector("[data-editor]"); }

  function csrfToken() {
    try { return JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"]; }
    catch (e) { return ""; }
  }

  // Fields typed in since the server last saved their value.
  const dirty = new WeakSet();

  function isField(node) {
    return node instanceof HTMLTextAreaElement || node instanceof HTMLSelectElement ||
      (node instanceof HTMLInputElement && node.type !== "hidden");
  }

  function valueOf(field) {
    if (field.type === "checkbox" || field.type === "radio") return field.checked ? (field.value || "on") : null;
    return field.value;
  }

  function authorOwns(node) {
    return isField(node) && (dirty.has(node) || Boolean(node.closest("form.crit-new")));
  }

  if (window.Idiomorph) {
    const callbacks = window.Idiomorph.defaults.callbacks;
    callbacks.beforeNodeMorphed = function (oldNode) {
      if (authorOwns(oldNode)) return false;  // keep the element as the author left it
      return true;
    };
    callbacks.beforeNodeRemoved = function (node) {
      // A kind's fields added for the author stay while they hold typing not saved yet.
      if (node.classList && node.classList.contains("kind-fields")) {
        return !Array.prototype.some.call(node.querySelectorAll("textarea, input, select"), authorOwns);
      }
      return true;
    };
    callbacks.beforeAttributeUpdated = function (name, node, kind) {
      // An option of a select the author changed keeps its choice; an open <details> stays open.
      if (node instanceof HTMLOptionElement && node.parentElement && authorOwns(node.parentElement)) return false;
      if (name === "open" && kind === "remove" && node instanceof HTMLDetailsElement) return false;
      return true;
    };
  }

  document.addEventListener("input", function (event) {
    if (isField(event.target) && event.target.closest("#criteria")) dirty.add(event.target);
  });
  document.addEventListener("change", function (event) {
    if (isField(event.target) && event.target.closest("#criteria")) dirty.add(event.target);
  });

  // A save came back: fields still holding the value it saved are no longer the author's
  // alone; ones typed in again since keep their new text.
  document.addEventListener("htmx:beforeSwap", function (event) {
    const xhr = event.detail.xhr;
    if (!xhr || xhr.getResponseHeader("X-Assay-Saved") !== "1") return;
    const elt = event.detail.requestConfig && event.detail.requestConfig.elt;
    const form = elt && elt.closest && elt.closest("form.crit-row, form.group-row");
    if (!form) return;
    const sent = event.detail.requestConfig.parameters;
    Array.prototype.forEach.call(form.elements, function (field) {
      if (!isField(field) || !dirty.has(field)) return;
      const was = field.type === "checkbox" ? (sent[field.name] === undefined ? null : sent[field.name]) : sent[field.name];
      if (was !== undefined && valueOf(field) === was) dirty.delete(field);
    });
  });

  function addCriterion(form) {
    const box = form.querySelector("[name=text]");
    const points = form.querySelector("[name=points]");
    if (!box.value.trim()) return;
    const values = { text: box.value, points: points.value };
    // Sent with these values even if it waits in the queue behind another request.
    box.value = "";
    points.value = points.defaultValue;
    dirty.delete(box);
    dirty.delete(points);
    // Sent from the button: it takes the form's fields (and its hx-include, hx-sync) without
    // validating the now empty box again.
    window.htmx.ajax("POST", form.getAttribute("action"), {
      source: form.querySelector("button[type=submit]"), values: values, target: "#criteria", swap: "morph",
    });
  }

  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!form.matches || !form.matches("form.crit-new") || !window.htmx) return;
    event.preventDefault();
    addCriterion(form);
  });

  // An add that was refused gives its text back, unless the author has typed anew.
  document.addEventListener("htmx:afterRequest", function (event) {
    const elt = event.detail.elt && event.detail.elt.closest && event.detail.elt.closest("form.crit-new");
    if (!elt) return;
    const xhr = event.detail.xhr;
    if (xhr && xhr.getResponseHeader("X-Assay-Saved") === "1") return;
    const sent = event.detail.requestConfig && event.detail.requestConfig.parameters;
    const box = elt.querySelector("[name=text]");
    const points = elt.querySelector("[name=points]");
    if (sent && !box.value && !dirty.has(box)) {
      box.value = sent.text || "";
      points.value = sent.points || points.defaultValue;
    }
  });

  // Choosing a kind with fields of its own (a scale's levels) shows them at once and puts the
  // cursor there, instead of saving a kind that is not complete yet: the row's autosave sends
  // the kind with its fields, and an error shows at the criterion. Runs in the capture phase,
  // before htmx's own listener on the select would send the kind alone.
  function kindFields(form, kind) {
    let fields = form.querySelector('.kind-fields[data-kind="' + kind + '"]');
    const template = document.getElementById("kind-fields-" + kind);
    if (fields || !template) return fields;
    fields = template.content.firstElementChild.cloneNode(true);
    const row = form.closest("li[data-criterion]");
    const kindSelect = form.querySelector("select[name=kind]");
    fields.querySelectorAll("[data-label]").forEach(function (field) {
      field.id = "crit-" + row.dataset.criterion + "-" + field.name;
      field.setAttribute("aria-label", kindSelect.getAttribute("aria-label").replace(/ kind$/, " " + field.dataset.label));
    });
    form.querySelector(".crit-meta").after(fields);
    return fields;
  }

  document.addEventListener("change", function (event) {
    const select = event.target;
    if (!select.matches || !select.matches("form.crit-row select[name=kind]")) return;
    const fields = kindFields(select.form, select.value);
    if (!fields) return;
    const levels = fields.querySelector("textarea[name=scale]");
    const filled = levels && levels.value.split("\n").filter(function (l) { return l.trim(); }).length;
    if (filled >= 2) return;  // complete already: save the kind now
    event.stopImmediatePropagation();
    // The first field the chosen check type shows (assay.css hides the others).
    const first = levels || Array.prototype.find.call(
      fields.querySelectorAll("input[type=text], input:not([type])"),
      function (field) { return field.offsetParent !== null; });
    if (first) first.focus();
  }, true);

  const KEYS = { ArrowUp: "up", ArrowDown: "down", ArrowRight: "in", ArrowLeft: "out" };

  document.addEventListener("keydown", function (event) {
    if (!editor()) return;
    if (event.altKey && (event.key === "n" || event.key === "N" || event.code === "KeyN")) {
      const box = document.getElementById("new-criterion-text");
      if (box) { event.preventDefault(); box.focus(); }
      return;
    }
    if (event.target.id === "new-criterion-text" && event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      if (!event.target.value.trim()) return;
      event.target.form.requestSubmit();
      return;
    }
    if (event.altKey && KEYS[event.key]) {
      const row = event.target.closest && event.target.closest("li[data-criterion]");
      if (!row) return;
      const button = row.querySelector('button[data-key="' + KEYS[event.key] + '"]');
      event.preventDefault();
      if (!button || button.disabled) return;
      // A key pressed the instant a swap lands may beat htmx's wiring of the new row.
      if (window.htmx) window.htmx.process(row);
      button.click();
    }
  });

  // After settling: by then htmx has wired the new buttons, so a key pressed at once works.
  // Focus moves only if the author is not already typing somewhere else.
  document.addEventListener("htmx:afterSettle", function () {
    const list = document.getElementById("criteria");
    if (!list || !list.dataset.focus) return;
    const wanted = list.dataset.focus;
    list.dataset.focus = "";
    const active = document.activeElement;
    let target = null;
    if (wanted === "new") {
      target = document.getElementById("new-criterion-text");
      // From the add button the cursor goes back to the text; from a field the author moved
      // to (the points, tabbed to while the add was out) it stays, or the next key is lost.
      if (active && active !== document.body && (isField(active) || !active.closest("form.crit-new"))) return;
    } else {
      target = document.getElementById(wanted + "-text");
      const row = target && target.closest("li[data-criterion]");
      if (active && active !== document.body && !(row && row.contains(active))) return;
      if (active === target) return;
    }
    if (target) target.focus();
  });

  window.addEventListener("pagehide", function () {
    document.querySelectorAll("form.crit-row").forEach(function (form) {
      if (!Array.prototype.some.call(form.elements, function (f) { return dirty.has(f); })) return;
      const data = new FormData(form);
      const revision = document.getElementById("draft-revision");
      if (revision) data.set("revision", revision.value);
      data.set("csrfmiddlewaretoken", csrfToken());
      navigator.sendBeacon(form.getAttribute("hx-post"), data);
    });
  });
})();

// The messages editor (rubrics/_messages_editor.html): add, remove and move chat messages.
// The rows' order in the page is the order the form sends and the task keeps.
(function () {
  "use strict";

  document.addEventListener("click", function (event) {
    const button = event.target.closest && event.target.closest("button");
    if (!button) return;
    const editor = button.closest("[data-messages-editor]");
    if (!editor) return;
    const rows = editor.querySelector("[data-message-rows]");
    const row = button.closest("[data-message-row]");
    if (button.matches("[data-message-add]")) {
      const template = editor.querySelector("template[data-message-template]");
      const fresh = template.content.firstElementChild.cloneNode(true);
      rows.appendChild(fresh);
      if (window.htmx) window.htmx.process(fresh);  // its preview's request
      fresh.querySelector("textarea").focus();
    } else if (row && button.matches("[data-message-remove]")) {
      row.remove();
    } else if (row && button.matches("[data-message-up]") && row.previousElementSibling) {
      rows.insertBefore(row, row.previousElementSibling);
      button.focus();
    } else if (row && button.matches("[data-message-down]") && row.nextElementSibling) {
      rows.insertBefore(row.nextElementSibling, row);
      button.focus();
    }
  });
})();
