// Lists that change while they are used (a row under a press, an item with the keyboard's focus, a
// live region a screen reader follows) are updated in place, never rebuilt.

/**
 * Make `parent`'s children exactly `nodes`, in that order, touching only what changed: a node that
 * stays is neither removed nor moved, so a press on it, its focus and a screen reader's place hold.
 */
export function reconcile(parent, nodes) {
  const keep = new Set(nodes);
  for (const child of [...parent.children]) if (!keep.has(child)) child.remove();
  nodes.forEach((node, index) => {
    const at = parent.children[index];
    if (at !== node) parent.insertBefore(node, at ?? null);
  });
}
