/* The desk's live updates. The page's root element names the fragment to refresh (data-live-url, swapped into
   data-live-target) and, on a conversation page, which conversation it shows (data-conversation).

   The socket (ws/inbox/) only says *that* something changed (ids and states, never text); the fragment is fetched
   over HTTP, where the admin's scoping applies. Reconnects with backoff, except after 4400/4401/4403 (refused: a
   reload would not help). While the socket is down the page polls, so nothing is missed. */
(function () {
  "use strict";
  const root = document.querySelector("[data-live-url]");
  if (!root) return;
  const target = document.getElementById(root.dataset.liveTarget);
  const conversation = root.dataset.conversation ? Number(root.dataset.conversation) : null;
  const status = document.getElementById("live-status");
  const POLL_MS = 20000;
  let socket = null, backoff = 1000, refreshTimer = null, pollTimer = null, inFlight = false, again = false;

  function setStatus(state) {
    if (!status) return;
    status.dataset.state = state;
    status.textContent = state === "on" ? status.dataset.on : status.dataset.off;
  }

  function transcriptAtBottom() {
    const box = document.getElementById("transcript");
    return !box || box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  }

  function scrollTranscript() {
    const box = document.getElementById("transcript");
    if (box) box.scrollTop = box.scrollHeight;
  }

  async function refresh() {
    if (inFlight) { again = true; return; }
    inFlight = true;
    const stick = transcriptAtBottom();
    try {
      const response = await fetch(root.dataset.liveUrl + window.location.search, {
        credentials: "same-origin", headers: { "X-Requested-With": "fetch" },
      });
      if (response.redirected || response.status === 403 || response.status === 401) {
        window.location.reload(); // logged out: the login page says so
        return;
      }
      if (response.ok) {
        target.innerHTML = await response.text();
        if (stick) scrollTranscript();
      }
    } catch (error) {
      /* offline for a moment: the next event or poll tries again */
    } finally {
      inFlight = false;
      if (again) { again = false; schedule(); }
    }
  }

  function schedule() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refresh, 200); // a burst of events costs one fetch
  }

  function poll(on) {
    clearInterval(pollTimer);
    if (on) pollTimer = setInterval(refresh, POLL_MS);
  }

  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    const clinic = root.dataset.clinic ? "?clinic=" + encodeURIComponent(root.dataset.clinic) : "";
    socket = new WebSocket(scheme + "://" + window.location.host + "/ws/inbox/" + clinic);
    socket.addEventListener("open", function () {
      backoff = 1000;
      setStatus("on");
      poll(false);
      schedule(); // whatever changed while connecting
    });
    socket.addEventListener("message", function (event) {
      let data;
      try { data = JSON.parse(event.data); } catch (error) { return; }
      if (conversation === null || data.conversation_id === conversation) schedule();
    });
    socket.addEventListener("close", function (event) {
      setStatus("off");
      poll(true);
      if (event.code === 4400 || event.code === 4401 || event.code === 4403) return;
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 30000);
    });
  }

  document.addEventListener("change", function (event) {
    const select = event.target.closest(".desk-quick");
    if (!select || !select.value) return;
    const box = document.getElementById(select.dataset.target);
    box.value = box.value ? box.value + "\n" + select.value : select.value;
    select.value = "";
    box.focus();
  });
  document.addEventListener("submit", function (event) {
    const button = event.submitter;
    if (button && button.dataset.confirm && !window.confirm(button.dataset.confirm)) event.preventDefault();
  });
  document.addEventListener("keydown", function (event) {
    // Ctrl/⌘+Enter sends from the composer; Enter alone is a new line (messages often have several).
    if (event.target.id === "composer-text" && event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      event.target.form.requestSubmit();
    }
  });

  scrollTranscript();
  connect();
})();
