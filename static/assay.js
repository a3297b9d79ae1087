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
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      const source = document.getElementById(canvas.dataset.source);
      if (!source || canvas.dataset.drawn) return;
      const data = JSON.parse(source.textContent);
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

  document.addEventListener("DOMContentLoaded", function () {
    drawCharts(document);
    if (window.htmx) htmx.onLoad(function (el) { drawCharts(el); updatePointsTotal(); });
  });
})();
