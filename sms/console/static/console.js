// smsctl console: live parts, confirmations, select-all and copy buttons.
// No inline script anywhere: the CSP allows this file only.
(function () {
  'use strict';
  var announcer = document.getElementById('announcer');

  function focusables(el) {
    return Array.prototype.slice.call(el.querySelectorAll('a[href], button, input, select, textarea, summary'));
  }

  // A [data-live] element is fetched again every data-every ms while the
  // page is visible and swapped when it changed; a fragment without
  // data-live (a final message) ends the polling. 401: the session ended.
  function live(el) {
    var url = el.getAttribute('data-live');
    var every = parseInt(el.getAttribute('data-every'), 10) || 2000;
    var last = null, failures = 0;
    function again(ms) { setTimeout(tick, ms); }
    function tick() {
      if (!document.body.contains(el)) return;
      if (document.hidden) return again(every);
      fetch(url, {credentials: 'same-origin', cache: 'no-store', headers: {'Accept': 'text/html'}})
        .then(function (r) {
          if (r.status === 401) { document.getElementById('stale').hidden = false; return null; }
          if (!r.ok) throw new Error('HTTP ' + r.status);
          return r.text();
        })
        .then(function (html) {
          if (html === null) return;
          failures = 0;
          if (html !== last) {
            last = html;
            var t = document.createElement('template');
            t.innerHTML = html.trim();
            var next = t.content.firstElementChild;
            if (!next) return again(every);
            var i = focusables(el).indexOf(document.activeElement);
            var said = el.querySelector('[data-announce]');
            el.replaceWith(next);
            el = next;
            if (i >= 0 && focusables(el)[i]) focusables(el)[i].focus();
            var now = el.querySelector('[data-announce]');
            if (announcer && now && (!said || said.textContent !== now.textContent)) announcer.textContent = now.textContent;
          }
          if (el.hasAttribute('data-live')) again(every);
        })
        .catch(function () { failures++; again(Math.min(every * Math.pow(2, failures), 60000)); });
    }
    again(every);
  }

  document.addEventListener('DOMContentLoaded', function () {
    Array.prototype.forEach.call(document.querySelectorAll('[data-live]'), live);
  });

  // Forms with data-confirm ask first (delegated: live parts are swapped).
  document.addEventListener('submit', function (e) {
    var msg = e.target.getAttribute && e.target.getAttribute('data-confirm');
    if (msg && !window.confirm(msg)) e.preventDefault();
  });

  document.addEventListener('click', function (e) {
    var b = e.target.closest && e.target.closest('[data-copy]');
    if (!b) return;
    var input = document.getElementById(b.getAttribute('data-copy'));
    input.select();
    if (navigator.clipboard) navigator.clipboard.writeText(input.value);
    b.textContent = 'Copied';
  });

  document.addEventListener('change', function (e) {
    var name = e.target.getAttribute && e.target.getAttribute('data-select-all');
    if (!name) return;
    Array.prototype.forEach.call(e.target.form.querySelectorAll('input[name="' + name + '"]'), function (box) {
      box.checked = e.target.checked;
    });
  });
})();
