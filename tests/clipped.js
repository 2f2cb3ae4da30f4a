// What a person cannot see whole among the elements matching the selector: each one reaching
// past the sides of the screen, or of an ancestor that clips it (a scroll container shows only
// its own width: past it is scrolled away); each whose content is wider than itself (a cell's
// text running out of it); each menu whose longest choice is wider than the menu.
// (tests/page_stack.py clipped runs it.)
(selector) => {
    const out = [];
    const name = (el) => (el.id ? `#${el.id}` : "") ||
        el.textContent.trim().replace(/\s+/g, " ").slice(0, 40) || el.tagName.toLowerCase();
    const px = (v) => Math.round(v);
    // A menu's own room for its text: its width less padding and the arrow.
    const ARROW = 20;
    const ruler = document.createElement("canvas").getContext("2d");
    for (const el of document.querySelectorAll(selector)) {
        const r = el.getBoundingClientRect();
        // Not shown, or shown to screen readers only (a 1 px clipped box).
        if (!el.getClientRects().length || getComputedStyle(el).visibility === "hidden" ||
            (r.width <= 1 && r.height <= 1)) continue;
        if (r.left < -0.5 || r.right > innerWidth + 0.5) {
            out.push(`${name(el)}: ${px(r.left)}..${px(r.right)} past the screen's 0..${innerWidth}`);
        }
        for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
            if (getComputedStyle(a).overflowX === "visible") continue;
            const left = a.getBoundingClientRect().left + a.clientLeft;
            const right = left + a.clientWidth;
            if (r.left < left - 0.5 || r.right > right + 0.5) {
                out.push(`${name(el)}: ${px(r.left)}..${px(r.right)} past ${name(a)}'s ` +
                    `visible ${px(left)}..${px(right)}`);
            }
        }
        const style = getComputedStyle(el);
        if (el.tagName === "SELECT") {
            ruler.font = style.font;
            const room = el.clientWidth - parseFloat(style.paddingLeft) -
                parseFloat(style.paddingRight) - ARROW;
            for (const option of el.options) {
                const width = ruler.measureText(option.textContent).width;
                if (width > room + 0.5) {
                    out.push(`${name(el)}: its choice "${option.textContent}" is ${px(width)} px ` +
                        `wide in ${px(room)}`);
                }
            }
        } else if (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1) {
            out.push(`${name(el)}: its content is ${el.scrollWidth} px wide in ${el.clientWidth}`);
        }
    }
    return out;
}
