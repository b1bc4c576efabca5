// Sparklines: each <svg class="spark" data-points="1,2,,4"> gets a line through its points,
// drawn here from the attribute (no library, nothing fetched). An empty item is a minute with no
// data: the line breaks there. The scale is the row's own (0 .. its largest value).
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var WIDTH = 120, HEIGHT = 24, PAD = 2;

  function parse(text) {
    return (text || "").split(",").map(function (item) {
      if (item === "") { return null; }
      var value = Number(item);
      return isFinite(value) ? value : null;
    });
  }

  function draw(svg) {
    var values = parse(svg.getAttribute("data-points"));
    var template = svg.querySelector("polyline");
    if (template) { svg.removeChild(template); }
    var top = 0;
    values.forEach(function (v) { if (v !== null && v > top) { top = v; } });
    var step = values.length > 1 ? (WIDTH - 2 * PAD) / (values.length - 1) : 0;
    var runs = [], run = [];
    values.forEach(function (v, i) {
      if (v === null) {
        if (run.length) { runs.push(run); run = []; }
        return;
      }
      var x = PAD + i * step;
      var y = HEIGHT - PAD - (top > 0 ? (v / top) * (HEIGHT - 2 * PAD) : 0);
      run.push(x.toFixed(1) + "," + y.toFixed(1));
    });
    if (run.length) { runs.push(run); }
    runs.forEach(function (points) {
      if (points.length === 1) {  // a lone minute: a short tick, so it is seen
        var xy = points[0].split(",");
        points = [(Number(xy[0]) - 1).toFixed(1) + "," + xy[1], (Number(xy[0]) + 1).toFixed(1) + "," + xy[1]];
      }
      var line = document.createElementNS(SVG, "polyline");
      line.setAttribute("points", points.join(" "));
      svg.appendChild(line);
    });
    svg.setAttribute("data-drawn", String(runs.length));
  }

  function drawAll() {
    var found = document.querySelectorAll("svg.spark[data-points]");
    for (var i = 0; i < found.length; i++) { draw(found[i]); }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawAll);
  } else {
    drawAll();
  }
})();
