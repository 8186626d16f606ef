// chaingrad's stepper: Step, Back and Reset through backpropagation, one node's _backward() at a time.
// Every number on the page was computed in Python, on the real graph; this script only shows the
// steps (the JSON in the page's script.cg-data) one after another on the SVG picture.
function chaingradStepper(root) {
  "use strict";
  if (!root || root.dataset.ready) return; // a notebook may run an output's script again
  root.dataset.ready = "1";
  var data = JSON.parse(root.querySelector("script.cg-data").textContent);
  var steps = data.steps;

  // The picture's parts by their Graphviz names: v<i> a value, o<i> the op that made it, "a->b" an edge.
  var parts = {};
  root.querySelectorAll("svg g.node, svg g.edge").forEach(function (g) {
    var title = g.querySelector("title");
    if (title) parts[title.textContent] = g;
  });
  var gradText = data.start.map(function (_, i) {
    var g = parts["v" + i];
    if (!g) return null;
    var texts = g.querySelectorAll("text");
    for (var k = 0; k < texts.length; k++) {
      if (texts[k].textContent.trim().indexOf("grad ") === 0) return texts[k];
    }
    return null;
  });

  var at = 0; // how many steps are applied
  var grads = data.start.slice();
  var marked = [];
  var buttons = {
    back: root.querySelector("button.cg-back"),
    step: root.querySelector("button.cg-step"),
    reset: root.querySelector("button.cg-reset"),
  };

  function setGrad(i, text) {
    grads[i] = text;
    if (gradText[i]) gradText[i].textContent = text;
  }

  function mark(name, cls) {
    var g = parts[name];
    if (g) {
      g.classList.add(cls);
      marked.push([g, cls]);
    }
  }

  function show() {
    marked.forEach(function (m) { m[0].classList.remove(m[1]); });
    marked = [];
    var title, lines;
    if (at === 0) {
      mark("v" + data.root, "cg-node");
      title = data.intro[0];
      lines = [data.intro[1]];
    } else {
      var s = steps[at - 1];
      mark("v" + s.node, "cg-node");
      mark("o" + s.node, "cg-node");
      mark("o" + s.node + "->v" + s.node, "cg-flow");
      s.inputs.forEach(function (j) {
        mark("v" + j, "cg-input");
        mark("v" + j + "->o" + s.node, "cg-flow");
      });
      s.changes.forEach(function (c) {
        if (gradText[c[0]]) {
          gradText[c[0]].classList.add("cg-changed");
          marked.push([gradText[c[0]], "cg-changed"]);
        }
      });
      title = s.title;
      lines = s.lines.slice();
      if (at === steps.length) lines.push("", data.done);
    }
    root.querySelector(".cg-title").textContent = title;
    root.querySelector(".cg-lines").textContent = lines.join("\n");
    root.querySelector(".cg-counter").textContent = "step " + at + " of " + steps.length;
    root.dataset.step = String(at);
    buttons.back.disabled = at === 0;
    buttons.reset.disabled = at === 0;
    buttons.step.disabled = at === steps.length;
  }

  function step() {
    if (at === steps.length) return;
    steps[at].changes.forEach(function (c) { setGrad(c[0], c[2]); });
    at += 1;
    show();
  }

  function back() {
    if (at === 0) return;
    at -= 1;
    steps[at].changes.forEach(function (c) { setGrad(c[0], c[1]); });
    show();
  }

  function reset() {
    while (at > 0) back();
    show();
  }

  buttons.step.addEventListener("click", step);
  buttons.back.addEventListener("click", back);
  buttons.reset.addEventListener("click", reset);
  var keys = { ArrowRight: step, ArrowDown: step, ArrowLeft: back, ArrowUp: back, Home: reset };
  (data.keys === "document" ? document : root).addEventListener("keydown", function (event) {
    var action = keys[event.key];
    if (!action || event.altKey || event.ctrlKey || event.metaKey) return;
    event.preventDefault();
    action();
  });
  data.start.forEach(function (text, i) { setGrad(i, text); });
  show();
}
