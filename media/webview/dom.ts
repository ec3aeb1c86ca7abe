// Small DOM helpers for the inspector. Everything is built with createElement and
// textContent (never innerHTML), so token text can never become markup.

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string | null | undefined)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(typeof c === 'string' ? document.createTextNode(c) : c);
  }
  return node;
}

/**
 * Roving tabindex: one item of `items` is in the tab order; arrow keys move focus.
 * `columns` > 1 makes Up/Down move by a row (for the heat map grid).
 */
export function roving(container: HTMLElement, items: HTMLElement[], columns: number): void {
  if (items.length === 0) return;
  items.forEach((item, i) => item.setAttribute('tabindex', i === 0 ? '0' : '-1'));
  container.addEventListener('keydown', (e) => {
    const index = items.indexOf(document.activeElement as HTMLElement);
    if (index < 0) return;
    const step: Record<string, number> = {
      ArrowRight: 1,
      ArrowLeft: -1,
      ArrowDown: columns,
      ArrowUp: -columns,
      Home: -index,
      End: items.length - 1 - index,
    };
    const delta = step[e.key];
    if (delta === undefined) return;
    const next = Math.max(0, Math.min(items.length - 1, index + delta));
    e.preventDefault();
    items[index]!.setAttribute('tabindex', '-1');
    items[next]!.setAttribute('tabindex', '0');
    items[next]!.focus();
  });
}

/** Shows a token as readable text: spaces, tabs and newlines made visible. */
export function visible(text: string): string {
  if (text.length === 0) return '∅';
  return text.replace(/ /g, '·').replace(/\t/g, '→').replace(/\r?\n/g, '↵');
}

export function ms(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '—';
  return value < 10 ? `${value.toFixed(1)} ms` : `${Math.round(value)} ms`;
}

export function pct(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '—';
  return `${Math.round(value * 100)}%`;
}
