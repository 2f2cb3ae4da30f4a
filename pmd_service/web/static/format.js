// How numbers, sizes and dates read on the page.

// How long a deleted post can be restored: pmd_service/core/visibility.py RESTORE_WINDOW_DAYS (a test
// holds the two equal).
export const RESTORE_WINDOW_DAYS = 7;

const numberFmt = new Intl.NumberFormat();
const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

export const count = (n) => numberFmt.format(n);
export const date = (iso) => dateFmt.format(new Date(iso));
export const dateTime = (iso) => dateTimeFmt.format(new Date(iso));

// Sizes in one unit system, binary (KiB, MiB, GiB: 1024 each), as the server's messages say
// them; the number in the browser's locale.
const UNITS = [["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 2 ** 10]];
const oneDecimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const noDecimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

// A file's size: "39 KiB", "1.5 MiB" (one decimal below 10).
export function bytes(n) {
  if (n === null || n === undefined) return "—";
  for (const [unit, scale] of UNITS) {
    if (n >= scale) {
      const v = n / scale;
      return `${(v < 10 ? oneDecimal : noDecimal).format(v)} ${unit}`;
    }
  }
  return `${count(n)} B`;
}

// A size a person chose ("256 MiB", "2 GiB", "1.5 GiB"): exact where it is round.
export function sizeLabel(n) {
  for (const [unit, scale] of UNITS) {
    if (n >= scale) return `${oneDecimal.format(n / scale)} ${unit}`;
  }
  return `${count(n)} B`;
}

// "in 6 days", "in 3 h", "5 min ago": coarse on purpose, it is a hint next to the date.
export function relative(iso, now = Date.now()) {
  const seconds = Math.round((new Date(iso).getTime() - now) / 1000);
  const abs = Math.abs(seconds);
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  if (abs < 60) return rtf.format(seconds, "second");
  if (abs < 3600) return rtf.format(Math.round(seconds / 60), "minute");
  if (abs < 86400) return rtf.format(Math.round(seconds / 3600), "hour");
  return rtf.format(Math.round(seconds / 86400), "day");
}

// After a verb: "was removed just now", where Intl would say "was removed now".
export const ago = (iso, now = Date.now()) =>
  Math.abs(now - new Date(iso).getTime()) < 60_000 ? "just now" : relative(iso, now);

// A download or export has status `expired` both when its date passed and when it was removed
// (DELETE): the API's `removed_at` tells a removal. One that is ready past its date is expired
// too, before the daily clean-up marks it so.
export const pastDate = (item, now = Date.now()) =>
  Boolean(item.expires_at) && new Date(item.expires_at) <= now;
export const removed = (item) => item.status === "expired" && Boolean(item.removed_at);

export const plural = (n, one, many = `${one}s`) => `${count(n)} ${n === 1 ? one : many}`;

// Whole days left of a deleted post's restore window, counted up as the host's own page does
// ("N days left"): never 0 while the post is still listed.
export function daysLeft(deletedIso, now = Date.now()) {
  const end = new Date(deletedIso).getTime() + RESTORE_WINDOW_DAYS * 86400e3;
  return Math.max(1, Math.ceil((end - now) / 86400e3));
}

// At most so many titles in a sentence; the others are counted.
const TITLES_SHOWN = 5;
const listFmt = new Intl.ListFormat("en", { type: "conjunction" });

// Posts by their titles: “Sunset”, “Knight” and 3 more (or "4 posts" when none is known).
// `titleOf(id)`: the title of a post the page holds, else undefined.
export function titles(ids, titleOf) {
  const known = ids.map(titleOf).filter((t) => t !== undefined);
  if (!known.length) return plural(ids.length, "post");
  const shown = known.slice(0, TITLES_SHOWN).map((t) => `“${t}”`);
  const rest = ids.length - shown.length;
  return listFmt.format(rest ? [...shown, `${count(rest)} more`] : shown);
}

// The server names posts by id ("Post 12 has…", "Posts 12, 13 and 4 more have…", "post 12
// was…"); a person knows them by title. `ids`: the posts the answer is about (its
// `invalid_post_ids`), the only ids renamed.
export function namePosts(text, ids, titleOf) {
  const about = new Set(ids);
  return text.replace(/\b[Pp]osts? (\d+(?:, \d+)*)(?: and \d+ more)?/g, (whole, list) => {
    const listed = list.split(", ").map(Number);
    if (!listed.every((id) => about.has(id))) return whole;
    // "and N more": the server listed the first of them only.
    return titles(whole.endsWith(" more") ? ids : listed, titleOf);
  });
}
