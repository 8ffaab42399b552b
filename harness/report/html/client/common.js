// Shared by every qcrash page, inlined after d3 and Observable Plot: reads the
// page's embedded data and draws charts into <figure> placeholders, redrawn
// when the window's width changes (narrow windows get narrow charts).
'use strict';
window.qcrash = (function () {
  var el = document.getElementById('qcrash-data');
  var data = el ? JSON.parse(el.textContent) : {};
  var verdicts = data.verdicts || {};
  var vDomain = Object.keys(verdicts);
  var redraws = [];

  /** Colour and shape scales for verdicts, with a legend that shows the word and symbol. */
  function verdictScales(present) {
    var domain = vDomain.filter(function (k) {
      return !present || present.indexOf(k) >= 0;
    });
    var label = function (k) {
      return verdicts[k] ? verdicts[k].symbol + ' ' + verdicts[k].label : k;
    };
    return {
      color: {
        domain: domain,
        range: domain.map(function (k) {
          return verdicts[k].color;
        }),
      },
      symbol: {
        domain: domain,
        range: domain.map(function (k) {
          return verdicts[k].plotSymbol;
        }),
        legend: true,
        tickFormat: label,
      },
    };
  }

  function present(rows, key) {
    var seen = [];
    rows.forEach(function (r) {
      if (seen.indexOf(r[key]) < 0) seen.push(r[key]);
    });
    return seen;
  }

  /** Longest label in pixels, roughly, for a left margin that fits the lane names. */
  function marginFor(labels, width) {
    var n = labels.reduce(function (m, s) {
      return Math.max(m, String(s).length);
    }, 0);
    return Math.min(360, (width || 800) * 0.45, 12 + n * 6.8);
  }

  function draw(figureId, make) {
    var fig = document.getElementById(figureId);
    if (!fig) return;
    var host = fig.querySelector('.plot-host');
    var lastWidth = -1;
    var render = function () {
      var width = Math.max(260, Math.floor(host.clientWidth || fig.clientWidth || 640));
      if (width === lastWidth) return;
      lastWidth = width;
      try {
        host.replaceChildren(make(width));
        fig.dataset.drawn = 'true';
      } catch (e) {
        host.textContent = 'This chart could not be drawn: ' + (e && e.message);
        host.classList.add('chart-error');
        console.error(e);
      }
    };
    render();
    redraws.push(render);
  }

  var timer;
  window.addEventListener('resize', function () {
    clearTimeout(timer);
    timer = setTimeout(function () {
      redraws.forEach(function (r) {
        r();
      });
    }, 150);
  });

  return { data: data, verdicts: verdicts, verdictScales: verdictScales, present: present, marginFor: marginFor, draw: draw };
})();
