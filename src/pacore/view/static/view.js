// Load a long text when its <details> opens, and hide the reasoning inside <details>.
document.addEventListener("toggle", async (event) => {
  const box = event.target;
  if (!(box instanceof HTMLDetailsElement) || !box.open || !box.dataset.src || box.dataset.loaded) return;
  box.dataset.loaded = "1";
  const target = box.querySelector(".full");
  const reply = await fetch(box.dataset.src);
  const text = reply.ok ? await reply.text() : `(${reply.status}: ${await reply.text()})`;
  const end = box.dataset.plain ? -1 : text.lastIndexOf("</think>");
  target.textContent = "";
  if (end >= 0) {
    const reasoning = document.createElement("details");
    const label = document.createElement("summary");
    label.textContent = `reasoning (${end} characters)`;
    const body = document.createElement("pre");
    body.textContent = text.slice(0, end);
    reasoning.append(label, body);
    target.append(reasoning);
  }
  const rest = document.createElement("pre");
  rest.className = "conclusion";
  rest.textContent = end >= 0 ? text.slice(end + "</think>".length) : text;
  target.append(rest);
}, true);

// The scaling plot: the hovered point's values in a caption.
document.querySelectorAll("svg .pt").forEach((pt) => {
  pt.addEventListener("mouseenter", () => {
    const out = document.getElementById("plot-value");
    if (out) out.textContent = pt.querySelector("title").textContent;
  });
});
