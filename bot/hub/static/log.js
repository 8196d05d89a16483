// Follows a running job's log on its page (server-sent events); without this the page shows
// the log as it was when loaded.
(function () {
  "use strict";
  var log = document.getElementById("log");
  if (!log || log.dataset.finished === "yes" || !window.EventSource) return;
  var state = document.getElementById("job-state");
  var note = document.getElementById("log-note");
  if (note) note.textContent = "Following the log as it is written.";
  var source = new EventSource(log.dataset.events + "?after=" + encodeURIComponent(log.dataset.after));
  function follow(text) {
    var atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.appendChild(document.createTextNode(text + "\n"));
    if (atEnd) log.scrollTop = log.scrollHeight;
  }
  source.addEventListener("log", function (e) { follow(JSON.parse(e.data)); });
  source.addEventListener("state", function (e) {
    var value = JSON.parse(e.data);
    if (state) { state.textContent = value; state.className = "state state-" + value; }
  });
  source.addEventListener("end", function () {
    source.close();
    log.dataset.finished = "yes";
    if (note) note.textContent = "The job has finished.";
  });
})();
