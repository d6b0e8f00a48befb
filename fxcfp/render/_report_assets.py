"""The report's inline style sheet and script (no network: everything ships inside the page)."""

from __future__ import annotations

CSS = """
:root { --ink:#1f2430; --muted:#6b7280; --line:#e3e7ef; --paper:#f6f7fb; --card:#fff;
        --accent:#2f5bd3; --hot:#d6452f; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color:var(--ink); background:var(--paper); }
header.hero { display:flex; flex-wrap:wrap; gap:32px; align-items:flex-start;
              padding:28px 36px; background:#1f2a44; color:#fff; }
header.hero h1 { margin:0 0 6px; font-size:15px; font-weight:600; letter-spacing:.08em;
                 text-transform:uppercase; color:#b9c6ea; }
.prediction { margin:0; font-size:30px; font-weight:700; }
.meta { margin:6px 0 0; color:#c9d2ea; }
table.top5 { border-collapse:collapse; min-width:340px; }
table.top5 th { text-align:left; font-weight:500; color:#b9c6ea; padding:2px 10px 6px 0; }
table.top5 td { padding:3px 10px 3px 0; white-space:nowrap; }
table.top5 tr.target td { font-weight:700; }
.bar { display:inline-block; height:10px; border-radius:5px; background:#7fa2ff;
       vertical-align:middle; }
tr.target .bar { background:#ffb14a; }
main { padding:8px 36px 40px; max-width:1480px; }
section { margin-top:28px; }
h2 { font-size:19px; margin:0 0 10px; }
p.lead { margin:0 0 14px; color:var(--muted); max-width:900px; }
.figures { display:grid; grid-template-columns:minmax(0, max-content) minmax(0, 1fr); gap:20px;
           align-items:start; }
@media (max-width: 900px) { .figures, .graph-layout { grid-template-columns:minmax(0, 1fr); } }
figure { margin:0; min-width:0; background:var(--card); border:1px solid var(--line); border-radius:10px;
         padding:12px; }
figure img { display:block; max-width:100%; max-height:82vh; width:auto; height:auto; }
figcaption { margin-top:8px; color:var(--muted); font-size:12.5px; }
.cards { display:grid; grid-template-columns:repeat(auto-fill, minmax(270px, 1fr)); gap:16px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:12px; }
.card h3 { margin:0; font-size:14px; word-break:break-all; }
.card .caption { color:var(--muted); font-size:12.5px; margin:2px 0 8px; }
.card img.anim { width:100%; image-rendering:auto; border-radius:6px; display:block; }
.level-index { display:inline-block; min-width:22px; padding:0 6px; margin-right:6px;
               border-radius:9px; background:#e8eefc; color:var(--accent); font-size:12px;
               text-align:center; }
svg.profile { display:block; margin-top:8px; }
svg.profile .bar { fill:#9bb3ef; }
svg.profile .bar.peak { fill:var(--hot); }
svg.profile .axis { stroke:#c7cedc; }
svg.profile .tick { font-size:10px; fill:var(--muted); }
.graph-layout { display:grid; grid-template-columns:minmax(0, 1fr) 330px; gap:18px;
                align-items:start; }
.graph-box { background:var(--card); border:1px solid var(--line); border-radius:10px;
             padding:6px; overflow:auto; }
#graph text { font-size:10px; fill:var(--muted); }
#graph .row-title { font-size:12px; fill:var(--ink); font-weight:600; }
#graph .row-caption { font-size:10.5px; }
#graph .class-node rect { fill:#1f2a44; }
#graph .class-node text { fill:#fff; font-size:12px; font-weight:600; }
#graph .edge { fill:none; stroke:#8b93a7; stroke-width:1.2; }
#graph .edge.active { stroke:var(--hot); stroke-opacity:1 !important; stroke-width:2.4; }
#graph .root-edge { stroke:#aab3c8; stroke-dasharray:3 3; }
#graph .kernel circle { stroke:#fff; stroke-width:1.5; transition:opacity .15s; }
#graph a.kernel { cursor:pointer; }
#graph a.kernel:hover circle { stroke:var(--ink); }
#graph .kernel.selected circle { stroke:var(--ink); stroke-width:3.5; }
#graph .kernel.child circle { stroke:var(--hot); stroke-width:3; }
#graph .kernel.dim { opacity:.3; }
aside.panel { position:sticky; top:12px; background:var(--card); border:1px solid var(--line);
              border-radius:10px; padding:14px; min-height:200px; }
.kernel-panel h3 { margin:0 0 2px; font-size:15px; word-break:break-all; }
.kernel-panel img { width:100%; border-radius:6px; display:block; margin:8px 0; }
.kernel-panel ul { margin:4px 0 10px; padding-left:18px; max-height:220px; overflow:auto; }
.kernel-panel li { margin:1px 0; }
.kernel-panel .score { color:var(--muted); font-size:12px; }
.kernel-panel h4 { margin:10px 0 0; font-size:12.5px; text-transform:uppercase;
                   letter-spacing:.05em; color:var(--muted); }
a { color:var(--accent); }
#kernel-hint { color:var(--muted); }
table.layers { border-collapse:collapse; background:var(--card); border:1px solid var(--line); }
table.layers th, table.layers td { padding:5px 12px; border-bottom:1px solid var(--line);
                                  text-align:left; }
table.layers td.num { text-align:right; font-variant-numeric:tabular-nums; }
pre.summary { background:var(--card); border:1px solid var(--line); border-radius:10px;
              padding:12px; overflow:auto; font-size:12px; }
footer { margin-top:26px; color:var(--muted); font-size:12px; }
footer code { font-size:11.5px; }
"""

# The page's only behaviour: `#kernel=<layer>:<channel>` selects a kernel (clicks on the graph
# are plain links to that address, so a selection can be bookmarked or opened from a test), and
# once everything has loaded the body records whether every image decoded.
SCRIPT = """
(function () {
  "use strict";
  var body = document.body;
  function keyFromHash() {
    var match = /^#kernel=(.*)$/.exec(window.location.hash);
    if (!match) { return null; }
    // a hand-typed address may hold a stray '%': take it as written rather than fail
    try { return decodeURIComponent(match[1]); } catch (error) { return match[1]; }
  }
  function select(key) {
    var found = false;
    document.querySelectorAll(".kernel-panel").forEach(function (panel) {
      var on = panel.getAttribute("data-node") === key;
      panel.hidden = !on;
      if (on) { found = true; }
    });
    var selectedId = null;
    var kernels = document.querySelectorAll("#graph .kernel");
    kernels.forEach(function (el) {
      if (el.getAttribute("data-node") === key) { selectedId = el.id; }
    });
    var children = {};
    document.querySelectorAll("#graph .edge").forEach(function (edge) {
      var on = selectedId !== null && edge.getAttribute("data-from") === selectedId;
      edge.classList.toggle("active", on);
      if (on) { children[edge.getAttribute("data-to")] = true; }
    });
    kernels.forEach(function (el) {
      var chosen = el.id === selectedId;
      el.classList.toggle("selected", chosen);
      el.classList.toggle("child", children[el.id] === true);
      el.classList.toggle("dim", selectedId !== null && !chosen && children[el.id] !== true);
    });
    document.getElementById("kernel-hint").hidden = found;
    if (found) { body.setAttribute("data-selected-kernel", key); }
    else { body.removeAttribute("data-selected-kernel"); }
    return found;
  }
  window.fxcfpSelectKernel = select;
  window.addEventListener("hashchange", function () { select(keyFromHash()); });
  window.addEventListener("load", function () {
    var images = Array.prototype.slice.call(document.images);
    var decoded = images.filter(function (img) { return img.complete && img.naturalWidth > 0; });
    body.setAttribute("data-image-count", String(images.length));
    body.setAttribute("data-images-loaded", String(decoded.length === images.length));
    var key = keyFromHash();
    if (key !== null) { select(key); }
  });
})();
"""
