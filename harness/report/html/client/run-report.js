// report.html: the matrix filter (verdict checkboxes, scenario select) and the
// run's charts. The tables work without this script; it only adds to them.
'use strict';
(function () {
  var q = window.qcrash;
  var d = q.data;

  // ---- matrix filter ----
  var form = document.getElementById('matrix-filter');
  if (form) {
    form.hidden = false;
    var rows = Array.prototype.slice.call(document.querySelectorAll('#matrix tbody tr'));
    var apply = function () {
      var wanted = Array.prototype.slice.call(form.querySelectorAll('input[name=verdict]:checked')).map(function (i) {
        return i.value;
      });
      var scenario = form.elements.scenario.value;
      var shown = 0;
      rows.forEach(function (tr) {
        var any = false;
        tr.querySelectorAll('a[data-verdict]').forEach(function (a) {
          var ok = wanted.indexOf(a.dataset.verdict) >= 0;
          a.hidden = !ok;
          any = any || ok;
        });
        var visible = any && (!scenario || tr.dataset.scenario === scenario);
        tr.hidden = !visible;
        if (visible) shown++;
      });
      document.getElementById('matrix-count').textContent = shown + ' of ' + rows.length + ' rows shown';
    };
    form.addEventListener('change', apply);
    form.addEventListener('submit', function (e) {
      e.preventDefault();
    });
    apply();
  }

  // ---- charts ----
  var caseTitle = function (r, extra) {
    return r.caseId + '\n' + (q.verdicts[r.verdict] ? q.verdicts[r.verdict].label : r.verdict) + extra;
  };

  // One lane per scenario step, one dot per case, shape and colour its verdict:
  // the crash-point charts differ only in their x axis and titles.
  var laneDots = function (width, rows, o) {
    var lanes = q.present(
      rows.map(function (r) {
        return { l: o.lane(r) };
      }),
      'l',
    );
    var s = q.verdictScales(q.present(rows, 'verdict'));
    return Plot.plot({
      width: width,
      height: 70 + 32 * lanes.length,
      marginLeft: q.marginFor(lanes, width),
      style: { fontSize: '12px' },
      x: o.axis,
      y: { label: null, domain: lanes },
      color: s.color,
      symbol: s.symbol,
      marks: (o.under || []).concat([
        Plot.dot(rows, { x: o.x, y: o.lane, stroke: 'verdict', symbol: 'verdict', r: 6, strokeWidth: 2, title: o.title }),
      ]),
    });
  };

  if (d.crashPoints && d.crashPoints.length) {
    q.draw('chart-crash-points', function (width) {
      return laneDots(width, d.crashPoints, {
        lane: function (r) {
          return r.scenario + ': ' + r.step;
        },
        x: 'atMs',
        axis: { label: "ms after the step's start marker", grid: true, zero: true },
        under: [Plot.ruleX([0], { stroke: '#999' })],
        title: function (r) {
          return caseTitle(r, ' at ' + r.atMs + ' ms');
        },
      });
    });
  }

  if (d.crashIndex && d.crashIndex.length) {
    q.draw('chart-crash-index', function (width) {
      var maxIndex = Math.max.apply(
        null,
        d.crashIndex.map(function (r) {
          return r.index;
        }),
      );
      return laneDots(width, d.crashIndex, {
        lane: function (r) {
          return r.scenario + ': ' + r.step + ' (' + r.indexKind + ')';
        },
        x: 'index',
        axis: {
          label: 'breakpoint hit / jbd2 commit index',
          grid: true,
          domain: [0, maxIndex + 1],
          ticks: Math.min(maxIndex + 1, 10),
          tickFormat: 'd',
        },
        title: function (r) {
          return caseTitle(r, ' at ' + r.indexKind + ' ' + r.index);
        },
      });
    });
  }

  if (d.phases && d.phases.length) {
    q.draw('chart-phases', function (width) {
      var cases = q.present(d.phases, 'caseId');
      var totals = {};
      d.phases.forEach(function (r) {
        totals[r.caseId] = (totals[r.caseId] || 0) + r.ms;
      });
      var max = Math.max.apply(
        null,
        Object.keys(totals).map(function (k) {
          return totals[k];
        }),
      );
      var abbr = function (r) {
        return r.ms >= max * 0.15 ? r.phase.split(' ')[0] : '';
      };
      return Plot.plot({
        width: width,
        height: 70 + 26 * cases.length,
        marginLeft: q.marginFor(cases, width),
        style: { fontSize: '12px' },
        x: { label: 'ms', grid: true },
        y: { label: null, domain: cases },
        color: { legend: true, scheme: 'tableau10' },
        marks: [
          Plot.barX(d.phases, {
            x: 'ms',
            y: 'caseId',
            fill: 'phase',
            title: function (r) {
              return r.caseId + '\n' + r.phase + ': ' + Math.round(r.ms) + ' ms';
            },
          }),
          Plot.text(d.phases, Plot.stackX({ x: 'ms', y: 'caseId', z: 'phase', text: abbr, fill: 'white' })),
          Plot.ruleX([0]),
        ],
      });
    });
  }

  if (d.logStates && d.logStates.length) {
    q.draw('chart-log-epochs', function (width) {
      var s = q.verdictScales(q.present(d.logStates, 'verdict'));
      return Plot.plot({
        width: width,
        height: 320,
        style: { fontSize: '12px' },
        x: { label: 'flush epoch', grid: true, tickFormat: 'd' },
        y: { label: 'states', grid: true },
        fy: { label: null },
        color: s.color,
        symbol: s.symbol,
        marks: [
          Plot.dot(
            d.logStates,
            Plot.stackY2({
              x: 'epoch',
              y: function () {
                return 1;
              },
              fy: 'stateKind',
              stroke: 'verdict',
              symbol: 'verdict',
              r: 4,
              strokeWidth: 1.5,
              title: function (r) {
                return caseTitle(r, ', ' + r.stateKind + ' state of epoch ' + r.epoch);
              },
            }),
          ),
        ],
      });
    });
  }
})();
