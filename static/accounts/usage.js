/* The Usage page's chart: tokens per day, stacked by model and channel (Chart.js from npm). */
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  const source = document.getElementById("usage-chart-data");
  const canvas = document.getElementById("usage-chart");
  if (!source || !canvas || !window.Chart) {
    return;
  }
  const data = JSON.parse(source.textContent);
  const palette = ["#3b5bdb", "#2b8a3e", "#e8590c", "#9c36b5", "#1098ad", "#c92a2a", "#5c940d", "#862e9c"];
  new window.Chart(canvas, {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: data.series.map(function (series, index) {
        return { label: series.label, data: series.data, backgroundColor: palette[index % palette.length] };
      }),
    },
    options: {
      animation: false,
      maintainAspectRatio: false,
      scales: { x: { stacked: true }, y: { stacked: true, title: { display: true, text: "tokens" } } },
    },
  });
});
