// Live updates for /tail: the page names its event stream in data-stream; each event
// (one message as JSON) is prepended to the list. Text is set with textContent only,
// never parsed as HTML: a message can hold any text. Without this script the page is
// still complete (it lists the latest matching messages when rendered).
"use strict";
(function () {
  var list = document.querySelector("ol[data-stream]");
  if (!list || !window.EventSource) { return; }
  var status = document.getElementById("live-status");
  var keep = 200;
  var say = function (text) { if (status) { status.textContent = text; } };
  var field = function (message, names) {
    for (var i = 0; i < names.length; i++) {
      var value = message[names[i]];
      if (value !== undefined && value !== null && value !== "") { return String(value); }
    }
    return "";
  };
  var show = function (data) {
    var message;
    try { message = JSON.parse(data); } catch (e) { message = { subject: data }; }
    var item = document.createElement("li");
    item.className = "live";
    var subject = document.createElement("div");
    subject.className = "subject";
    subject.textContent = field(message, ["subject", "text", "title", "body"]) || "(no subject)";
    var meta = document.createElement("div");
    meta.className = "muted";
    meta.textContent = [field(message, ["key"]), field(message, ["plugin"]), field(message, ["id"])].filter(Boolean).join(" · ");
    var raw = document.createElement("code");
    raw.textContent = JSON.stringify(message);
    item.appendChild(subject);
    item.appendChild(meta);
    item.appendChild(raw);
    list.insertBefore(item, list.firstChild);
    while (list.children.length > keep) { list.removeChild(list.lastChild); }
    var empty = document.getElementById("tail-empty");
    if (empty) { empty.remove(); }
  };
  var source = new EventSource(list.getAttribute("data-stream"));
  source.onopen = function () { say("live: connected"); };
  source.onerror = function () { say("live: reconnecting…"); };
  source.onmessage = function (event) { show(event.data); };
})();
