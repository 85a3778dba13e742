// Times: the API speaks UTC (RFC 3339); people read and type wall-clock times in a
// time zone, the event's or their own.

export const viewerZone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

export function formatIn(iso, timeZone, { withZone = true } = {}) {
  const format = new Intl.DateTimeFormat(undefined, {
    timeZone, weekday: "short", year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", ...(withZone ? { timeZoneName: "short" } : {}),
  });
  return format.format(new Date(iso));
}

export function formatLocal(iso) {
  return formatIn(iso, viewerZone, { withZone: false });
}

// The wall-clock fields of an instant in a zone.
function wallParts(date, timeZone) {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  }).formatToParts(date);
  const get = (type) => Number(parts.find((p) => p.type === type).value);
  return [get("year"), get("month"), get("day"), get("hour"), get("minute"), get("second")];
}

function offsetMs(date, timeZone) {
  const [y, mo, d, hh, mm, ss] = wallParts(date, timeZone);
  return Date.UTC(y, mo - 1, d, hh, mm, ss) - Math.floor(date.getTime() / 1000) * 1000;
}

// "2026-12-05T20:30" (an <input type="datetime-local"> value) read in `timeZone` ->
// RFC 3339 in UTC. A time that a daylight-saving change skips moves forward by the gap.
export function wallToIso(wall, timeZone) {
  const match = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(wall || "");
  if (!match) return wall || "";
  const [, y, mo, d, hh, mm] = match.map(Number);
  const guess = Date.UTC(y, mo - 1, d, hh, mm);
  let instant = guess - offsetMs(new Date(guess), timeZone);
  instant = guess - offsetMs(new Date(instant), timeZone);
  return new Date(instant).toISOString();
}

// RFC 3339 -> the datetime-local value of that instant in `timeZone`.
export function isoToWall(iso, timeZone) {
  if (!iso) return "";
  const [y, mo, d, hh, mm] = wallParts(new Date(iso), timeZone);
  const pad = (n) => String(n).padStart(2, "0");
  return `${y}-${pad(mo)}-${pad(d)}T${pad(hh)}:${pad(mm)}`;
}

// `iso` moved by as much wall-clock time as `fromWall` -> `toWall` (datetime-local
// values), read in `fromZone` and written in `toZone`: how a series PATCH moves each
// occurrence (19:00 -> 20:00 stays 20:00 local across a daylight-saving change).
export function movedBy(iso, fromWall, toWall, fromZone, toZone = fromZone) {
  const ms = (wall) => {
    const [, y, mo, d, hh, mm] = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(wall).map(Number);
    return Date.UTC(y, mo - 1, d, hh, mm);
  };
  const wall = new Date(ms(isoToWall(iso, fromZone)) + ms(toWall) - ms(fromWall));
  return wallToIso(wall.toISOString().slice(0, 16), toZone);
}

// A date input's value ("2026-12-05") -> the start of that day for the viewer.
export function dayStartIso(day, plusDays = 0) {
  if (!day) return "";
  const [y, m, d] = day.split("-").map(Number);
  return new Date(y, m - 1, d + plusDays).toISOString();
}

export function zones() {
  return typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
}
