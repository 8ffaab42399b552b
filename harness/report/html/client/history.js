// history.html: scenario x run verdict grid drawn with Observable Plot (the
// table below it has the same content without JavaScript).
'use strict';
(function () {
  var q = window.qcrash;
  var d = q.data;
  if (!d.cells || !d.cells.length) return;
  q.draw('chart-history', function (width) {
    var scenarios = q.present(d.cells, 'scenario');
    var runs = d.runs.map(function (r) {
      return r.run;
    });
    var s = q.verdictScales(q.present(d.cells, 'verdict'));
    var margin = q.marginFor(scenarios, width);
    return Plot.plot({
      // Cells no wider than a badge: a history of three runs should not fill the screen.
      width: Math.min(width, margin + 40 + 140 * runs.length),
      height: 70 + 34 * scenarios.length,
      marginLeft: margin,
      style: { fontSize: '12px' },
      x: { label: null, domain: runs, axis: 'top' },
      y: { label: null, domain: scenarios },
      color: Object.assign({ legend: true, tickFormat: s.symbol.tickFormat }, s.color),
      marks: [
        Plot.cell(d.cells, {
          x: 'run',
          y: 'scenario',
          fill: 'verdict',
          inset: 1,
          title: function (c) {
            return c.scenario + ' in ' + c.run + ' (' + c.runId + ')\n' + c.text;
          },
        }),
        Plot.text(d.cells, { x: 'run', y: 'scenario', text: 'text', fill: 'white' }),
      ],
    });
  });
})();
