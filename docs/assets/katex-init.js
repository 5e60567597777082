// Render every arithmatex span/div with the vendored KaTeX (no network needed).
function gooseRenderMath() {
  document.querySelectorAll(".arithmatex").forEach(function (el) {
    renderMathInElement(el, {
      delimiters: [
        { left: "\\(", right: "\\)", display: false },
        { left: "\\[", right: "\\]", display: true },
      ],
      throwOnError: false,
    });
  });
}
if (typeof document$ !== "undefined") {
  document$.subscribe(gooseRenderMath);
} else {
  document.addEventListener("DOMContentLoaded", gooseRenderMath);
}
