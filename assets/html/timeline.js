// racelab --html: draws the page from the racelab-data block. No network, no libraries.
// When it has drawn everything, it sets data-ready="yes" on <body> (a test looks for it).
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('racelab-data').textContent);
  var app = document.getElementById('app');
  var tip = document.getElementById('tip');

  var COLORS = {
    start: '#9aa5b1', read: '#2f80ed', think: '#f2c94c', 'lock-wait': '#9b51e0',
    write: '#27ae60', retry: '#f2994a', lost: '#d64545', failed: '#8d6e63', conflict: '#f2994a'
  };
  var WORDS = {
    start: 'starting the update (taking the lock, where the strategy locks)',
    read: 'read', think: 'think (between the read and the write)', 'lock-wait': 'waiting for the lock',
    write: 'write', retry: 'retry (from a conflict to the next read)'
  };

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function add(parent) {
    for (var i = 1; i < arguments.length; i++) {
      var kid = arguments[i];
      if (kid === null || kid === undefined) continue;
      parent.appendChild(typeof kid === 'string' ? document.createTextNode(kid) : kid);
    }
    return parent;
  }
  function ms(us) {
    var m = us / 1000;
    if (m >= 1000) return (m / 1000).toFixed(2) + ' s';
    if (m >= 100) return m.toFixed(0) + ' ms';
    if (m >= 10) return m.toFixed(1) + ' ms';
    return m.toFixed(2) + ' ms';
  }
  function num(n) { return n === null || n === undefined ? '?' : String(n); }

  // ---------------------------------------------------------------- run
  function showRun(run) {
    var head = add(el('header'), el('h1', null, 'racelab run'),
      el('p', 'sub', 'seed ' + run.seed_text + ' · Redis ' + run.redis + ' · journey ' + run.journey));
    var overall = el('p', 'verdict ' + (run.ok ? 'ok' : 'fail'), !run.complete
      ? 'the run could not be completed: this is what was observed until then'
      : run.ok ? 'every strategy behaved as expected' : 'a strategy did not behave as expected');
    add(app, head, overall);
    var picker = el('div', 'picker');
    var body = el('section');
    var buttons = [];
    run.strategies.forEach(function (s, i) {
      var b = el('button');
      b.type = 'button';
      var dot = el('span', 'dot' + (s.ok ? '' : ' bad'));
      add(b, dot, s.strategy + (s.lost ? ' · ' + s.lost + ' lost' : ''));
      b.title = s.verdict;
      b.addEventListener('click', function () { choose(i); });
      buttons.push(b);
      picker.appendChild(b);
    });
    if (run.strategies.length > 1) add(app, picker);
    add(app, body);
    function choose(i) {
      buttons.forEach(function (b, k) { b.className = k === i ? 'on' : ''; });
      body.textContent = '';
      showStrategy(body, run.strategies[i]);
    }
    if (run.strategies.length) choose(0);
    else add(app, el('p', null, 'No strategy ran.'));
  }

  function showStrategy(root, s) {
    add(root, el('h2', null, s.strategy + ': ' + s.verdict));
    var stats = el('div', 'stats');
    [['updaters', s.updaters], ['segments', s.segments], ['rounds', s.rounds], ['think', s.think_ms + ' ms'],
     ['acknowledged', s.acknowledged], ['applied', num(s.applied)], ['lost', num(s.lost)],
     ['unknown', s.unknown], ['errors', s.errors], ['retries', s.retries], ['gave up', s.give_ups],
     ['duration', s.duration_ms + ' ms']].forEach(function (p) {
      add(stats, add(el('span'), p[0] + ' ', el('b', null, p[1])));
    });
    add(root, stats);
    add(root, add(el('p', 'sub'), 'steps of ' + s.strategy + ': ', el('span', 'mono', s.steps.join(' → ')),
      s.schedule ? ' · schedule ' : null, s.schedule ? el('code', null, s.schedule) : null));
    s.capped.forEach(function (c) { add(root, el('p', 'note', 'Capped to keep the page small: ' + c + '.')); });
    add(root, el('h2', null, 'Timeline'));
    timeline(root, s);
    add(root, el('h2', null, 'Segments after the run'));
    segments(root, s);
    if (s.lost_updates.length) {
      add(root, el('h2', null, 'Lost updates'));
      lostTable(root, s);
    }
    if (s.taken && s.taken.length) {
      add(root, el('h2', null, 'The schedule, step by step'));
      add(root, stepPicture(s.taken, s.updaters, s.lost_updates));
    }
  }

  function lostIndex(s) {
    var lost = {}, erases = {};
    s.lost_updates.forEach(function (l) {
      lost[l.updater + ':' + l.round] = l;
      if (l.erased_by) (erases[l.erased_by] = erases[l.erased_by] || []).push(l);
    });
    return { lost: lost, erases: erases };
  }

  function timeline(root, s) {
    var index = lostIndex(s);
    var legend = el('div', 'legend');
    [['start', 'start / lock'], ['read', 'read'], ['think', 'think'], ['lock-wait', 'lock wait'],
     ['write', 'write, applied'], ['lost', 'write, lost'], ['retry', 'retry'], ['failed', 'failed / unknown']]
      .forEach(function (p) {
        var i = el('i'); i.style.background = COLORS[p[0]];
        add(legend, add(el('span'), i, p[1]));
      });
    var arrowKey = el('i'); arrowKey.style.background = 'none'; arrowKey.style.borderTop = '2px solid ' + COLORS.lost;
    add(legend, add(el('span'), arrowKey, 'arrow: a stale write → the update it erased'));
    add(root, legend);

    var rows = [];
    var rowOf = {};
    function pushLane(lane) { rowOf[lane.updater] = rows.length; rows.push({ lane: lane }); }
    if (s.workers && s.workers.length) {
      var seen = {};
      s.workers.forEach(function (w) {
        var range = w.first_updater ? '#' + w.first_updater + '–#' + w.last_updater : 'no updaters';
        rows.push({ group: w.worker + ' · ' + w.id + ' on ' + w.host + ' (pid ' + w.pid + ') · ' + range +
          (w.vanished ? ' · ' + (w.left ? 'left' : 'vanished') + ': ' + w.vanished : '') });
        s.lanes.forEach(function (lane) {
          if (lane.worker === w.worker) { seen[lane.updater] = true; pushLane(lane); }
        });
      });
      var rest = s.lanes.filter(function (lane) { return !seen[lane.updater]; });
      if (rest.length) { rows.push({ group: 'no worker' }); rest.forEach(pushLane); }
    } else {
      s.lanes.forEach(pushLane);
    }

    var tMax = Math.max(1, s.duration_ms * 1000);
    s.lanes.forEach(function (lane) {
      lane.spans.forEach(function (sp) { if (sp.to_us > tMax) tMax = sp.to_us; });
    });
    var rowH = rows.length > 300 ? 9 : rows.length > 80 ? 14 : 22;
    var labelW = rows.length > 300 ? 96 : 130;
    var axisH = 26;
    var zoom = 1;

    var tools = el('div', 'tools');
    var zoomOut = el('button', null, '−'), zoomIn = el('button', null, '+'), fit = el('button', null, 'fit');
    [zoomOut, zoomIn, fit].forEach(function (b) { b.type = 'button'; });
    var zoomText = el('span');
    add(tools, 'time zoom', zoomOut, zoomIn, fit, zoomText,
      el('span', null, ' · ' + s.lanes.length + ' lanes · hover a span for what it did'));
    add(root, tools);

    var box = el('div', 'timeline');
    var canvas = el('canvas');
    var scroll = el('div', 'scroll');
    var space = el('div');
    add(scroll, space);
    add(box, canvas, scroll);
    add(root, box);
    var ctx = canvas.getContext('2d');
    var height = Math.min(axisH + rows.length * rowH + 14, Math.max(300, Math.round(window.innerHeight * 0.72)));
    scroll.style.height = height + 'px';
    box.style.height = height + 'px';
    var hover = null;

    // Room on the right for the arrows, which bend out past the writes they join.
    var arrowRoom = 90;
    function plotW() { return Math.max(100, (scroll.clientWidth - labelW - arrowRoom)) * zoom; }
    function layout() {
      space.style.width = (labelW + plotW() + arrowRoom) + 'px';
      space.style.height = (axisH + rows.length * rowH + 10) + 'px';
      zoomText.textContent = ' ×' + zoom;
      draw();
    }
    function x(t) { return labelW + t / tMax * plotW() - scroll.scrollLeft; }
    function y(row) { return axisH + row * rowH - scroll.scrollTop; }
    function spanColor(lane, sp) {
      if (sp.kind !== 'write') return COLORS[sp.kind] || COLORS.start;
      if (sp.outcome === 'acknowledged') return index.lost[lane.updater + ':' + sp.round] ? COLORS.lost : COLORS.write;
      if (sp.outcome === 'failed' || sp.outcome === 'unknown') return COLORS.failed;
      if (sp.outcome === 'conflict') return COLORS.conflict;
      return COLORS.write;
    }
    function niceStep(span) {
      var raw = span / 8, p = Math.pow(10, Math.floor(Math.log10(raw)));
      var best = p;
      [1, 2, 5, 10].forEach(function (m) { if (m * p <= raw * 1.6) best = m * p; });
      return Math.max(1, best);
    }

    function draw() {
      var w = scroll.clientWidth, h = scroll.clientHeight, dpr = window.devicePixelRatio || 1;
      if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
        canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
        canvas.style.width = w + 'px'; canvas.style.height = h + 'px';
      }
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, w, h);
      var first = Math.max(0, Math.floor((scroll.scrollTop) / rowH) - 1);
      var last = Math.min(rows.length - 1, Math.ceil((scroll.scrollTop + h) / rowH) + 1);
      // Time grid.
      var t0 = Math.max(0, (scroll.scrollLeft - 0) / plotW() * tMax);
      var t1 = (scroll.scrollLeft + w - labelW) / plotW() * tMax;
      var step = niceStep(Math.max(1, t1 - t0));
      ctx.strokeStyle = '#eef2f6'; ctx.lineWidth = 1;
      for (var t = Math.floor(t0 / step) * step; t <= t1; t += step) {
        var gx = Math.round(x(t)) + 0.5;
        if (gx < labelW) continue;
        ctx.beginPath(); ctx.moveTo(gx, axisH); ctx.lineTo(gx, h); ctx.stroke();
      }
      // Lanes.
      var bar = Math.max(3, Math.round(rowH * 0.62));
      for (var r = first; r <= last; r++) {
        var row = rows[r], ry = y(r);
        if (row.group) {
          ctx.fillStyle = '#e4e7eb'; ctx.fillRect(0, ry, w, rowH);
          continue;
        }
        if (r % 2) { ctx.fillStyle = '#fafbfc'; ctx.fillRect(labelW, ry, w, rowH); }
        var lane = row.lane, by = ry + (rowH - bar) / 2;
        for (var k = 0; k < lane.spans.length; k++) {
          var sp = lane.spans[k];
          var a = x(sp.from_us), b = x(sp.to_us);
          if (b < labelW || a > w) continue;
          ctx.fillStyle = spanColor(lane, sp);
          if (sp.kind === 'retry' && b - a < 2) {
            ctx.fillRect(a - 1, ry + 1, 3, rowH - 2);
          } else {
            ctx.fillRect(a, by, Math.max(1.5, b - a), bar);
          }
          if (hover && hover.lane === lane && hover.span === sp) {
            ctx.strokeStyle = '#1f2933'; ctx.lineWidth = 1.5;
            ctx.strokeRect(a - 0.5, by - 0.5, Math.max(1.5, b - a) + 1, bar + 1);
          }
        }
      }
      // Who erased whom: from the stale write (the eraser's acknowledgement) to the update it
      // erased (the lost one's acknowledgement).
      ctx.lineWidth = 1.2;
      s.lost_updates.forEach(function (l) {
        if (!l.erased_by || l.erased_at_ms === null || l.erased_at_ms === undefined) return;
        var from = rowOf[l.erased_by], to = rowOf[l.updater];
        if (from === undefined || to === undefined) return;
        if (Math.max(from, to) < first || Math.min(from, to) > last) return;
        var x1 = x(l.erased_at_ms * 1000), y1 = y(from) + rowH / 2;
        var x2 = x(l.acknowledged_ms * 1000), y2 = y(to) + rowH / 2;
        var focus = hover && (hover.lane.updater === l.updater || hover.lane.updater === l.erased_by);
        ctx.strokeStyle = focus ? '#8b1e1e' : 'rgba(190,40,40,0.8)';
        ctx.fillStyle = ctx.strokeStyle;
        ctx.lineWidth = focus ? 2.4 : 1.4;
        var bend = Math.min(arrowRoom - 10, 12 + Math.abs(y2 - y1) * 0.3);
        var cx = Math.max(x1, x2) + bend, cy = (y1 + y2) / 2;
        ctx.beginPath(); ctx.moveTo(x1, y1); ctx.quadraticCurveTo(cx, cy, x2, y2); ctx.stroke();
        var ang = Math.atan2(y2 - cy, x2 - cx), hl = focus ? 8 : 6;
        ctx.beginPath(); ctx.moveTo(x2, y2);
        ctx.lineTo(x2 - hl * Math.cos(ang - 0.45), y2 - hl * Math.sin(ang - 0.45));
        ctx.lineTo(x2 - hl * Math.cos(ang + 0.45), y2 - hl * Math.sin(ang + 0.45));
        ctx.closePath(); ctx.fill();
      });
      // Labels, over everything scrolled under them.
      ctx.fillStyle = '#ffffff'; ctx.fillRect(0, axisH, labelW, h);
      ctx.textBaseline = 'middle';
      var font = rowH >= 14 ? 12 : 9;
      for (r = first; r <= last; r++) {
        row = rows[r]; ry = y(r);
        if (ry + rowH < axisH) continue;
        if (row.group) continue;
        lane = row.lane;
        var erased = s.lost_updates.length && lane.spans.some(function (sp) {
          return sp.kind === 'write' && sp.outcome === 'acknowledged' && index.lost[lane.updater + ':' + sp.round];
        });
        ctx.fillStyle = erased ? '#d64545' : '#1f2933';
        ctx.font = font + 'px ui-monospace, Menlo, Consolas, monospace';
        ctx.fillText('#' + lane.updater + ' ' + lane.segment + (erased ? ' ✗' : ''), 6, ry + rowH / 2);
      }
      ctx.strokeStyle = '#d9e2ec'; ctx.beginPath(); ctx.moveTo(labelW + 0.5, axisH); ctx.lineTo(labelW + 0.5, h); ctx.stroke();
      // A worker's name over its lanes: only behind the words, so arrows across stay visible.
      ctx.font = '600 ' + font + 'px system-ui, sans-serif';
      for (r = first; r <= last; r++) {
        if (!rows[r].group) continue;
        ry = y(r);
        ctx.fillStyle = '#e4e7eb'; ctx.fillRect(0, ry, ctx.measureText(rows[r].group).width + 14, rowH);
        ctx.fillStyle = '#1f2933'; ctx.fillText(rows[r].group, 6, ry + rowH / 2);
      }
      // The time axis, over the top.
      ctx.fillStyle = '#ffffff'; ctx.fillRect(0, 0, w, axisH);
      ctx.fillStyle = '#616e7c'; ctx.font = '11px system-ui, sans-serif'; ctx.textBaseline = 'alphabetic';
      ctx.fillText(rows.length > 300 ? 'updater' : 'updater · segment', 6, axisH - 8);
      for (t = Math.floor(t0 / step) * step; t <= t1; t += step) {
        gx = Math.round(x(t)) + 0.5;
        if (gx < labelW + 2) continue;
        ctx.fillText(ms(t), gx + 3, axisH - 8);
        ctx.strokeStyle = '#9aa5b1'; ctx.beginPath(); ctx.moveTo(gx, axisH - 6); ctx.lineTo(gx, axisH); ctx.stroke();
      }
      ctx.strokeStyle = '#d9e2ec'; ctx.beginPath(); ctx.moveTo(0, axisH + 0.5); ctx.lineTo(w, axisH + 0.5); ctx.stroke();
    }

    function describe(lane, sp) {
      var box = el('div');
      add(box, el('b', null, '#' + lane.updater + ' · ' + lane.segment + ' · round ' + sp.round +
        (lane.worker ? ' · ' + lane.worker : '')));
      add(box, el('div', null, WORDS[sp.kind] + (sp.outcome === 'conflict'
        ? ': refused, the journey changed since the read (a conflict)'
        : sp.outcome ? ' (' + sp.outcome + ')' : '')));
      add(box, el('div', 'k', ms(sp.from_us) + ' → ' + ms(sp.to_us) + ' (' + ms(sp.to_us - sp.from_us) + ')'));
      if (sp.note) add(box, el('div', null, sp.note));
      if (sp.command) add(box, add(el('div'), 'Redis command ', el('code', null, sp.command)));
      if (sp.reply) add(box, add(el('div'), 'reply ', el('code', null, sp.reply)));
      if (!sp.command && (sp.kind === 'read' || sp.kind === 'write')) {
        add(box, el('div', 'k', 'commands: ' + s.steps.join(' → ')));
      }
      if (sp.kind === 'write' && sp.outcome === 'acknowledged') {
        var l = index.lost[lane.updater + ':' + sp.round];
        if (l) add(box, el('div', null, 'LOST: ' + l.segment + ' expected ' + l.expected + ', got ' + l.got +
          (l.erased_by ? '; erased by #' + l.erased_by + "'s stale write at " + l.erased_at_ms.toFixed(2) +
            ' ms, based on its read at ' + l.eraser_read_ms.toFixed(2) + ' ms' : '')));
        var victims = (index.erases[lane.updater] || []).filter(function (v) {
          return Math.abs(v.erased_at_ms * 1000 - sp.to_us) < 1;
        });
        if (victims.length) add(box, el('div', null, 'this stale write erased ' + victims.map(function (v) {
          return '#' + v.updater + "'s update of " + v.segment;
        }).join(', ')));
      }
      return box;
    }

    scroll.addEventListener('scroll', function () { draw(); });
    scroll.addEventListener('mouseleave', function () { tip.hidden = true; hover = null; draw(); });
    scroll.addEventListener('mousemove', function (ev) {
      var rect = scroll.getBoundingClientRect();
      var mx = ev.clientX - rect.left, my = ev.clientY - rect.top;
      var r = Math.floor((my + scroll.scrollTop - axisH) / rowH);
      var found = null;
      if (my > axisH && mx > labelW && r >= 0 && r < rows.length && rows[r].lane) {
        var lane = rows[r].lane, best = 4;
        lane.spans.forEach(function (sp) {
          var a = x(sp.from_us), b = Math.max(x(sp.to_us), a + 1.5);
          var d = mx < a ? a - mx : mx > b ? mx - b : 0;
          if (d < best || (d === 0 && best === 0 && sp.kind === 'retry')) { best = d; found = { lane: lane, span: sp }; }
        });
      }
      var changed = (found && hover) ? (found.span !== hover.span) : (found !== hover);
      hover = found;
      if (found) {
        tip.textContent = '';
        tip.appendChild(describe(found.lane, found.span));
        tip.hidden = false;
        var tx = ev.clientX + 14, ty = ev.clientY + 14;
        if (tx + 430 > window.innerWidth) tx = ev.clientX - 430;
        if (ty + tip.offsetHeight > window.innerHeight) ty = ev.clientY - tip.offsetHeight - 10;
        tip.style.left = tx + 'px'; tip.style.top = ty + 'px';
      } else {
        tip.hidden = true;
      }
      if (changed) draw();
    });
    function rezoom(z) {
      var view = scroll.clientWidth - labelW;
      var center = (scroll.scrollLeft + view / 2) / plotW();
      zoom = Math.max(1, Math.min(1024, z));
      layout();
      scroll.scrollLeft = center * plotW() - view / 2;
      draw();
    }
    zoomIn.addEventListener('click', function () { rezoom(zoom * 2); });
    zoomOut.addEventListener('click', function () { rezoom(zoom / 2); });
    fit.addEventListener('click', function () { rezoom(1); });
    window.addEventListener('resize', layout);
    layout();
  }

  function segments(root, s) {
    var index = {};
    s.lost_updates.forEach(function (l) { (index[l.segment] = index[l.segment] || []).push(l); });
    var small = s.cells.length > 120;
    var grid = el('div', 'grid' + (small ? ' small' : ''));
    var lost = 0;
    s.cells.forEach(function (c) {
      var cell = el('div', 'cell ' + c.state);
      var losses = index[c.id] || [];
      if (c.state === 'lost') lost++;
      var words = c.id + ': ' + c.status + ' · count ' + c.count + ' of ' + c.acknowledged + ' acknowledged' +
        (losses.length ? ' · ' + losses.map(function (l) {
          return '#' + l.updater + "'s " + l.expected + ' lost' + (l.erased_by ? ', erased by #' + l.erased_by : '');
        }).join('; ') : '');
      cell.title = words;
      if (small) {
        add(cell, el('span', 'id', (c.state === 'lost' ? '✗ ' : '') + c.id.replace(/^SEG-0*/, '')));
      } else {
        add(cell, el('div', 'id', (c.state === 'lost' ? '✗ ' : c.state === 'applied' ? '✓ ' : '') + c.id),
          el('div', null, c.status + ' · ' + (c.acknowledged || c.count
            ? c.count + ' of ' + c.acknowledged + ' acknowledged updates applied' : 'no update')));
        losses.slice(0, 3).forEach(function (l) {
          add(cell, el('div', 'by', '#' + l.updater + "'s " + l.expected + ' lost' +
            (l.erased_by ? ', erased by #' + l.erased_by : '')));
        });
        if (losses.length > 3) add(cell, el('div', 'by', '… and ' + (losses.length - 3) + ' more'));
      }
      grid.appendChild(cell);
    });
    add(root, el('p', 'sub', s.cells.length + ' segments: ' + lost + ' with a lost update' +
      (small ? ' (hover a cell for its status and who erased what)' : '')));
    add(root, grid);
  }

  function lostTable(root, s) {
    var table = el('table');
    var head = el('tr');
    ['segment', 'lost update', 'expected', 'got', 'acknowledged', 'erased by', 'stale write at', 'its read at']
      .forEach(function (h, i) { add(head, el('th', i >= 4 && h !== 'erased by' ? 'num' : null, h)); });
    add(table, head);
    var shown = 0;
    function more(limit) {
      s.lost_updates.slice(shown, limit).forEach(function (l) {
        var tr = el('tr');
        add(tr, el('td', 'mono', l.segment), el('td', null, '#' + l.updater + ' round ' + l.round +
          (l.worker ? ' (' + l.worker + ')' : '')), el('td', null, l.expected), el('td', null, l.got),
        el('td', 'num', l.acknowledged_ms.toFixed(2) + ' ms'),
        el('td', null, l.erased_by ? '#' + l.erased_by + (l.erased_by_worker ? ' (' + l.erased_by_worker + ')' : '') : 'unknown'),
        el('td', 'num', l.erased_at_ms !== null && l.erased_at_ms !== undefined ? l.erased_at_ms.toFixed(2) + ' ms' : '–'),
        el('td', 'num', l.eraser_read_ms !== null && l.eraser_read_ms !== undefined ? l.eraser_read_ms.toFixed(2) + ' ms' : '–'));
        table.appendChild(tr);
      });
      shown = Math.min(limit, s.lost_updates.length);
    }
    more(100);
    add(root, table);
    if (shown < s.lost_updates.length) {
      var b = el('button', null, 'show all ' + s.lost_updates.length);
      b.type = 'button';
      b.addEventListener('click', function () { more(s.lost_updates.length); b.remove(); });
      add(root, b);
    }
    if (s.lost_unlisted) add(root, el('p', 'more', '… and ' + s.lost_unlisted + ' more, counted but not listed'));
  }

  // A schedule step by step: a column per updater, a row per step.
  function stepPicture(steps, updaters, lost) {
    var n = 0;
    steps.forEach(function (st) { if (st.updater > n) n = st.updater; });
    n = Math.max(n, Math.min(updaters, 3));
    var grid = el('div', 'steps');
    grid.style.gridTemplateColumns = '2.2em repeat(' + n + ', minmax(180px, 340px))';
    add(grid, el('div'));
    for (var u = 1; u <= n; u++) add(grid, el('div', 'hd', '#' + u));
    function lastWrite(updater) {
      for (var k = steps.length - 1; k >= 0; k--) {
        if (steps[k].updater === updater && /write/.test(steps[k].role)) return k;
      }
      return -1;
    }
    var flags = {};
    lost.forEach(function (l) {
      var mine = lastWrite(l.updater);
      if (mine >= 0) (flags[mine] = flags[mine] || []).push(['lost', 'this update is lost']);
      if (l.erased_by) {
        var theirs = lastWrite(l.erased_by);
        if (theirs >= 0) (flags[theirs] = flags[theirs] || []).push(['erases', '✗ a stale copy: erases #' + l.updater + "'s update"]);
      }
    });
    steps.forEach(function (st, k) {
      add(grid, el('div', 'n', k + 1));
      for (var c = 1; c <= n; c++) {
        if (c !== st.updater) { add(grid, el('div')); continue; }
        var f = flags[k] || [];
        var cell = el('div', 'step ' + st.role + (f.some(function (x) { return x[0] === 'erases'; }) ? ' erases' : ''));
        add(cell, el('b', null, st.role + ' '), el('code', null, st.command));
        if (st.reply) add(cell, el('div', 'reply', '→ ' + st.reply));
        f.forEach(function (x) { add(cell, el('div', 'flag', x[1])); });
        add(grid, cell);
      }
    });
    var wrap = add(el('div'), grid);
    lost.forEach(function (l) {
      add(wrap, el('p', 'fail', 'Segment ' + l.segment + ": expected '" + l.expected + "', got '" + l.got + "': #" +
        l.updater + "'s update" + (l.erased_by ? ' was erased by #' + l.erased_by + "'s stale write" : ' was lost')));
    });
    return wrap;
  }

  // ---------------------------------------------------------------- prove
  function showProve(p) {
    add(app, el('h1', null, 'racelab prove'),
      el('p', 'sub', 'Redis ' + p.redis + ' · ' + p.updaters + ' updaters · retry bound ' + p.retry_bound),
      el('p', 'verdict ' + (p.ok ? 'ok' : 'fail'), p.ok ? 'every strategy behaved as expected under every schedule'
        : 'a strategy did not behave as expected'));
    var table = el('table');
    var head = el('tr');
    ['strategy', 'layout', 'schedules', 'losing', 'shortest losing', 'expected', 'verdict'].forEach(function (h, i) {
      add(head, el('th', i === 2 || i === 3 ? 'num' : null, h));
    });
    add(table, head);
    p.results.forEach(function (r) {
      add(table, add(el('tr'), el('td', null, r.strategy), el('td', null, r.layout), el('td', 'num', r.schedules),
        el('td', 'num', r.losing), el('td', 'mono', r.shortest || '–'), el('td', null, r.expected),
        el('td', r.ok ? 'ok' : 'fail', r.ok ? 'ok' : 'FAIL')));
    });
    add(app, table);
    add(app, el('h2', null, 'Shortest losing schedules, step by step'));
    var any = false;
    p.results.forEach(function (r) {
      if (!r.steps.length) return;
      any = true;
      var card = el('div', 'card');
      add(card, el('h3', null, r.strategy + ' · ' + r.layout + ' · ' + r.losing + ' of ' + r.schedules +
        ' schedules lose · shortest ' + r.shortest + (r.ok ? '' : ' · FAIL: expected ' + r.expected)));
      add(card, stepPicture(r.steps, p.updaters, r.lost_updates));
      if (r.replay) add(card, add(el('p', 'sub'), 'replay it: ', el('code', null, r.replay)));
      add(app, card);
    });
    if (!any) add(app, el('p', null, 'No schedule lost an update.'));
  }

  window.addEventListener('error', function (e) { document.body.setAttribute('data-error', String(e.message)); });
  if (data.run) showRun(data.run);
  else if (data.prove) showProve(data.prove);
  document.body.setAttribute('data-ready', 'yes');
})();
