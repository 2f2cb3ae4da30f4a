// The rows that must stay one line: for each element matching the selector, its visible items
// (its children, a `display: contents` child's children counting as its own) must share one
// line, and no text in it may break onto a second line.
// (tests/page_stack.py broken_rows runs it.)
(selector) => {
    const out = [];
    const shown = (el) => el.getClientRects().length > 0 &&
        getComputedStyle(el).visibility !== "hidden" && getComputedStyle(el).position !== "absolute";
    const items = (el) => [...el.children].flatMap(
        (c) => (getComputedStyle(c).display === "contents" ? items(c) : [c]));
    const name = (el) => (el.id ? `#${el.id}` : "") ||
        el.textContent.trim().replace(/\s+/g, " ").slice(0, 40) || el.tagName.toLowerCase();
    for (const root of document.querySelectorAll(selector)) {
        if (!shown(root)) continue;
        const boxes = items(root).filter(shown).map((el) => [el, el.getBoundingClientRect()]);
        const lowestTop = Math.max(...boxes.map(([, r]) => r.top));
        const highestBottom = Math.min(...boxes.map(([, r]) => r.bottom));
        if (boxes.length > 1 && lowestTop >= highestBottom) {
            out.push(`${name(root)}: items on more than one line: ` +
                boxes.map(([el, r]) => `${name(el)} at ${Math.round(r.top)}`).join(", "));
        }
        const walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
        for (let n = walk.nextNode(); n; n = walk.nextNode()) {
            if (!n.textContent.trim()) continue;
            const range = document.createRange();
            range.selectNodeContents(n);
            const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
            if (lines.size > 1) out.push(`${name(root)}: "${n.textContent.trim()}" on ${lines.size} lines`);
        }
    }
    return out;
}
