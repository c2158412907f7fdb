// Runs before the first paint (not deferred): applies a theme chosen earlier, so a page never
// flashes the other one. Without a stored choice the CSS follows prefers-color-scheme.
(function () {
  try {
    var t = localStorage.getItem("gw-theme");
    if (t === "dark" || t === "light") document.documentElement.dataset.theme = t;
  } catch (e) { /* storage blocked: follow the system */ }
})();
