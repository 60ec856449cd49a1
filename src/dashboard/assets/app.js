// salesmetrics dashboard: calls the JSON API of the server it is served by
// (KpiService over the Connect protocol), draws its charts as SVG, and
// follows WatchKpis for live updates (polling every 5 s when the stream fails).
'use strict';

const API = '/salesmetrics.v1.KpiService/';
const KEY = 'salesmetrics.apiKey';
const POLL_MS = 5000;
const SVG = 'http://www.w3.org/2000/svg';
const $ = (id) => document.getElementById(id);

// Ratio KPIs read as a multiple (3.2×), as the command line shows them.
const MULTIPLES = ['mrr_quick_ratio', 'clv_to_cac'];
const BREAKDOWN_KPIS = ['revenue', 'bookings', 'deals_won', 'win_rate', 'revenue_target_attainment', 'activities'];
const CATEGORY = {
  KPI_CATEGORY_PERFORMANCE: 'Sales performance', KPI_CATEGORY_CUSTOMERS: 'Customers and subscriptions',
  KPI_CATEGORY_LEADS: 'Leads and funnel', KPI_CATEGORY_ACTIVITY: 'Activity', KPI_CATEGORY_PRODUCTIVITY: 'Productivity',
};

const st = {
  team: '', rep: '', g: 'month', date: '', from: '', to: '', compare: 'previous',
  dim: 'DIMENSION_REP', sort: null, desc: true,
  catalog: null, defs: new Map(), bundle: null, series: [], rows: [], gen: 0,
  open: new Set(), watch: null, poll: null, keyPrompt: null,
};

// ---- API ---------------------------------------------------------------------

class ApiError extends Error {
  constructor(code, message) { super(message || code); this.code = code; }
}

function authHeaders(headers) {
  const key = sessionStorage.getItem(KEY);
  if (key) headers.authorization = 'Bearer ' + key;
  return headers;
}

async function call(method, body) {
  for (;;) {
    const response = await fetch(API + method, {
      method: 'POST',
      headers: authHeaders({ 'content-type': 'application/json', 'connect-protocol-version': '1' }),
      body: JSON.stringify(body || {}),
    });
    const json = await response.json().catch(() => ({}));
    if (response.status === 401 || json.code === 'unauthenticated') {
      await askKey(json.message);
      continue;
    }
    if (!response.ok) throw new ApiError(json.code || String(response.status), json.message || response.statusText);
    return json;
  }
}

// Shows the key prompt (once for any number of waiting calls).
function askKey(reason) {
  if (!st.keyPrompt) {
    st.keyPrompt = new Promise((resolve) => {
      const dialog = $('key-dialog');
      $('key-reason').textContent = reason ? 'The server says: ' + reason : 'The server asks for an API key.';
      $('key-input').value = '';
      $('key-form').onsubmit = (event) => {
        event.preventDefault();
        const key = $('key-input').value.trim();
        if (!key) return;
        sessionStorage.setItem(KEY, key);
        dialog.close();
        st.keyPrompt = null;
        resolve();
      };
      dialog.showModal();
    });
  }
  return st.keyPrompt;
}

// ---- requests ----------------------------------------------------------------

const GRANULARITY = {
  day: 'GRANULARITY_DAY', week: 'GRANULARITY_WEEK', month: 'GRANULARITY_MONTH', quarter: 'GRANULARITY_QUARTER',
  year: 'GRANULARITY_YEAR', fiscal_quarter: 'GRANULARITY_FISCAL_QUARTER', fiscal_year: 'GRANULARITY_FISCAL_YEAR',
};

const protoDate = (text) => {
  const [year, month, day] = text.split('-').map(Number);
  return { year, month, day };
};
const dateText = (d) => d ? `${String(d.year).padStart(4, '0')}-${String(d.month).padStart(2, '0')}-${String(d.day).padStart(2, '0')}` : '?';

function scope() {
  if (st.rep) return { kind: 'SCOPE_KIND_REP', id: st.rep };
  if (st.team) return { kind: 'SCOPE_KIND_TEAM', id: st.team };
  return { kind: 'SCOPE_KIND_COMPANY' };
}

function period() {
  if (st.g === 'custom') return { custom: { startDate: protoDate(st.from), endDate: protoDate(st.to) } };
  return { calendar: { granularity: GRANULARITY[st.g], date: protoDate(st.date) } };
}

function kpisRequest() {
  const comparison = { previous: 'COMPARISON_PREVIOUS_PERIOD', year: 'COMPARISON_PREVIOUS_YEAR' }[st.compare] || 'COMPARISON_NONE';
  return { scope: scope(), period: period(), comparison };
}

// The first day of the period `n` periods before the one starting on `start`.
function periodsBefore(start, g, n) {
  const d = new Date(Date.UTC(start.year, start.month - 1, start.day));
  if (g === 'day') d.setUTCDate(d.getUTCDate() - n);
  else if (g === 'week') d.setUTCDate(d.getUTCDate() - 7 * n);
  else if (g === 'quarter' || g === 'fiscal_quarter') d.setUTCMonth(d.getUTCMonth() - 3 * n);
  else if (g === 'year' || g === 'fiscal_year') d.setUTCFullYear(d.getUTCFullYear() - n);
  else d.setUTCMonth(d.getUTCMonth() - n);
  return { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate() };
}

async function breakdownRows(scopeValue, dimension, kpiIds) {
  const rows = [];
  let pageToken = '';
  do {
    const page = await call('GetBreakdown', { scope: scopeValue, period: period(), dimension, kpiIds, pageSize: 1000, pageToken });
    rows.push(...(page.rows || []));
    pageToken = page.nextPageToken || '';
  } while (pageToken);
  return rows;
}

// ---- formatting (as the command line shows values) ---------------------------

function currencyExponent(code) {
  code = (code || '').toUpperCase();
  if (['BIF', 'CLP', 'DJF', 'GNF', 'ISK', 'JPY', 'KMF', 'KRW', 'PYG', 'RWF', 'UGX', 'UYI', 'VND', 'VUV', 'XAF', 'XOF', 'XPF'].includes(code)) return 0;
  if (['BHD', 'IQD', 'JOD', 'KWD', 'LYD', 'OMR', 'TND'].includes(code)) return 3;
  return 2;
}

const group = (digits) => digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');

// Money from a whole number of minor units, given as a string or a number.
function money(minor, currency) {
  let digits = String(minor);
  const sign = digits.startsWith('-') ? '-' : '';
  digits = digits.replace('-', '');
  const exp = currencyExponent(currency);
  let text;
  if (exp === 0) text = group(digits);
  else {
    digits = digits.padStart(exp + 1, '0');
    text = group(digits.slice(0, -exp)) + '.' + digits.slice(-exp);
  }
  return sign + text + (currency ? ' ' + currency : '');
}

const percent = (ratio) => (ratio * 100).toFixed(1) + '%';

function duration(seconds) {
  const sign = seconds < 0 ? '-' : '';
  const total = Math.round(Math.abs(seconds));
  const d = Math.floor(total / 86400), h = Math.floor(total % 86400 / 3600), m = Math.floor(total % 3600 / 60), s = total % 60;
  let text;
  if (d > 0) text = h > 0 ? `${d}d ${h}h` : `${d}d`;
  else if (h > 0) text = m > 0 ? `${h}h ${m}m` : `${h}h`;
  else if (m > 0) text = s > 0 ? `${m}m ${s}s` : `${m}m`;
  else text = `${s}s`;
  return sign + text;
}

const plainNumber = (x) => Number.isInteger(x) && Math.abs(x) < 1e15 ? (x < 0 ? '-' : '') + group(String(Math.abs(x))) : x.toFixed(2);

// A defined value of a KPI; `exact` is the exact whole value (a string) when known.
function formatValue(id, unit, x, exact, currency) {
  if (MULTIPLES.includes(id)) return x.toFixed(1) + '×';
  switch (unit) {
    case 'UNIT_MONEY': return money(exact !== undefined ? exact : Math.round(x), currency);
    case 'UNIT_COUNT': return exact !== undefined ? plainNumber(Number(exact)) : plainNumber(x);
    case 'UNIT_RATIO': return percent(x);
    case 'UNIT_DURATION_SECONDS': return duration(x);
    case 'UNIT_SCORE': return x.toFixed(2);
    default: return plainNumber(x);
  }
}

// The change from the comparison: percentage points for ratios, a multiple's
// difference for multiples, a relative change otherwise; with a verdict by the
// KPI's direction.
function change(v, direction) {
  let delta, text;
  if (MULTIPLES.includes(v.kpiId)) {
    if (v.absoluteChange === undefined) return null;
    delta = v.absoluteChange; text = Math.abs(delta).toFixed(1) + '×';
  } else if (v.unit === 'UNIT_RATIO') {
    if (v.absoluteChange === undefined) return null;
    delta = v.absoluteChange; text = (Math.abs(delta) * 100).toFixed(1) + ' pp';
  } else {
    if (v.relativeChange === undefined) return null;
    delta = v.relativeChange; text = percent(Math.abs(delta));
  }
  const arrow = delta > 0 ? '▲' : delta < 0 ? '▼' : '=';
  let verdict = '';
  if (delta !== 0 && direction === 'DIRECTION_HIGHER_IS_BETTER') verdict = delta > 0 ? 'better' : 'worse';
  if (delta !== 0 && direction === 'DIRECTION_LOWER_IS_BETTER') verdict = delta < 0 ? 'better' : 'worse';
  return { text: `${arrow} ${text}${verdict ? ' ' + verdict : ''}`, verdict };
}

const valueText = (v, currency) => v && v.value !== undefined ? formatValue(v.kpiId, v.unit, v.value, v.exactValue, currency) : '—';

// ---- DOM helpers -------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function chart(label, width, height, ...children) {
  return svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label, class: 'chart' }, svg('title', {}, label), ...children);
}

function setStatus(text) { $('status').textContent = text || ''; }

// ---- rendering ---------------------------------------------------------------

function sparkline(id) {
  const points = st.series.map((b) => (b.values || []).find((v) => v.kpiId === id)).map((v) => v && v.value);
  const defined = points.filter((x) => x !== undefined);
  if (defined.length < 2) return null;
  const min = Math.min(...defined), max = Math.max(...defined), span = max - min || 1;
  const w = 100, h = 24, step = w / (points.length - 1);
  let d = '', pen = false;
  points.forEach((x, i) => {
    if (x === undefined) { pen = false; return; }
    d += `${pen ? 'L' : 'M'}${(i * step).toFixed(1)},${(h - 2 - (x - min) / span * (h - 4)).toFixed(1)}`;
    pen = true;
  });
  return svg('svg', { viewBox: `0 0 ${w} ${h}`, class: 'spark', 'aria-hidden': 'true', preserveAspectRatio: 'none' }, svg('path', { d }));
}

function renderTiles() {
  const b = st.bundle;
  if (!b || !st.catalog) return;
  const byId = new Map((b.values || []).map((v) => [v.kpiId, v]));
  const groups = new Map();
  for (const def of st.catalog) {
    const v = byId.get(def.id);
    if (!v) continue;
    if (!groups.has(def.category)) groups.set(def.category, []);
    groups.get(def.category).push([def, v]);
  }
  const sections = [];
  for (const [category, items] of groups) {
    const title = CATEGORY[category] || 'Other';
    sections.push(el('section', { class: 'group', 'aria-label': title }, el('h2', {}, title),
      el('div', { class: 'tiles' }, items.map(([def, v]) => tile(def, v, b.currencyCode)))));
  }
  $('tiles').replaceChildren(...sections);
}

function tile(def, v, currency) {
  const open = st.open.has(def.id);
  const ch = st.bundle.comparisonPeriod ? change(v, def.direction) : null;
  const details = el('dl', { class: 'details', id: 'details-' + def.id, hidden: !open },
    el('dt', {}, 'Formula'), el('dd', {}, def.formula),
    v.numerator !== undefined ? [el('dt', {}, 'Numerator'), el('dd', {}, plainNumber(v.numerator))] : null,
    v.denominator !== undefined ? [el('dt', {}, 'Denominator'), el('dd', {}, plainNumber(v.denominator))] : null,
    st.bundle.comparisonPeriod ? [el('dt', {}, 'Comparison'), el('dd', {}, v.comparisonValue !== undefined
      ? formatValue(v.kpiId, v.unit, v.comparisonValue, Number.isInteger(v.comparisonValue) ? String(v.comparisonValue) : undefined, currency)
      : '— ' + (v.comparisonUndefinedReason || ''))] : null);
  const button = el('button', {
    type: 'button', class: 'tile', 'data-kpi': def.id, 'aria-expanded': String(open), 'aria-controls': 'details-' + def.id,
    onclick: () => {
      if (st.open.has(def.id)) st.open.delete(def.id); else st.open.add(def.id);
      renderTiles();
    },
  },
  el('span', { class: 'name' }, def.name),
  el('span', { class: 'value' }, valueText(v, currency)),
  v.value === undefined && v.undefinedReason ? el('span', { class: 'reason' }, v.undefinedReason) : null,
  ch ? el('span', { class: 'change ' + ch.verdict }, ch.text) : null,
  sparkline(def.id));
  return el('div', { class: 'tile-box' }, button, details);
}

function renderPeriod() {
  const b = st.bundle;
  const p = b.period || {};
  let text = `${dateText(p.startDate)} – ${dateText(p.endDate)} (end exclusive, ${p.timeZone || 'UTC'})`;
  if (b.comparisonPeriod) text += `, compared with ${dateText(b.comparisonPeriod.startDate)} – ${dateText(b.comparisonPeriod.endDate)}`;
  $('period-text').textContent = text;
}

function number(bundle, id) {
  const v = (bundle.values || []).find((x) => x.kpiId === id);
  return v && v.value !== undefined ? v.value : undefined;
}

function axisMoney(minor) {
  const major = minor / 10 ** currencyExponent(st.bundle.currencyCode);
  const abs = Math.abs(major);
  if (abs >= 1e6) return (major / 1e6).toFixed(1) + 'M';
  if (abs >= 1e3) return (major / 1e3).toFixed(1) + 'k';
  return major.toFixed(0);
}

function renderTargetChart() {
  const W = 360, H = 180, top = 10, bottom = 150, left = 40;
  const data = st.series.map((b) => ({ label: dateText((b.period || {}).startDate).slice(2, 7), revenue: number(b, 'revenue'), target: number(b, 'revenue_target') }));
  const max = Math.max(1, ...data.flatMap((d) => [d.revenue || 0, d.target || 0]));
  const y = (x) => bottom - x / max * (bottom - top);
  const step = (W - left) / Math.max(1, data.length);
  const parts = [svg('line', { x1: left, x2: W, y1: bottom, y2: bottom, class: 'axis' }),
    svg('text', { x: left - 4, y: top + 8, class: 'tick', 'text-anchor': 'end' }, axisMoney(max))];
  let target = '';
  data.forEach((d, i) => {
    const x = left + i * step;
    if (d.revenue !== undefined) {
      parts.push(svg('rect', { x: x + step * 0.15, y: y(d.revenue), width: step * 0.7, height: bottom - y(d.revenue), class: 'bar' },
        svg('title', {}, `${d.label}: revenue ${money(Math.round(d.revenue), st.bundle.currencyCode)}`)));
    }
    if (d.target !== undefined) target += `${target ? 'L' : 'M'}${(x + step / 2).toFixed(1)},${y(d.target).toFixed(1)}`;
    if (i % 2 === data.length % 2 || data.length < 7) parts.push(svg('text', { x: x + step / 2, y: H - 14, class: 'tick', 'text-anchor': 'middle' }, d.label));
  });
  if (target) parts.push(svg('path', { d: target, class: 'target' }));
  parts.push(svg('text', { x: left, y: H - 1, class: 'legend' }, 'bars: revenue · line: revenue target'));
  $('chart-target').replaceChildren(chart('Revenue and revenue target of the last 12 periods', W, H, parts));
}

function renderMrr() {
  const b = st.bundle;
  const steps = [['Start', 'mrr_start', 0], ['New', 'new_mrr', 1], ['Reactivation', 'reactivation_mrr', 1],
    ['Expansion', 'expansion_mrr', 1], ['Contraction', 'contraction_mrr', -1], ['Churn', 'churned_mrr', -1], ['End', 'mrr', 0]];
  const bars = [];
  let level = 0;
  for (const [label, id, sign] of steps) {
    const x = number(b, id);
    if (x === undefined) continue;
    if (sign === 0) { bars.push({ label, from: 0, to: x, kind: 'total', x }); level = x; }
    else { const to = level + sign * x; bars.push({ label, from: level, to, kind: sign > 0 ? 'up' : 'down', x }); level = to; }
  }
  if (!bars.length) { $('chart-mrr').replaceChildren(el('p', {}, 'No MRR data.')); return; }
  const W = 360, H = 180, top = 10, bottom = 150;
  const max = Math.max(1, ...bars.flatMap((d) => [d.from, d.to]));
  const y = (v) => bottom - v / max * (bottom - top);
  const step = W / bars.length;
  const parts = [svg('line', { x1: 0, x2: W, y1: bottom, y2: bottom, class: 'axis' })];
  bars.forEach((d, i) => {
    const x = i * step, hi = Math.max(d.from, d.to), lo = Math.min(d.from, d.to);
    parts.push(svg('rect', { x: x + step * 0.15, y: y(hi), width: step * 0.7, height: Math.max(1, y(lo) - y(hi)), class: 'wf ' + d.kind },
      svg('title', {}, `${d.label}: ${money(Math.round(d.x), b.currencyCode)}`)));
    parts.push(svg('text', { x: x + step / 2, y: H - 14, class: 'tick', 'text-anchor': 'middle' }, d.label));
    parts.push(svg('text', { x: x + step / 2, y: y(hi) - 2, class: 'tick', 'text-anchor': 'middle' }, axisMoney(d.x)));
  });
  $('chart-mrr').replaceChildren(chart('MRR waterfall: start, new, reactivation, expansion, contraction, churn, end', W, H, parts));
}

function renderFunnel() {
  const stages = st.bundle.funnel || [];
  if (!stages.length) { $('chart-funnel').replaceChildren(el('p', {}, 'No funnel data.')); return; }
  const reached = stages.map((s) => Number(s.reached || 0));
  const max = Math.max(1, ...reached);
  const W = 360, row = 24, H = stages.length * row + 4, left = 90, right = 95;
  const parts = stages.map((s, i) => {
    const w = reached[i] / max * (W - left - right);
    return svg('g', {},
      svg('text', { x: left - 4, y: i * row + 16, class: 'tick', 'text-anchor': 'end' }, s.stage),
      svg('rect', { x: left, y: i * row + 3, width: Math.max(1, w), height: row - 6, class: 'bar' }),
      svg('text', { x: left + w + 4, y: i * row + 16, class: 'tick' },
        group(String(reached[i])) + (s.leakage !== undefined ? ` · ${percent(s.leakage)} leak` : '')));
  });
  $('chart-funnel').replaceChildren(chart('Funnel: deals reaching each stage, with the leakage to the next', W, H, parts));
}

function renderBreakdown() {
  const rows = st.rows.slice();
  const table = $('breakdown');
  if (!rows.length) { table.replaceChildren(el('caption', {}, 'No rows for this scope and period.')); return; }
  const ids = (rows[0].values || []).map((v) => v.kpiId);
  const valueOf = (row, id) => { const v = (row.values || []).find((x) => x.kpiId === id); return v && v.value !== undefined ? v.value : -Infinity; };
  if (st.sort) {
    rows.sort((a, b) => {
      const d = st.sort === 'key' ? (a.label || a.key).localeCompare(b.label || b.key) : valueOf(a, st.sort) - valueOf(b, st.sort);
      return st.desc ? -d : d;
    });
  }
  const name = (id) => (st.defs.get(id) || { name: id }).name;
  const header = (id, text) => el('th', { scope: 'col', 'aria-sort': st.sort === id ? (st.desc ? 'descending' : 'ascending') : 'none' },
    el('button', { type: 'button', onclick: () => { st.desc = st.sort === id ? !st.desc : id !== 'key'; st.sort = id; renderBreakdown(); } }, text));
  const currency = st.bundle ? st.bundle.currencyCode : '';
  table.replaceChildren(
    el('caption', {}, 'Click a column heading to sort.'),
    el('thead', {}, el('tr', {}, header('key', 'Name'), ids.map((id) => header(id, name(id))))),
    el('tbody', {}, rows.map((r) => el('tr', {}, el('th', { scope: 'row' }, r.label || r.key),
      ids.map((id) => el('td', {}, valueText((r.values || []).find((x) => x.kpiId === id), currency)))))));
}

function renderBundle(bundle) {
  st.bundle = bundle;
  renderPeriod();
  renderTiles();
  renderMrr();
  renderFunnel();
}

// ---- scope lists ---------------------------------------------------------------

async function teamTree(parent, depth, out) {
  const rows = await breakdownRows(parent, 'DIMENSION_TEAM', ['active_reps']);
  for (const r of rows) {
    out.push({ id: r.key, label: '\u2003'.repeat(depth) + (r.label || r.key) });
    if (depth < 8) await teamTree({ kind: 'SCOPE_KIND_TEAM', id: r.key }, depth + 1, out);
  }
  return out;
}

function fillSelect(select, first, items, selected) {
  select.replaceChildren(el('option', { value: '' }, first),
    ...items.map((i) => el('option', { value: i.id, selected: i.id === selected }, i.label)));
  select.value = items.some((i) => i.id === selected) ? selected : '';
}

async function loadScopes() {
  const teams = await teamTree({ kind: 'SCOPE_KIND_COMPANY' }, 0, []);
  fillSelect($('team'), 'Company', teams, st.team);
  const teamScope = st.team ? { kind: 'SCOPE_KIND_TEAM', id: st.team } : { kind: 'SCOPE_KIND_COMPANY' };
  const reps = await breakdownRows(teamScope, 'DIMENSION_REP', ['active_reps']);
  fillSelect($('rep'), 'All reps', reps.map((r) => ({ id: r.key, label: r.label || r.key })), st.rep);
}

// ---- loading and live updates ----------------------------------------------------

async function loadKpis() {
  const response = await call('GetKpis', kpisRequest());
  renderBundle(response.bundle);
  return response.bundle;
}

async function loadSeries(bundle) {
  const start = (bundle.period || {}).startDate;
  const g = st.g === 'custom' ? 'month' : st.g;
  const response = await call('GetKpiSeries', {
    scope: scope(), granularity: GRANULARITY[g], firstPeriodDate: periodsBefore(start, g, 11), periodCount: 12,
  });
  st.series = response.bundles || [];
  renderTiles();
  renderTargetChart();
}

async function loadBreakdown() {
  const dimension = st.dim;
  const kpis = dimension === 'DIMENSION_REP' || dimension === 'DIMENSION_TEAM' ? BREAKDOWN_KPIS : [];
  st.rows = await breakdownRows(scope(), dimension, kpis);
  renderBreakdown();
}

function stopLive() {
  if (st.watch) st.watch.abort();
  st.watch = null;
  clearInterval(st.poll);
  st.poll = null;
}

function poll(gen) {
  $('live').textContent = 'Live: polling every 5 s';
  st.poll = setInterval(() => {
    if (gen === st.gen) loadKpis().catch((err) => setStatus('Update failed: ' + err.message));
  }, POLL_MS);
}

// Follows WatchKpis (Connect streaming JSON: 5-byte envelopes, flag 0x02 ends
// the stream); falls back to polling when the stream cannot be read.
async function watch(gen) {
  const controller = new AbortController();
  st.watch = controller;
  const json = new TextEncoder().encode(JSON.stringify({ request: kpisRequest(), minInterval: '1s' }));
  const frame = new Uint8Array(5 + json.length);
  new DataView(frame.buffer).setUint32(1, json.length);
  frame.set(json, 5);
  try {
    const response = await fetch(API + 'WatchKpis', {
      method: 'POST', body: frame, signal: controller.signal,
      headers: authHeaders({ 'content-type': 'application/connect+json', 'connect-protocol-version': '1' }),
    });
    if (!response.ok || !response.body) throw new ApiError(String(response.status), 'stream refused');
    $('live').textContent = 'Live: streaming';
    const reader = response.body.getReader();
    let buffer = new Uint8Array(0);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const joined = new Uint8Array(buffer.length + value.length);
      joined.set(buffer);
      joined.set(value, buffer.length);
      buffer = joined;
      while (buffer.length >= 5) {
        const length = new DataView(buffer.buffer, buffer.byteOffset).getUint32(1);
        if (buffer.length < 5 + length) break;
        const flags = buffer[0];
        const message = JSON.parse(new TextDecoder().decode(buffer.subarray(5, 5 + length)) || '{}');
        buffer = buffer.slice(5 + length);
        if (flags & 2) {
          if (message.error) throw new ApiError(message.error.code, message.error.message);
          throw new ApiError('ended', 'stream ended');
        }
        // A bundle ({kpis: GetKpisResponse}) or a heartbeat.
        const bundle = message.kpis && message.kpis.bundle;
        if (bundle && gen === st.gen) renderBundle(bundle);
      }
    }
    throw new ApiError('ended', 'stream ended');
  } catch (err) {
    if (controller.signal.aborted || gen !== st.gen) return;
    if (err.code === 'unauthenticated') { await askKey(err.message); if (gen === st.gen) watch(gen); return; }
    poll(gen);
  }
}

function readControls() {
  st.team = $('team').value;
  st.rep = $('rep').value;
  st.g = $('granularity').value;
  st.date = $('date').value;
  st.from = $('from').value;
  st.to = $('to').value;
  st.compare = $('compare').value;
  st.dim = $('dimension').value;
}

function writeHash() {
  const p = new URLSearchParams();
  const s = st.rep ? 'rep:' + st.rep : st.team ? 'team:' + st.team : 'company';
  p.set('scope', s);
  p.set('g', st.g);
  if (st.g === 'custom') { p.set('from', st.from); p.set('to', st.to); } else p.set('date', st.date);
  p.set('compare', st.compare);
  p.set('by', st.dim);
  history.replaceState(null, '', '#' + p.toString());
}

function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  const s = p.get('scope') || 'company';
  st.team = s.startsWith('team:') ? s.slice(5) : '';
  st.rep = s.startsWith('rep:') ? s.slice(4) : '';
  st.g = p.get('g') in GRANULARITY || p.get('g') === 'custom' ? p.get('g') : 'month';
  const today = new Date();
  const local = new Date(today.getTime() - today.getTimezoneOffset() * 60000).toISOString().slice(0, 10);
  st.date = p.get('date') || local;
  st.from = p.get('from') || local.slice(0, 8) + '01';
  st.to = p.get('to') || local;
  st.compare = ['previous', 'year', 'none'].includes(p.get('compare')) ? p.get('compare') : 'previous';
  st.dim = p.get('by') || 'DIMENSION_REP';
  $('granularity').value = st.g;
  $('date').value = st.date;
  $('from').value = st.from;
  $('to').value = st.to;
  $('compare').value = st.compare;
  $('dimension').value = st.dim;
  showPeriodInputs();
}

function showPeriodInputs() {
  const custom = $('granularity').value === 'custom';
  $('date-label').hidden = custom;
  $('from-label').hidden = !custom;
  $('to-label').hidden = !custom;
}

async function load() {
  const gen = ++st.gen;
  stopLive();
  setStatus('Loading…');
  document.body.setAttribute('aria-busy', 'true');
  try {
    if (!st.catalog) {
      st.catalog = (await call('ListKpis', {})).kpis || [];
      st.defs = new Map(st.catalog.map((d) => [d.id, d]));
    }
    const bundle = await loadKpis();
    if (gen !== st.gen) return;
    await Promise.all([loadSeries(bundle), loadBreakdown(), loadScopes()]);
    if (gen !== st.gen) return;
    setStatus('');
    document.body.dataset.loaded = String(gen);
    watch(gen);
  } catch (err) {
    if (gen === st.gen) setStatus('Could not load: ' + err.message);
  } finally {
    if (gen === st.gen) document.body.removeAttribute('aria-busy');
  }
}

function onChange(event) {
  if (event.target.id === 'team') $('rep').value = '';
  showPeriodInputs();
  readControls();
  if (st.g === 'custom' && !(st.from && st.to && st.from < st.to)) { setStatus('Choose a start date before the end date.'); return; }
  if (st.g !== 'custom' && !st.date) return;
  writeHash();
  load();
}

document.addEventListener('DOMContentLoaded', () => {
  readHash();
  $('controls').addEventListener('change', onChange);
  $('controls').addEventListener('submit', (event) => event.preventDefault());
  $('dimension').addEventListener('change', () => {
    readControls();
    writeHash();
    st.sort = null;
    loadBreakdown().catch((err) => setStatus('Could not load the breakdown: ' + err.message));
  });
  load();
});
