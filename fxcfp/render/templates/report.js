// The report's behaviour: `#kernel=<layer>:<channel>` selects a kernel (clicks on the graph are
// plain links to that address, so a selection can be bookmarked or opened from a test); the
// graph pans, zooms and folds rows; one slider holds every level's video on one frame. Once
// everything has loaded the body records whether every image and video decoded.
(function () {
  "use strict";
  var body = document.body;
  var svg = document.getElementById("graph");
  var viewport = document.getElementById("viewport");
  // adjacency from the edges, built once: a click then touches only what it lights
  var byId = {}, byKey = {}, out = {}, into = {}, panels = {};
  document.querySelectorAll("#graph .kernel").forEach(function (el) {
    byId[el.id] = el; byKey[el.getAttribute("data-node")] = el;
  });
  document.querySelectorAll("#graph .edge").forEach(function (edge) {
    var from = edge.getAttribute("data-from"), to = edge.getAttribute("data-to");
    (out[from] = out[from] || []).push(edge);
    (into[to] = into[to] || []).push(edge);
  });
  document.querySelectorAll(".kernel-panel").forEach(function (panel) {
    panels[panel.getAttribute("data-node")] = panel;
  });
  var lit = [];
  function clear() {
    lit.forEach(function (el) { el.classList.remove("selected", "child", "parent", "active"); });
    lit = [];
    if (svg) { svg.classList.remove("has-selection"); }
    document.querySelectorAll("#graph .dim").forEach(function (el) { el.classList.remove("dim"); });
  }
  function light(el, name) { el.classList.add(name); lit.push(el); }
  function keyFromHash() {
    var match = /^#kernel=(.*)$/.exec(window.location.hash);
    if (!match) { return null; }
    // a hand-typed address may hold a stray '%': take it as written rather than fail
    try { return decodeURIComponent(match[1]); } catch (error) { return match[1]; }
  }
  var shownPanel = null;
  function select(key) {
    if (shownPanel) { shownPanel.hidden = true; shownPanel = null; }
    clear();
    var panel = key === null ? undefined : panels[key];
    if (panel) { panel.hidden = false; shownPanel = panel; }
    var node = key === null ? undefined : byKey[key];
    if (node) {
      light(node, "selected");
      (out[node.id] || []).forEach(function (edge) {
        light(edge, "active");
        var child = byId[edge.getAttribute("data-to")];
        if (child) { light(child, "child"); }
      });
      (into[node.id] || []).forEach(function (edge) {
        light(edge, "parent");
        var parent = byId[edge.getAttribute("data-from")];
        if (parent) { light(parent, "parent"); }
      });
    }
    document.getElementById("kernel-hint").hidden = Boolean(panel);
    if (panel) { body.setAttribute("data-selected-kernel", key); }
    else { body.removeAttribute("data-selected-kernel"); }
    return Boolean(panel);
  }
  window.fxcfpSelectKernel = select;
  window.addEventListener("hashchange", function () { select(keyFromHash()); });

  // --- pan and zoom: one transform on the viewport group --------------------------------------
  var view = { x: 0, y: 0, k: 1 };
  function apply() {
    viewport.setAttribute("transform",
      "translate(" + view.x.toFixed(1) + " " + view.y.toFixed(1) + ") scale(" + view.k.toFixed(4) + ")");
  }
  function toGraph(event) {
    var box = svg.getBoundingClientRect();
    var w = Number(svg.getAttribute("data-width")), h = Number(svg.getAttribute("data-height"));
    var scale = Math.min(box.width / w, box.height / h) || 1;
    // preserveAspectRatio xMidYMin meet: the drawing is centred across, at the top
    var left = box.left + (box.width - w * scale) / 2, top = box.top;
    return { x: (event.clientX - left) / scale, y: (event.clientY - top) / scale, scale: scale };
  }
  function zoom(factor, at) {
    var k = Math.max(0.2, Math.min(40, view.k * factor));
    factor = k / view.k;
    view.x = at.x - (at.x - view.x) * factor;
    view.y = at.y - (at.y - view.y) * factor;
    view.k = k;
    apply();
  }
  window.fxcfpZoom = zoom;
  if (svg) {
    var w0 = Number(svg.getAttribute("data-width")), h0 = Number(svg.getAttribute("data-height"));
    svg.addEventListener("wheel", function (event) {
      event.preventDefault();
      zoom(Math.exp(-event.deltaY * 0.0015), toGraph(event));
    }, { passive: false });
    var drag = null;
    svg.addEventListener("pointerdown", function (event) {
      if (event.button !== 0) { return; }
      drag = { x: event.clientX, y: event.clientY, vx: view.x, vy: view.y, moved: false,
               scale: toGraph(event).scale };
    });
    window.addEventListener("pointermove", function (event) {
      if (!drag) { return; }
      var dx = event.clientX - drag.x, dy = event.clientY - drag.y;
      if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 4) { return; }
      drag.moved = true;
      svg.classList.add("dragging");
      view.x = drag.vx + dx / drag.scale;
      view.y = drag.vy + dy / drag.scale;
      apply();
    });
    window.addEventListener("pointerup", function () {
      if (drag && drag.moved) {
        // a drag that ends on a kernel is not a click on it
        var swallow = function (event) { event.preventDefault(); event.stopPropagation(); };
        svg.addEventListener("click", swallow, { capture: true, once: true });
        setTimeout(function () { svg.removeEventListener("click", swallow, { capture: true }); }, 0);
      }
      drag = null;
      svg.classList.remove("dragging");
    });
    document.querySelectorAll("[data-zoom]").forEach(function (button) {
      button.addEventListener("click", function () {
        var how = button.getAttribute("data-zoom"), centre = { x: w0 / 2, y: h0 / 2 };
        if (how === "fit") { view = { x: 0, y: 0, k: 1 }; apply(); }
        else { zoom(how === "in" ? 1.4 : 1 / 1.4, centre); }
      });
    });
    // --- folding rows: a row's kernels and every edge touching them hide ----------------------
    function fold(title, folded) {
      title.classList.toggle("folded", folded);
      title.getAttribute("data-ids").split(" ").forEach(function (id) {
        if (!id) { return; }
        byId[id].classList.toggle("folded-out", folded);
        (out[id] || []).concat(into[id] || []).forEach(function (edge) {
          var hidden = byId[edge.getAttribute("data-from")].classList.contains("folded-out") ||
                       byId[edge.getAttribute("data-to")].classList.contains("folded-out");
          edge.classList.toggle("folded-out", hidden);
        });
      });
    }
    var titles = document.querySelectorAll("#graph .row-title");
    titles.forEach(function (title) {
      title.addEventListener("click", function () { fold(title, !title.classList.contains("folded")); });
    });
    document.querySelectorAll("[data-fold]").forEach(function (button) {
      button.addEventListener("click", function () {
        var all = button.getAttribute("data-fold") === "all";
        // the class row stays: a fully folded graph still says what it explains
        titles.forEach(function (title, index) { if (index > 0) { fold(title, all); } });
      });
    });
  }

  // --- one frame for every level ----------------------------------------------------------------
  var videos = Array.prototype.slice.call(document.querySelectorAll("video.anim"));
  var slider = document.getElementById("frame");
  var play = document.getElementById("play");
  var fps = Number(body.getAttribute("data-fps")) || 8;
  function mark(t) {
    document.querySelectorAll("svg.profile .bar").forEach(function (bar) {
      bar.classList.toggle("now", t !== null && Number(bar.getAttribute("data-t")) === t);
    });
  }
  if (slider && play) {
    slider.addEventListener("input", function () {
      var t = Number(slider.value);
      videos.forEach(function (video) { video.pause(); video.currentTime = (t + 0.5) / fps; });
      play.textContent = "play";
      document.getElementById("frame-out").textContent = String(t);
      mark(t);
    });
    play.addEventListener("click", function () {
      var playing = play.textContent === "pause";
      videos.forEach(function (video) {
        if (playing) { video.pause(); }
        else { video.currentTime = 0; var started = video.play(); if (started) { started.catch(function () {}); } }
      });
      play.textContent = playing ? "play" : "pause";
      document.getElementById("frame-out").textContent = playing ? "paused" : "all playing";
      mark(null);
    });
  }

  window.addEventListener("load", function () {
    var images = Array.prototype.slice.call(document.images);
    var decoded = images.filter(function (img) { return img.complete && img.naturalWidth > 0; });
    body.setAttribute("data-image-count", String(images.length));
    body.setAttribute("data-images-loaded", String(decoded.length === images.length));
    body.setAttribute("data-video-count", String(videos.length));
    var key = keyFromHash();
    if (key !== null) { select(key); }
    if (svg) { fitWidth(); }
  });
  // a tall graph (a deep network) starts at its top, as wide as the box, rather than tiny
  function fitWidth() {
    var box = svg.getBoundingClientRect();
    var w = Number(svg.getAttribute("data-width")), h = Number(svg.getAttribute("data-height"));
    var scale = Math.min(box.width / w, box.height / h);
    if (!(scale > 0) || box.width / w <= scale * 1.05) { return; }
    // the drawing is centred across: move its left edge to the box's (its top is at the top)
    view.k = (box.width / w) / scale;
    view.x = -(box.width / scale - w) / 2;
    view.y = 0;
    apply();
  }
  // videos decode after load: count those that show a frame
  var ready = 0;
  videos.forEach(function (video) {
    function done() { ready += 1; body.setAttribute("data-videos-ready", String(ready)); }
    if (video.readyState >= 2) { done(); } else { video.addEventListener("loadeddata", done, { once: true }); }
    video.addEventListener("error", function () { body.setAttribute("data-video-error", video.getAttribute("aria-label")); });
  });
})();
